"""Group questions held until their asker consents in private (one per user, with a TTL).

A held question's expiry is a sorted set (``user question_id`` scored by when it is due) that a
periodic job of any bot process sweeps (``expire_held``), so it survives a restart and is reported
once.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from storage.queue import QuestionMessage
from storage.transient import prefix

# Delete and return the held question only if it is the one asked for (ARGV[1]; empty: any).
_TAKE_HELD = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
if ARGV[1] ~= '' and cjson.decode(raw)['question_id'] ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return raw
"""


class HeldQuestions:
    """Questions waiting for their asker's consent, keyed by the asker's pseudonym."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.prefix = prefix(namespace)

    async def hold(self, question: QuestionMessage, ttl_s: float, now: float | None = None) -> None:
        """Keep a group question until its asker consents (one per user; a newer one replaces it).

        It is due to be dropped ``ttl_s`` from now (``expire_held``); its key outlives that by a minute.
        """
        due = (time.time() if now is None else now) + ttl_s
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._held(question.user), question.model_dump_json(), ex=max(1, int(ttl_s) + 60))
            pipe.zadd(self._due, {f"{question.user} {question.question_id}": due})
            pipe.expire(self._due, max(1, int(ttl_s) + 120))
            await pipe.execute()

    async def expire_held(self, now: float | None = None, limit: int = 100) -> list[QuestionMessage]:
        """Take the held questions whose time is up (each by one caller only: the one that removed
        its due entry); one that was released or erased before is skipped."""
        moment = time.time() if now is None else now
        expired = []
        for member in await self.redis.zrangebyscore(self._due, "-inf", moment, start=0, num=limit):
            if not await self.redis.zrem(self._due, member):
                continue  # another process took it
            user, _, question_id = str(member).partition(" ")
            held = await self.take_held(user, question_id)
            if held is not None:
                expired.append(held)
        return expired

    @property
    def _due(self) -> str:
        """The sorted set of held questions by the time they are dropped."""
        return f"{self.prefix}:held_due"

    async def take_held(self, user: str, question_id: str | None = None) -> QuestionMessage | None:
        """Remove and return the user's held question (only if it is ``question_id``, when given).

        One atomic step: a question that is not the one asked for is never taken out and put back,
        so an erasure in between cannot be undone.
        """
        raw = await self.redis.eval(_TAKE_HELD, 1, self._held(user), question_id or "")  # type: ignore[misc]
        return QuestionMessage.model_validate_json(raw) if raw else None

    async def drop_held(self, user: str) -> bool:
        """Delete the user's held question (erasure); True if there was one."""
        return bool(await self.redis.delete(self._held(user)))

    def _held(self, user: str) -> str:
        """The key of the user's held question."""
        return f"{self.prefix}:held:{user}"
