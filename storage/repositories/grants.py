"""Access grants: which pseudonymous users an invite code let in."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AccessGrant


async def has_grant(session: AsyncSession, pseudonym: str) -> bool:
    """Whether this user redeemed an invite."""
    query = select(AccessGrant.id).where(AccessGrant.pseudonym == pseudonym)
    return (await session.execute(query)).first() is not None
