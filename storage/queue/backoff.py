"""Capped exponential backoff: how every retry loop (queue clients, delivery, the supervisor) waits."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field, replace
from datetime import timedelta

_MAX_DOUBLINGS = 64
"""More doublings than any cap needs; bounds the exponent so a long failure streak never overflows."""


@dataclass
class Backoff:
    """Delays of ``first_s``, doubling after each failure in a row up to ``cap_s``; reset after a success.

    ``jitter`` takes up to that fraction off each delay at random (0.25: between 75% and 100%), so
    clients that failed together do not all try again at the same moment.
    """

    first_s: float = 0.5
    cap_s: float = 15.0
    jitter: float = 0.0
    failures: int = field(default=0, init=False)

    def delay(self, failures: int) -> float:
        """The delay (without jitter) after ``failures`` failures in a row (1 = the first)."""
        doublings = min(max(0, failures - 1), _MAX_DOUBLINGS)
        return float(min(self.cap_s, self.first_s * 2**doublings))

    def failed(self) -> float:
        """Count one failure; returns the delay before the next attempt."""
        self.failures += 1
        delay = self.delay(self.failures)
        if self.jitter:
            delay *= random.uniform(1.0 - self.jitter, 1.0)  # noqa: S311 (jitter, not a secret)
        return delay

    def reset(self) -> None:
        """A success: the next failure waits ``first_s`` again."""
        self.failures = 0

    def fresh(self) -> Backoff:
        """A copy with the same delays and no failures (one per thing that retries on its own)."""
        return replace(self)

    async def wait(
        self, stop: asyncio.Event | None = None, *, seconds: float | timedelta | None = None
    ) -> None:
        """Count a failure and wait its delay, or ``seconds`` when the other side said how long.

        Returns early once ``stop`` is set.
        """
        delay = self.failed()
        if seconds is not None:
            delay = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if stop is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
