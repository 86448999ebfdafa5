"""Message counters per pseudonym and minute, for the per-user and per-group rate limits."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from storage.transient import prefix


class RateCounter:
    """Counts messages of a subject (user or chat pseudonym) in fixed windows."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.prefix = prefix(namespace)

    async def hit(self, subject: str, window_s: int = 60) -> int:
        """Count one message of ``subject`` in the current window; returns the count so far."""
        key = f"{self.prefix}:rate:{subject}:{int(time.time() // window_s)}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s * 2)
            count, _ = await pipe.execute()
        return int(count)
