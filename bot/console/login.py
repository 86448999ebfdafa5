"""A console login in three steps, each its own transaction: count the attempt, check, settle.

The attempt is counted and committed before the password is checked, so that N parallel wrong
passwords lock the account on PostgreSQL and SQLite alike and no lock is held while argon2 runs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import utcnow
from storage.repositories.accounts import LoginResult, finish_login, password_matches, start_login


async def attempt_login(
    factory: async_sessionmaker[AsyncSession], name: str, password: str, now: datetime | None = None
) -> LoginResult:
    """Check ``name`` and ``password``; unknown, disabled and locked names fail like a wrong password."""
    now = now or utcnow()
    async with factory.begin() as session:
        attempt = await start_login(session, name, now)
    matched = await password_matches(attempt, password)
    if attempt.account_id is None:
        return LoginResult(False, "invalid")
    async with factory.begin() as session:
        return await finish_login(session, attempt, matched, now)
