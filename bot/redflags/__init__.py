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

from bot.languages import LANGUAGES

__all__ = ["LANGUAGES", "RedFlag", "check", "normalise", "rules"]

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


# Letters that render as nothing but are not format characters (Hangul fillers).
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
_DROPPED_CATEGORIES = frozenset({"Cf", "Cs"})  # format characters (ZWSP, ZWJ, soft hyphen, BOM…), surrogates
_DROPPED_MARKS = frozenset({"Mn", "Me"})  # accents, Arabic diacritics, variation selectors, CGJ


def _visible(char: str) -> bool:
    """Whether ``char`` can change what a word looks like (invisible and control characters cannot)."""
    category = unicodedata.category(char)
    if category in _DROPPED_CATEGORIES or char in _INVISIBLE_LETTERS:
        return False
    return category != "Cc" or char.isspace()


def normalise(text: str, *, fold_case: bool = True) -> str:
    """The text as rules see it: what a reader sees, in one canonical spelling.

    NFKC (full-width and compatibility forms, Arabic presentation forms), invisible characters
    removed (Unicode format characters such as zero-width space, joiners, soft hyphen, word joiner
    and BOM; lone surrogates; control characters), case folded, no accents, Arabic diacritics or
    tatweel, unified alef/ta marbuta/alef maqsura, straight apostrophes, single spaces.
    """
    visible = "".join(ch for ch in unicodedata.normalize("NFKC", text) if _visible(ch))
    folded = visible.casefold() if fold_case else visible  # patterns keep their case: \\W is not \\w
    decomposed = unicodedata.normalize("NFKD", folded.translate(_QUOTES))
    stripped = "".join(ch for ch in decomposed if unicodedata.category(ch) not in _DROPPED_MARKS)
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
