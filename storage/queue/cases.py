"""Handover in Redis: what a case would show until it opens, where its reply goes, and the replies stream.

An *offer* (question text, answer text, chat, the conversation and turn) is kept for HANDOVER_OFFER_H
after a question, so the "Ask a clinician" button and ``/human`` can open a case; it is deleted once
the case opens (the texts then live in the case row) and by /forget. Raw chat ids stay in Redis, as
for questions. Clinicians' replies travel on their own stream to the bots' group, like answers: delivered at
least once, sent at most once (a sent marker per case).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis

from storage.queue import groups
from storage.queue.groups import Delivery
from storage.queue.streams import Queue

FIELD = "m"


class CaseReplyMessage(BaseModel):
    """A clinician's reply for the bot to deliver: the exact text the user receives."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = 1
    case_id: int
    question_id: str = Field(min_length=8, max_length=64)
    language: str = "en"
    text: str = Field(min_length=1, max_length=4096)


@dataclass(frozen=True)
class Offer:
    """What a case about one question would show, and where that question was asked."""

    question_id: str
    user: str
    chat_id: int
    message_id: int
    language: str
    question: str
    answer: str | None
    danger: bool
    conversation_id: str | None = None  # the conversation memory its earlier turns are in
    turn: int | None = None  # its turn in that conversation (1: a first question)


