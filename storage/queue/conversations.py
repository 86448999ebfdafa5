"""Conversation memory in Redis: earlier turns per person, expiring CONVERSATION_IDLE_MIN after use.

Every key is under ``<namespace>:conv:<user pseudonym>:`` (no Telegram id, and one SCAN finds all of a
person's memory) and carries the idle TTL, renewed by each message of the conversation:

- ``private``: the id of the person's conversation in their private chat;
- ``c:<conversation id>``: its turns (question, answer), the newest ``max_turns``, how many it had,
  and the worker that answered the newest (a follow-up is routed there: it may keep the KV state);
- ``q:<question id>``: a question waiting for its answer (conversation, turn, text);
- ``m:<chat pseudonym>:<message id>``: a message of the bot's answer, so a reply continues it.

Nothing here is written to SQL: the answer's record keeps only the conversation id and turn number.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from redis.asyncio import Redis

Turn = tuple[str, str]


@dataclass(frozen=True)
class Conversation:
    """One person's conversation: its id, the turns kept (oldest first), how many it had and the
    worker that answered the newest."""

    id: str
    turns: tuple[Turn, ...] = field(default=())
    count: int = 0
    worker: str = ""

    @property
    def next_turn(self) -> int:
        """The turn number of the next question (1 for the first)."""
        return self.count + 1


def new_conversation_id() -> str:
    """A fresh conversation id (random, says nothing about the person)."""
    return uuid.uuid4().hex


class ConversationStore:
    """Reads and writes conversation memory; every write renews the idle TTL of what it touches."""

    def __init__(self, redis: Redis, namespace: str, *, idle_s: float, max_turns: int) -> None:
        self.redis = redis
        self.namespace = namespace
        self.idle_ms = max(1, int(idle_s * 1000))
        self.max_turns = max_turns

    def prefix(self, user: str) -> str:
        """Where every key of ``user``'s memory starts."""
        return f"{self.namespace}:conv:{user}:"

    def _conversation_key(self, user: str, conversation_id: str) -> str:
        return f"{self.prefix(user)}c:{conversation_id}"

    def _question_key(self, user: str, question_id: str) -> str:
        return f"{self.prefix(user)}q:{question_id}"

    def _message_key(self, user: str, chat: str, message_id: int) -> str:
        return f"{self.prefix(user)}m:{chat}:{message_id}"

    async def load(self, user: str, conversation_id: str) -> Conversation:
        """The conversation with this id (empty when it expired or never had an answer)."""
        raw = await self.redis.get(self._conversation_key(user, conversation_id))
        if not raw:
            return Conversation(conversation_id)
        data = json.loads(raw)
        turns = tuple((str(q), str(a)) for q, a in data.get("turns", []))
        count = int(data.get("count", len(turns)))
        return Conversation(conversation_id, turns, count, str(data.get("w", "")))

    async def earlier(self, user: str, conversation_id: str, turn: int) -> dict[int, Turn]:
        """The kept turns of the conversation before turn ``turn``, by turn number (none once expired)."""
        conversation = await self.load(user, conversation_id)
        first = conversation.count - len(conversation.turns) + 1  # the kept turns are the newest ones
        numbered = enumerate(conversation.turns, start=first)
        return {number: pair for number, pair in numbered if 0 < number < turn}

    async def private(self, user: str) -> Conversation:
        """The person's current private conversation (a new one after /new or the idle time)."""
        key = f"{self.prefix(user)}private"
        current = await self.redis.get(key)
        if not current:
            current = new_conversation_id()
        await self.redis.set(key, current, px=self.idle_ms)
        return await self._touched(user, str(current))

    async def replied(self, user: str, chat: str, message_id: int) -> Conversation | None:
        """The conversation of the bot's message ``message_id``, if it answered ``user`` (and is kept)."""
        conversation_id = await self.redis.get(self._message_key(user, chat, message_id))
        return await self._touched(user, str(conversation_id)) if conversation_id else None

    async def _touched(self, user: str, conversation_id: str) -> Conversation:
        """The conversation, its idle time started again (a new message continues it)."""
        await self.redis.pexpire(self._conversation_key(user, conversation_id), self.idle_ms)
        return await self.load(user, conversation_id)

    async def asked(self, user: str, question_id: str, conversation_id: str, turn: int, text: str) -> None:
        """Remember a queued question until its answer arrives (then the pair is one turn)."""
        value = json.dumps({"c": conversation_id, "t": turn, "q": text})
        await self.redis.set(self._question_key(user, question_id), value, px=self.idle_ms)

    async def answered(self, user: str, question_id: str, answer: str, worker: str = "") -> str | None:
        """Add the question and its ``answer`` (by ``worker``) as the newest turn; the conversation id
        (None: forgotten)."""
        key = self._question_key(user, question_id)
        raw = await self.redis.getdel(key)
        if not raw:
            return None
        pending = json.loads(raw)
        conversation = await self.load(user, pending["c"])
        turns = [*conversation.turns, (pending["q"], answer)][-self.max_turns :] if self.max_turns else []
        count = max(conversation.count, int(pending["t"]))
        value = json.dumps({"turns": turns, "count": count, "w": worker})
        await self.redis.set(self._conversation_key(user, conversation.id), value, px=self.idle_ms)
        return conversation.id

    async def link(self, user: str, conversation_id: str, chat: str, message_ids: list[int]) -> None:
        """Let a reply by ``user`` to any of these messages of the bot continue the conversation."""
        if not message_ids:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for message_id in message_ids:
                pipe.set(self._message_key(user, chat, message_id), conversation_id, px=self.idle_ms)
            await pipe.execute()

    async def clear(self, user: str) -> int:
        """Delete every key of the person's memory (/new, /forget, /withdraw); how many there were."""
        keys = [key async for key in self.redis.scan_iter(match=f"{self.prefix(user)}*", count=500)]
        return int(await self.redis.delete(*keys)) if keys else 0
