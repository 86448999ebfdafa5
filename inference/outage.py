"""Outages of a dependency (Redis): one log line when it goes, one when it is back, capped backoff."""

from __future__ import annotations

import asyncio
import time

import structlog
from redis.exceptions import RedisError

from storage.queue.backoff import Backoff

log = structlog.get_logger("inference.outage")

UNAVAILABLE = (RedisError, OSError)
"""The errors of an unreachable or restarting Redis (connection refused or reset, loading, timeout)."""


class Outage:
    """Tracks one dependency's outage across every task that uses it.

    The first failure logs ``<name>.unavailable`` (the error's type only: no traceback, no
    address); the first success after it logs ``<name>.recovered`` with the time it was down.
    """

    def __init__(self, name: str = "redis", *, first_s: float = 0.1, cap_s: float = 2.0) -> None:
        self.name = name
        self.outages = 0
        self._since: float | None = None
        self._backoff = Backoff(first_s, cap_s, jitter=0.25)
        self._back: asyncio.Event | None = None

    @property
    def down(self) -> bool:
        """Whether the dependency failed since its last success."""
        return self._since is not None

    def failed(self, exc: BaseException) -> float:
        """Record a failure; returns the delay before the next attempt (doubling, capped, jittered)."""
        if self._since is None:
            self._since = time.monotonic()
            self.outages += 1
            log.warning(f"{self.name}.unavailable", error=type(exc).__name__)
        return self._backoff.failed()

    def recovered(self) -> None:
        """Record a success; logs the end of an outage once."""
        if self._since is None:
            return
        log.info(f"{self.name}.recovered", down_s=round(time.monotonic() - self._since, 2))
        self._since = None
        self._backoff.reset()
        if self._back is not None:
            self._back.set()
            self._back = None

    async def pause(self, exc: BaseException, stop: asyncio.Event) -> None:
        """Record a failure and wait the backoff delay, or less: until ``stop`` or another task's success."""
        delay = self.failed(exc)
        if self._back is None:
            self._back = asyncio.Event()
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._back.wait())]
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
