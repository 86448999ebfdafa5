"""Translations of the bot's strings (gettext catalogues in ``bot/locale``) and each user's language.

The English sentences in ``bot.telegram.texts`` are the message ids. Catalogues are edited as
``.po`` files and shipped compiled (``.mo``); ``tests/test_field_i18n.py`` fails when a catalogue
misses a string or its ``.mo`` is stale.
"""

from __future__ import annotations

import gettext
from functools import cache
from importlib import resources
from pathlib import Path

from bot.languages import LANGUAGES, NAMES

__all__ = ["LANGUAGES", "NAMES", "catalogue", "locale_dir", "supported", "t"]
DOMAIN = "messages"


def locale_dir() -> Path:
    """Where the catalogues live: ``bot/locale/<lang>/LC_MESSAGES/messages.(po|mo)``."""
    return Path(str(resources.files("bot").joinpath("locale")))


@cache
def catalogue(language: str) -> gettext.NullTranslations:
    """The compiled catalogue of a language (English and unknown languages: the ids themselves)."""
    if language == "en" or language not in LANGUAGES:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=locale_dir(), languages=[language])


def t(message: str, language: str) -> str:
    """``message`` (an English string from bot.telegram.texts) in ``language``."""
    return catalogue(supported(language)).gettext(message)


def supported(code: str | None, default: str = "en") -> str:
    """A Telegram language code (``fr-CA``) as one of the supported languages, else ``default``."""
    short = (code or "").split("-", 1)[0].lower()
    return short if short in LANGUAGES else default
