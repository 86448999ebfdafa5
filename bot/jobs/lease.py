"""Periodic jobs run once per deployment: every bot process schedules them, one lease wins a round.

A lease is ``SET key owner NX PX`` under the queue namespace, for 90% of the job's interval: the
first process to tick in a round runs the job; the others skip that round. A process that dies
holding a lease blocks that job for less than one interval.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

HOLD = 0.9  # of the interval: a lease is free again before the next tick of the same process


@dataclass(frozen=True)
class Leases:
    """Leases of the periodic jobs of one deployment (namespace), taken by ``owner``."""

    redis: Redis
    namespace: str
    owner: str

    def key(self, job: str) -> str:
        """The lease key of ``job``."""
        return f"{self.namespace}:lease:{job}"

    async def take(self, job: str, interval_s: float) -> bool:
        """Whether this process runs ``job`` this round (nobody else took it in the last interval)."""
        ms = max(1, int(interval_s * 1000 * HOLD))
        return bool(await self.redis.set(self.key(job), self.owner, nx=True, px=ms))


async def run_leased(
    leases: Leases | None, job: str, interval_s: float, run: Callable[[], Awaitable[Any]]
) -> bool:
    """Run ``run`` if this process takes the round's lease (always without leases); True if it ran."""
    if leases is not None and not await leases.take(job, interval_s):
        return False
    await run()
    return True
