"""Connection URLs made safe to log or show: the password (or a lone user part) becomes ``***``."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

UNPARSABLE = "<unparsable URL>"


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``.

    ``postgresql://bot:secret@db/meditron`` becomes ``postgresql://bot:***@db/meditron``; a user
    part without a colon (``redis://secret@host``, which some clients read as a password) becomes
    ``***``. URLs without credentials are returned as they are.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return UNPARSABLE
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:***" if colon else "***"
    return urlunsplit(parts._replace(netloc=f"{shown}@{host}"))
