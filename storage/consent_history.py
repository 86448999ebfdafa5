"""What a user agreed to: the newest consent event of each scope."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ConsentEvent


async def latest_consents(session: AsyncSession, user_id: int) -> dict[str, ConsentEvent]:
    """The newest consent event per scope ("service", "research") of a user."""
    query = select(ConsentEvent).where(ConsentEvent.user_id == user_id).order_by(ConsentEvent.id)
    latest: dict[str, ConsentEvent] = {}
    for event in (await session.execute(query)).scalars():
        latest[event.scope] = event
    return latest


async def consent_history(session: AsyncSession, user_id: int) -> list[ConsentEvent]:
    """Every consent event of a user, oldest first."""
    query = select(ConsentEvent).where(ConsentEvent.user_id == user_id).order_by(ConsentEvent.id)
    return list((await session.execute(query)).scalars())
