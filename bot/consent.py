"""The consent text shown to users: versioned files, hashed exactly as shown."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

CURRENT_VERSION = "en-1"


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


def load_consent_text(retention_days: int, reviewers: str, version: str = CURRENT_VERSION) -> ConsentText:
    """Read and render a consent text file (``bot/consent_texts/<version>.md``)."""
    template = resources.files("bot.consent_texts").joinpath(f"{version}.md").read_text("utf-8")
    text = template.format(retention_days=retention_days, reviewers=reviewers).strip()
    return ConsentText(version=version, language=version.split("-", 1)[0], text=text)
