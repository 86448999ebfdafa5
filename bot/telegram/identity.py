"""Turning a Telegram update's sender into a pseudonym and the language to speak to them.

A user row (pseudonym, chosen language, consent state) exists only for people who made a consent
choice; the language they chose is recalled for every update by ``bot.flows.language``.
"""

from __future__ import annotations

from telegram import Update

from bot.flows import language
from bot.resources import Resources
from bot.telegram.i18n import supported


def language_of(update: Update) -> str:
    """The user's Telegram language code, shortened to two letters (default en)."""
    user = update.effective_user
    code = (user.language_code if user else None) or "en"
    return code.split("-", 1)[0][:8].lower()


def pseudonym_of(update: Update, res: Resources) -> str:
    """The pseudonym of the update's sender."""
    assert update.effective_user is not None
    return res.pseudonyms.user(update.effective_user.id)


def user_language(update: Update, res: Resources) -> str:
    """The language to talk to this user in: their /lang choice, else Telegram's, else English."""
    user = update.effective_user
    if user is None:
        return res.settings.default_language
    chosen = language.recalled(res.pseudonyms.user(user.id))
    return chosen or supported(user.language_code, res.settings.default_language)
