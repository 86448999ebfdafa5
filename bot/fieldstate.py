"""Small Redis-held state of the bot (not the streams): rate counters, held group questions, prompts.

Keys live under the queue namespace, expire on their own, and hold no Telegram ids in their names
(pseudonyms only); a held question carries its chat id like the question stream does.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from storage.queue import QuestionMessage


class FieldState:
    """Rate limits, questions waiting for their asker's consent, and feedback-reason prompts."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.prefix = f"{namespace}:field"

    async def hit(self, subject: str, window_s: int = 60) -> int:
        """Count one message of ``subject`` in the current window; returns the count so far."""
        key = f"{self.prefix}:rate:{subject}:{int(time.time() // window_s)}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s * 2)
            count, _ = await pipe.execute()
        return int(count)

    async def hold(self, question: QuestionMessage, ttl_s: float) -> None:
        """Keep a group question until its asker consents (one per user; a newer one replaces it)."""
        key = f"{self.prefix}:held:{question.user}"
        await self.redis.set(key, question.model_dump_json(), ex=max(1, int(ttl_s) + 60))

    async def take_held(self, user: str, question_id: str | None = None) -> QuestionMessage | None:
        """Remove and return the user's held question (only if it is ``question_id``, when given)."""
        key = f"{self.prefix}:held:{user}"
        raw = await self.redis.getdel(key)
        if raw is None:
            return None
        question = QuestionMessage.model_validate_json(raw)
        if question_id is not None and question.question_id != question_id:
            await self.redis.set(key, raw, nx=True, ex=3600)
            return None
        return question

    async def remember_prompt(self, chat: str, message_id: int, question_id: str) -> None:
        """Remember that a reply to this bot message (chat pseudonym) is the reason for a 👎."""
        await self.redis.set(f"{self.prefix}:reason:{chat}:{message_id}", question_id, ex=86_400)

    async def take_prompt(self, chat: str, message_id: int) -> str | None:
        """The question a reason prompt was about (once), or None."""
        value = await self.redis.getdel(f"{self.prefix}:reason:{chat}:{message_id}")
        return str(value) if value is not None else None