def _text(value: Any) -> str:
    """A Redis value as text (clients with and without decoded responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class CaseQueue:
    """Offers, reply routes and the replies stream, in the queue's namespace."""

    def __init__(self, queue: Queue, offer_ttl_s: int = 48 * 3600, route_ttl_s: int = 30 * 86_400) -> None:
        self.queue = queue
        self.redis: Redis = queue.redis
        self.prefix = f"{queue.names.namespace}:handover"
        self.group = queue.names.bots_group
        self.offer_ttl_s = offer_ttl_s
        self.route_ttl_s = route_ttl_s

    @property
    def replies(self) -> str:
        """The stream of clinicians' replies waiting for the bot."""
        return f"{self.prefix}:replies"

    def _offer(self, question_id: str) -> str:
        return f"{self.prefix}:offer:{question_id}"

    def _route(self, question_id: str) -> str:
        return f"{self.prefix}:route:{question_id}"

    def _last(self, user: str) -> str:
        return f"{self.prefix}:last:{user}"

    def _mine(self, user: str) -> str:
        return f"{self.prefix}:user:{user}"

    # -- offers (bot) ------------------------------------------------------------------------

    async def remember_question(
        self, *, question_id: str, user: str, chat_id: int, message_id: int, language: str, text: str,
        danger: bool, conversation_id: str | None = None, turn: int | None = None,
    ) -> None:  # fmt: skip
        """Keep what a case about this question needs, and make it the user's last question."""
        fields: dict[str, str | int] = {"user": user, "chat": chat_id, "message": message_id,
                  "language": language, "question": text, "danger": int(danger)}  # fmt: skip
        if conversation_id is not None and turn is not None:
            fields |= {"conversation": conversation_id, "turn": turn}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._offer(question_id), mapping=fields)
            pipe.expire(self._offer(question_id), self.offer_ttl_s)
            pipe.set(self._last(user), question_id, ex=self.offer_ttl_s)
            pipe.sadd(self._mine(user), question_id)
            pipe.expire(self._mine(user), self.route_ttl_s)
            await pipe.execute()

    async def remember_answer(self, question_id: str, text: str) -> None:
        """Add the delivered answer's text to the question's offer (if the offer is still kept)."""
        key = self._offer(question_id)
        await self.redis.eval(  # type: ignore[misc]
            "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'answer', ARGV[1]) end",
            1, key, text,
        )  # fmt: skip

    async def offer(self, question_id: str) -> Offer | None:
        """The offer of a question, or None when it expired or was erased."""
        raw = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self._offer(question_id))).items()}  # type: ignore[misc]
        if "question" not in raw:
            return None
        return Offer(
            question_id=question_id, user=raw["user"], chat_id=int(raw["chat"]),
            message_id=int(raw["message"]), language=raw["language"], question=raw["question"],
            answer=raw.get("answer"), danger=raw.get("danger") == "1",
            conversation_id=raw.get("conversation"), turn=int(raw["turn"]) if "turn" in raw else None,
        )  # fmt: skip

    async def last_question(self, user: str) -> str | None:
        """The id of the user's last question that still has an offer."""
        value = await self.redis.get(self._last(user))
        return _text(value) if value else None

    async def opened(self, offer: Offer) -> None:
        """The case is open: keep only where its reply goes, drop the offer's texts."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(
                self._route(offer.question_id), f"{offer.chat_id} {offer.message_id}", ex=self.route_ttl_s
            )
            pipe.delete(self._offer(offer.question_id))
            await pipe.execute()

    async def route(self, question_id: str) -> tuple[int, int] | None:
        """``(chat_id, message_id)`` of the question a case is about, or None after erasure."""
        value = await self.redis.get(self._route(question_id))
        if not value:
            return None
        chat, _, message = _text(value).partition(" ")
        return int(chat), int(message)

    async def forget_user(self, user: str) -> int:
        """Delete every offer and reply route of the user (/forget); how many questions had one."""
        ids = [_text(i) for i in await self.redis.smembers(self._mine(user))]  # type: ignore[misc]
        keys = [self._last(user), self._mine(user)]
        keys += [self._offer(i) for i in ids] + [self._route(i) for i in ids]
        await self.redis.delete(*keys)
        return len(ids)

    async def forget_offers(self, user: str) -> None:
        """Delete the user's offers (texts) but keep the routes of open cases (/withdraw)."""
        ids = [_text(i) for i in await self.redis.smembers(self._mine(user))]  # type: ignore[misc]
        await self.redis.delete(self._last(user), *[self._offer(i) for i in ids])

    # -- replies stream (console → bot) -----------------------------------------------------------

    async def ensure_group(self) -> None:
        """Create the replies stream and the bots' group on it."""
        await groups.ensure_groups(self.redis, [(self.replies, self.group)])

    async def publish(self, reply: CaseReplyMessage) -> str:
        """Put a reply on the stream for the bot; the entry id."""
        await self.ensure_group()
        entry = await self.redis.xadd(self.replies, {FIELD: reply.model_dump_json()})
        return _text(entry)

    async def read(self, consumer: str, *, pending: bool, block_ms: int) -> list[Delivery[CaseReplyMessage]]:
        """This consumer's unacked replies (``pending``) or new ones; malformed entries are dropped."""
        response = await self.redis.xreadgroup(
            self.group, consumer, {self.replies: "0" if pending else ">"}, count=10,
            block=None if pending else block_ms,
        )  # fmt: skip
        found: list[Delivery[CaseReplyMessage]] = []
        for _, entries in response or []:
            for entry_id, fields in entries:
                raw = {_text(k): _text(v) for k, v in (fields or {}).items()}
                try:
                    found.append(
                        Delivery(_text(entry_id), CaseReplyMessage.model_validate_json(raw[FIELD]), 1)
                    )
                except (KeyError, ValidationError):
                    await self.ack(_text(entry_id))
        return found

    async def ack(self, entry_id: str) -> None:
        """Acknowledge and delete a delivered reply (its text leaves Redis)."""
        await groups.ack_delete(self.redis, self.replies, self.group, entry_id)

    async def was_sent(self, case_id: int) -> bool:
        """Whether the reply of this case was delivered (never twice)."""
        return await self.queue.was_sent(f"case-{case_id}")

    async def mark_sent(self, case_id: int) -> None:
        """Remember that the reply of this case was delivered."""
        await self.queue.mark_sent(f"case-{case_id}")
