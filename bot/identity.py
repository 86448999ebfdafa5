"""Turning a Telegram update's people into pseudonyms and user rows."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.i18n import LANGUAGES, supported
from bot.resources import Resources
from storage.models import User
from storage.repository.users import get_or_create_user


def language_of(update: Update) -> str:
    """The user's Telegram language code, shortened to two letters (default en)."""
    user = update.effective_user
    code = (user.language_code if user else None) or "en"
    return code.split("-", 1)[0][:8].lower()


async def current_user(session: AsyncSession, res: Resources, update: Update) -> User:
    """The user row of the update's sender, created on first contact."""
    assert update.effective_user is not None
    pseudonym = res.pseudonyms.user(update.effective_user.id)
    user = await get_or_create_user(session, pseudonym, language_of(update))
    if user.language in LANGUAGES:
        res.languages.setdefault(pseudonym, user.language)
    return user


def user_language(update: Update, res: Resources) -> str:
    """The language to talk to this user in: their /lang choice, else Telegram's, else English."""
    user = update.effective_user
    if user is None:
        return res.settings.default_language
    chosen = res.languages.get(res.pseudonyms.user(user.id))
    return chosen or supported(user.language_code, res.settings.default_language)
