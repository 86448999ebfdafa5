"""The consent texts shown to users: one file per language and revision, hashed exactly as shown.

Files are ``bot/consent_texts/<language>-<revision>.md`` (e.g. ``en-1.md``, ``fr-1.md``). English is
the reference: the current revision is the highest English one. A change of wording means a new
revision file (``en-2.md``); users who agreed to an older revision are asked again at their next
message. A language without a file for the current revision gets the English text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

REFERENCE_LANGUAGE = "en"
_FILE_NAME = re.compile(r"^([a-z]{2})-(\d{1,4})\.md$")
_VERSION = re.compile(r"^([a-z]{2})-(\d{1,4})$")
_LISTINGS: dict[str, frozenset[str]] = {}


@dataclass(frozen=True)
class ConsentText:
    """One rendered consent text with the version and sha256 that consent rows store."""

    version: str
    language: str
    text: str

    @property
    def sha256(self) -> str:
        """sha256 of the exact text shown."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def revision(self) -> int:
        """The revision number of this text (the ``1`` of ``en-1``)."""
        return revision_of(self.version) or 0


def texts_dir() -> Traversable:
    """The packaged directory of consent text files."""
    return resources.files("bot.consent_texts")


def revision_of(version: str | None) -> int | None:
    """The revision number in a version name like ``fr-2``, or None if it is not one."""
    match = _VERSION.match(version or "")
    return int(match.group(2)) if match else None


def available(directory: Traversable | None = None) -> frozenset[str]:
    """Every version with a file, e.g. ``{"en-1", "fr-1"}`` (each directory is read once)."""
    folder = directory or texts_dir()
    key = str(folder)
    if key not in _LISTINGS:
        _LISTINGS[key] = frozenset(e.name[:-3] for e in folder.iterdir() if _FILE_NAME.match(e.name))
    return _LISTINGS[key]


def current_revision(directory: Traversable | None = None) -> int:
    """The newest English revision: the one every user must have agreed to."""
    numbers = [revision_of(v) or 0 for v in available(directory) if v.startswith(f"{REFERENCE_LANGUAGE}-")]
    if not numbers:
        raise FileNotFoundError("no English consent text (en-<n>.md) found")
    return max(numbers)


def is_current(version: str | None, directory: Traversable | None = None) -> bool:
    """Whether ``version`` names an existing text of the current revision."""
    return version in available(directory) and revision_of(version) == current_revision(directory)


def current_version(language: str | None, directory: Traversable | None = None) -> str:
    """The version to show in ``language``: its current-revision file, else the English one."""
    revision = current_revision(directory)
    wanted = f"{(language or REFERENCE_LANGUAGE)[:2].lower()}-{revision}"
    return wanted if wanted in available(directory) else f"{REFERENCE_LANGUAGE}-{revision}"


DEFAULT_CONVERSATION_MINUTES = 30


def load_consent_text(
    retention_days: int,
    reviewers: str,
    version: str | None = None,
    directory: Traversable | None = None,
    conversation_minutes: float = DEFAULT_CONVERSATION_MINUTES,
) -> ConsentText:
    """Read and render one consent text file (default: the current English one).

    ``conversation_minutes`` is how long conversation memory is kept (CONVERSATION_IDLE_MIN).
    """
    version = version or current_version(REFERENCE_LANGUAGE, directory)
    if version not in available(directory):
        raise FileNotFoundError(f"no consent text {version}.md")
    template = (directory or texts_dir()).joinpath(f"{version}.md").read_text("utf-8")
    minutes = f"{conversation_minutes:g}"
    text = template.format(
        retention_days=retention_days, reviewers=reviewers, conversation_minutes=minutes
    ).strip()
    return ConsentText(version=version, language=version.split("-", 1)[0], text=text)


def consent_for(
    language: str | None,
    retention_days: int,
    reviewers: str,
    directory: Traversable | None = None,
    conversation_minutes: float = DEFAULT_CONVERSATION_MINUTES,
) -> ConsentText:
    """The current consent text in the user's language (English when there is no translation)."""
    version = current_version(language, directory)
    return load_consent_text(retention_days, reviewers, version, directory, conversation_minutes)
