"""Questions being answered, as every bot process sees them (Redis): the chats shown "typing…" and
the recent answer times behind the acknowledgement's wait estimate.

Both keys live under the queue namespace and expire on their own. The typing key is a sorted set
of chat ids (values, like the question stream's, never key names) scored by when the question was
queued; an entry leaves at delivery, /cancel, /withdraw and /forget, or after TYPING_MAX_S.
"""

from __future__ import annotations

import math
import time

from redis.asyncio import Redis

SERVICE_TIMES_KEPT = 20  # the estimate averages this many recent answers
SERVICE_TIMES_TTL_S = 86_400  # a day without answers: no estimate until the next one


class AnswerProgress:
    """Typing chats and recent answer durations, shared by all bot processes of one deployment."""

    def __init__(self, redis: Redis, namespace: str, typing_max_s: float) -> None:
        self.redis = redis
        self.typing_key = f"{namespace}:progress:typing"
        self.times_key = f"{namespace}:progress:service_times"
        self.typing_max_s = typing_max_s

    async def start_typing(self, chat_id: int, now: float | None = None) -> None:
        """Show "typing…" in ``chat_id`` from now on (its question is queued)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.typing_key, {str(chat_id): time.time() if now is None else now})
            pipe.expire(self.typing_key, max(1, math.ceil(self.typing_max_s)) + 60)
            await pipe.execute()

    async def stop_typing(self, chat_id: int) -> None:
        """Stop showing "typing…" in ``chat_id`` (answered, withdrawn or erased)."""
        await self.redis.zrem(self.typing_key, str(chat_id))

    async def typing_chats(self, limit: int, now: float | None = None) -> list[int]:
        """The ``limit`` chats waiting longest, after dropping those past TYPING_MAX_S."""
        now = time.time() if now is None else now
        await self.redis.zremrangebyscore(self.typing_key, "-inf", now - self.typing_max_s)
        members = await self.redis.zrange(self.typing_key, 0, max(1, limit) - 1)
        return [int(member) for member in members]

    async def record_service_time(self, seconds: float) -> None:
        """Remember how long one answer took (a worker's taken -> finished)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.times_key, f"{max(0.0, seconds):.3f}")
            pipe.ltrim(self.times_key, 0, SERVICE_TIMES_KEPT - 1)
            pipe.expire(self.times_key, SERVICE_TIMES_TTL_S)
            await pipe.execute()

    async def estimated_wait_s(self, position: int, slots: int = 1) -> float | None:
        """Seconds until the answer at ``position``, from recent answer times (None without data).

        Questions are answered ``slots`` at a time (all workers' MAX_SEQUENCES together), so the
        question at ``position`` waits for ``ceil(position / slots) - 1`` rounds before its own.
        """
        values = await self.redis.lrange(self.times_key, 0, -1)  # type: ignore[misc]
        times = [float(value) for value in values]
        if not times:
            return None
        rounds = math.ceil(position / max(1, slots))
        return rounds * sum(times) / len(times)
