"""The language a person chose with /lang: on their user row, or in Redis before any consent choice.

The choice is looked up again (row, else Redis) for every update, so every bot replica, and a
restarted one, speaks the same language to the same person; what was looked up is kept for the rest
of that update only (a context variable: each update is handled in its own task), never in the
process.
"""

from __future__ import annotations

from contextvars import ContextVar

from bot.languages import LANGUAGES
from bot.resources import Resources
from storage.repositories.users import get_user

# (pseudonym, language) looked up by ``recall`` for the update being handled.
_recalled: ContextVar[tuple[str, str] | None] = ContextVar("recalled_language", default=None)


async def recall(res: Resources, pseudonym: str) -> str | None:
    """Look up the person's chosen language (user row, else Redis) for the rest of this update."""
    async with res.sessionmaker() as session:
        user = await get_user(session, pseudonym)
        stored = (user.language if user is not None else None) or await res.pending_languages.chosen_language(
            pseudonym
        )
    chosen = str(stored) if stored in LANGUAGES else None
    _recalled.set((pseudonym, chosen) if chosen else None)
    return chosen


def recalled(pseudonym: str) -> str | None:
    """The language ``recall`` (or ``choose``) found for this person in this update, if any."""
    found = _recalled.get()
    return found[1] if found is not None and found[0] == pseudonym else None


def forget_recalled() -> None:
    """No chosen language for the rest of this update (/forget)."""
    _recalled.set(None)


async def choose(res: Resources, pseudonym: str, language: str) -> None:
    """Store the choice on the user row; without one (no consent choice yet) in Redis, for a while."""
    async with res.sessionmaker.begin() as session:
        user = await get_user(session, pseudonym)
        if user is not None:
            user.language = language
    if user is None:
        await res.pending_languages.choose_language(pseudonym, language)
    _recalled.set((pseudonym, language))
