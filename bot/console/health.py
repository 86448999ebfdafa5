"""Queue and worker health read from Redis (read-only: lengths, and which workers the queue counts alive)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from storage.queue import Consumer, Queue, queue_from_settings
from storage.settings import StorageSettings

PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class QueueHealth:
    """Queue lengths and workers, or why they could not be read."""

    waiting: int = 0
    answers_waiting: int = 0
    dead_letters: int = 0
    workers: list[Consumer] = field(default_factory=list)
    error: str | None = None


HealthProbe = Callable[[], Awaitable[QueueHealth]]


async def read_health(queue: Queue) -> QueueHealth:
    """Read lengths and consumers through the queue contract."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            return QueueHealth(
                waiting=await queue.waiting(),
                answers_waiting=await queue.answers_waiting(),
                dead_letters=await queue.dead_count(),
                workers=await queue.workers(),
            )
    except (RedisError, OSError, TimeoutError) as exc:
        return QueueHealth(error=f"Redis cannot be read ({type(exc).__name__})")


def redis_probe(redis_url: str, settings: StorageSettings) -> HealthProbe:
    """A probe that opens a client for each reading (the console holds no connection when idle)."""

    async def probe() -> QueueHealth:
        redis = Redis.from_url(redis_url, decode_responses=True, socket_timeout=PROBE_TIMEOUT_S)
        try:
            return await read_health(queue_from_settings(redis, settings))
        finally:
            await redis.aclose()

    return probe
