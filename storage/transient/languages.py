"""The language chosen by someone who has no user row yet (no consent choice), kept for a day."""

from __future__ import annotations

from redis.asyncio import Redis

from storage.transient import prefix

LANGUAGE_TTL_S = 86_400  # a language chosen before any consent choice is kept a day, like the other keys


class PendingLanguages:
    """Languages chosen before a consent choice; they move to the user row at the choice."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.prefix = prefix(namespace)

    async def choose_language(self, user: str, language: str) -> None:
        """Remember the language of someone without a user row (no consent choice yet), for a while."""
        await self.redis.set(self._language(user), language, ex=LANGUAGE_TTL_S)

    async def chosen_language(self, user: str) -> str | None:
        """The language remembered by ``choose_language``, or None."""
        value = await self.redis.get(self._language(user))
        return str(value) if value is not None else None

    async def forget_language(self, user: str) -> None:
        """Delete the remembered language (moved to the user row, or erased)."""
        await self.redis.delete(self._language(user))

    def _language(self, user: str) -> str:
        """The key of the language chosen before consent."""
        return f"{self.prefix}:lang:{user}"
