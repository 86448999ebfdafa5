"""Queue and worker health read from Redis (read-only: lengths and consumer idle times)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from storage.queue.streams import Queue, QueueNames

STALE_WORKER_S = 60.0
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Worker:
    """One consumer of the questions stream."""

    name: str
    pending: int
    idle_s: float

    @property
    def alive(self) -> bool:
        """A working worker reads the stream every few seconds."""
        return self.idle_s < STALE_WORKER_S


@dataclass(frozen=True)
class QueueHealth:
    """Queue lengths and workers, or why they could not be read."""

    waiting: int = 0
    answers_waiting: int = 0
    dead_letters: int = 0
    workers: list[Worker] = field(default_factory=list)
    error: str | None = None


HealthProbe = Callable[[], Awaitable[QueueHealth]]


async def read_health(redis: Redis, names: QueueNames) -> QueueHealth:
    """Read lengths and consumers through the queue contract."""
    queue = Queue(redis, names=names)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            return QueueHealth(
                waiting=await queue.waiting(),
                answers_waiting=await queue.answers_waiting(),
                dead_letters=await queue.dead_count(),
                workers=[Worker(w.name, w.pending, w.idle_ms / 1000.0) for w in await queue.workers()],
            )
    except (RedisError, OSError, TimeoutError) as exc:
        return QueueHealth(error=f"Redis cannot be read ({type(exc).__name__})")


def redis_probe(redis_url: str, names: QueueNames) -> HealthProbe:
    """A probe that opens a client for each reading (the console holds no connection when idle)."""

    async def probe() -> QueueHealth:
        redis = Redis.from_url(redis_url, decode_responses=True, socket_timeout=PROBE_TIMEOUT_S)
        try:
            return await read_health(redis, names)
        finally:
            await redis.aclose()

    return probe
