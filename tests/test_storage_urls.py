"""Redaction of database and Redis URLs before they are logged or shown (``storage.urls``)."""

from __future__ import annotations

import pytest

from storage.urls import UNPARSABLE, redact_url

PASSWORD = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql://bot:{PASSWORD}@db.example:5432/meditron",
            "postgresql://bot:***@db.example:5432/meditron",
        ),
        (
            f"postgresql+asyncpg://bot:{PASSWORD}@db/m?ssl=require",
            "postgresql+asyncpg://bot:***@db/m?ssl=require",
        ),
        (f"redis://:{PASSWORD}@cache:6379/0", "redis://:***@cache:6379/0"),
        (f"rediss://default:{PASSWORD}@cache:6380", "rediss://default:***@cache:6380"),
        (f"redis://{PASSWORD}@cache:6379", "redis://***@cache:6379"),
        (f"redis://:{PASSWORD}@with@at@cache:6379", "redis://:***@cache:6379"),
    ],
)
def test_redact_url_hides_the_password(url: str, shown: str) -> None:
    """The password (or a lone user part) becomes ***; scheme, user, host, path and query stay."""
    redacted = redact_url(url)
    assert PASSWORD not in redacted
    assert redacted == shown


@pytest.mark.parametrize(
    "url", ["unix:///data/redis.sock", "redis://127.0.0.1:6379/0", "sqlite+aiosqlite:////data/meditron.db"]
)
def test_redact_url_keeps_urls_without_credentials(url: str) -> None:
    """A URL without credentials is shown as it is."""
    assert redact_url(url) == url


def test_redact_url_of_an_unparsable_url_shows_nothing_of_it() -> None:
    """A URL that cannot be parsed is replaced as a whole."""
    assert redact_url(f"redis://:{PASSWORD}@[::1") == UNPARSABLE
