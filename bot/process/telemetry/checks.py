"""Readiness checks for /readyz: Redis answers PING, the database answers a query, a flag is set.

Each check opens its client for the one reading, in the event loop of the server that asks (a client
is bound to the loop it was made in), so a check holds nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis
from sqlalchemy import text

from bot.process.telemetry.endpoints import Check
from storage.db import make_engine

TIMEOUT_S = 2.0


def redis_check(url: str) -> Check:
    """Ready while Redis at ``url`` answers PING."""

    async def check() -> bool:
        client = Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    return check


def database_check(url: str) -> Check:
    """Ready while the database at ``url`` answers ``SELECT 1``."""

    async def check() -> bool:
        engine = make_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return True
        finally:
            await engine.dispose()

    return check


def flag_check(flag: Callable[[], bool]) -> Check:
    """Ready while ``flag()`` is true (for example: the model is loaded)."""

    async def check() -> bool:
        return flag()

    return check
