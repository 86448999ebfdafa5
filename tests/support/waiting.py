"""Waiting for a condition held in another task's or process's state: polled against a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

POLL_S = 0.05


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Return once ``predicate()`` holds (checked every 50 ms); TimeoutError after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not await predicate():  # noqa: ASYNC110 - a condition in another process's state
            await asyncio.sleep(POLL_S)
