"""Users, looked up by pseudonym only; a row exists once its person made a consent choice."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import User


async def get_user(session: AsyncSession, pseudonym: str) -> User | None:
    """Return the user with ``pseudonym``, or None."""
    query = select(User).where(User.pseudonym == pseudonym)
    return (await session.execute(query)).scalar_one_or_none()


async def get_or_create_user(session: AsyncSession, pseudonym: str, language: str | None) -> User:
    """Return the user with ``pseudonym``, creating it (with ``language``) if it does not exist.

    ``language`` is the language the user chose (``/lang``); None means "follow Telegram's". An
    existing row keeps its own.
    """
    user = await get_user(session, pseudonym)
    if user is not None:
        return user
    try:
        async with session.begin_nested():  # a concurrent insert must not spoil the transaction
            user = User(pseudonym=pseudonym, language=language)
            session.add(user)
    except IntegrityError:
        user = await get_user(session, pseudonym)
        if user is None:
            raise
    return user
