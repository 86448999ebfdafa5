"""Invite codes: creating them (stored only as sha256) and redeeming one for an access grant."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AccessGrant, InviteCode, utcnow
from storage.repositories.grants import has_grant


def code_hash(code: str) -> str:
    """sha256 of an invite code as typed (codes are never stored in clear)."""
    return hashlib.sha256(code.strip().encode("utf-8")).hexdigest()


async def create_invite(session: AsyncSession, uses: int, expires_at: datetime | None) -> str:
    """A new invite code (returned once, stored only as its sha256)."""
    if uses < 1:
        raise ValueError("an invite needs at least one use")
    code = secrets.token_urlsafe(12)
    session.add(InviteCode(code_sha256=code_hash(code), max_uses=uses, uses=0, expires_at=expires_at))
    await session.flush()
    return code


async def redeem_invite(session: AsyncSession, code: str, pseudonym: str) -> bool:
    """Let the user in with a valid, unexpired, not used-up code; True when they now have access."""
    if await has_grant(session, pseudonym):
        return True
    query = select(InviteCode).where(InviteCode.code_sha256 == code_hash(code)).with_for_update()
    invite = (await session.execute(query)).scalar_one_or_none()
    if invite is None or invite.uses >= invite.max_uses:
        return False
    if invite.expires_at is not None and invite.expires_at <= utcnow():
        return False
    invite.uses += 1
    session.add(AccessGrant(pseudonym=pseudonym, source="invite", invite_id=invite.id))
    await session.flush()
    return True
