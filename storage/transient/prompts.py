"""Which bot message asked for the reason of a 👎, so that a reply to it is taken as that reason."""

from __future__ import annotations

from redis.asyncio import Redis

from storage.transient import prefix

PROMPT_TTL_S = 86_400


class ReasonPrompts:
    """Reason prompts keyed by chat pseudonym and message id, each naming its question."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.prefix = prefix(namespace)

    async def remember_prompt(self, chat: str, message_id: int, question_id: str) -> None:
        """Remember that a reply to this bot message (chat pseudonym) is the reason for a 👎."""
        await self.redis.set(self._key(chat, message_id), question_id, ex=PROMPT_TTL_S)

    async def take_prompt(self, chat: str, message_id: int) -> str | None:
        """The question a reason prompt was about (once), or None."""
        value = await self.redis.getdel(self._key(chat, message_id))
        return str(value) if value is not None else None

    def _key(self, chat: str, message_id: int) -> str:
        """The key of one reason prompt."""
        return f"{self.prefix}:reason:{chat}:{message_id}"
