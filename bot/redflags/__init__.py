"""Danger signs (red flags): a deterministic check of the question against per-language data files.

The rules live in ``bot/redflags/<language>.json`` (not in code): a mapping of rule id to regular
expressions, matched against the normalised text. Every language's rules are tried on every
question, because people do not always write in their Telegram language.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

LANGUAGES = ("en", "fr", "ar", "es", "sw")

_ARABIC = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ة": "ه", "ى": "ي", "ـ": None})
_QUOTES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})


@dataclass(frozen=True)
class RedFlag:
    """A matched danger sign: the rule id and the language of the list it came from."""

    rule: str
    language: str

    @property
    def label(self) -> str:
        """``language:rule``, as shown in alerts."""
        return f"{self.language}:{self.rule}"


def normalise(text: str, *, fold_case: bool = True) -> str:
    """Lower case, no accents or Arabic diacritics/tatweel, unified alef/ta marbuta, single spaces."""
    folded = text.casefold() if fold_case else text  # patterns keep their case: \\W is not \\w
    decomposed = unicodedata.normalize("NFKD", folded.translate(_QUOTES))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(unicodedata.normalize("NFC", stripped).translate(_ARABIC).split())


@cache
def rules(language: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """The compiled rules of one language, in file order."""
    raw = json.loads(resources.files("bot.redflags").joinpath(f"{language}.json").read_text("utf-8"))
    return tuple(
        (rule, re.compile(normalise(pattern, fold_case=False)))
        for rule, patterns in raw["rules"].items()
        for pattern in patterns
    )


def check(text: str, languages: tuple[str, ...] = LANGUAGES) -> RedFlag | None:
    """The first danger sign found in ``text``, or None."""
    normalised = normalise(text)
    for language in languages:
        for rule, pattern in rules(language):
            if pattern.search(normalised):
                return RedFlag(rule, language)
    return None
