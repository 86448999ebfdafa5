"""Counting review-console login attempts per client in the database (every console process alike).

An attempt is counted by one atomic UPDATE, which refuses it when the client's window already holds
the allowed number: parallel attempts, in one process or several, cannot outrun the count. A window
starts at a client's first attempt and lasts ``window``; rows of ended windows are deleted.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, case, delete, literal, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models.base import UTCDateTime, utcnow
from storage.models.login_limits import LoginLimit


def client_hash(client: str) -> str:
    """The sha256 a client address is stored as."""
    return hashlib.sha256(client.encode("utf-8")).hexdigest()


async def count_login_attempt(
    session: AsyncSession, client: str, limit: int, window: timedelta, now: datetime | None = None
) -> bool:
    """Count one attempt of ``client``; False (not counted) when its window is full."""
    now = now or utcnow()
    cutoff = now - window
    key = client_hash(client)
    insert = postgresql_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(LoginLimit).values(client_sha256=key, window_start=now, attempts=0).on_conflict_do_nothing()
    )
    ended = LoginLimit.window_start <= literal(cutoff, UTCDateTime())
    counted = await session.execute(
        update(LoginLimit)
        .where(LoginLimit.client_sha256 == key, ended | (LoginLimit.attempts < limit))
        .values(
            attempts=case((ended, 1), else_=LoginLimit.attempts + 1),
            window_start=case((ended, literal(now, UTCDateTime())), else_=LoginLimit.window_start),
        )
        .execution_options(synchronize_session=False)
    )
    await session.execute(delete(LoginLimit).where(ended, LoginLimit.client_sha256 != key))
    assert isinstance(counted, CursorResult)
    return counted.rowcount == 1
