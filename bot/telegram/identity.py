"""Turning a Telegram update's people into pseudonyms, user rows and the language to speak.

A user row (pseudonym, chosen language, consent state) exists only for people who made a consent
choice: someone who only writes to the bot, or only picks a language, leaves no row. The row's
language is the one picked with /lang (None: follow Telegram's). A language picked before any
consent choice waits in Redis (``FieldState.choose_language``, with a TTL) and moves to the row at
the choice. The chosen language is looked up again (row, else Redis) for every update, so every
bot replica, and a restarted one, speaks the same language to the same person; what was looked up
is kept for the rest of that update only (a context variable: each update is handled in its own
task), never in the process.
"""

from __future__ import annotations

from contextvars import ContextVar

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.resources import Resources
from bot.telegram.i18n import LANGUAGES, supported
from storage.models import User
from storage.repositories.users import get_or_create_user, get_user

# (pseudonym, language) looked up by ``recall_language`` for the update being handled.
_recalled: ContextVar[tuple[str, str] | None] = ContextVar("recalled_language", default=None)


def language_of(update: Update) -> str:
    """The user's Telegram language code, shortened to two letters (default en)."""
    user = update.effective_user
    code = (user.language_code if user else None) or "en"
    return code.split("-", 1)[0][:8].lower()


def pseudonym_of(update: Update, res: Resources) -> str:
    """The pseudonym of the update's sender."""
    assert update.effective_user is not None
    return res.pseudonyms.user(update.effective_user.id)


async def current_user(session: AsyncSession, res: Resources, update: Update) -> User | None:
    """The user row of the update's sender, or None for someone who never made a consent choice."""
    return await get_user(session, pseudonym_of(update, res))


async def consenting_user(session: AsyncSession, res: Resources, update: Update) -> User:
    """The user row of someone making a consent choice, created now (with a language chosen before) if new."""
    pseudonym = pseudonym_of(update, res)
    return await get_or_create_user(session, pseudonym, await res.state.chosen_language(pseudonym))


async def recall_language(session: AsyncSession, res: Resources, update: Update) -> None:
    """Look up the sender's chosen language (user row, else Redis) for ``user_language`` to use."""
    pseudonym = pseudonym_of(update, res)
    user = await get_user(session, pseudonym)
    stored = (user.language if user is not None else None) or await res.state.chosen_language(pseudonym)
    _recalled.set((pseudonym, str(stored)) if stored in LANGUAGES else None)


def remember_language(pseudonym: str, language: str) -> None:
    """The language just chosen (/lang), for the rest of this update."""
    _recalled.set((pseudonym, language))


def forget_recalled_language() -> None:
    """No chosen language for the rest of this update (/forget)."""
    _recalled.set(None)


def user_language(update: Update, res: Resources) -> str:
    """The language to talk to this user in: their /lang choice, else Telegram's, else English."""
    user = update.effective_user
    if user is None:
        return res.settings.default_language
    recalled = _recalled.get()
    if recalled is not None and recalled[0] == res.pseudonyms.user(user.id):
        return recalled[1]
    return supported(user.language_code, res.settings.default_language)
