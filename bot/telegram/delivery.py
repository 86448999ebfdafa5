"""Deliver answers from the answers stream to Telegram: retried until sent, never dropped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardMarkup, Message, ReplyParameters
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.ext import ExtBot

from bot import metrics
from bot.flows.conversation import link_answer, remember_answer
from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.i18n import t
from bot.telegram.keyboards import feedback_keyboard
from bot.telegram.outgoing import ANSWER
from bot.telegram.splitting import split_message
from bot.telegram.stream_loop import StreamLoop
from storage.models import Answer, Question
from storage.queue import AnswerMessage, Delivery, Source
from storage.queue.backoff import Backoff
from storage.repositories.questions import record_answer, set_question_status
from storage.repositories.startup_audit import audit_startup

log = structlog.get_logger("bot.delivery")

ACK_GRACE_S = 1.0  # how long a ready answer waits for its own acknowledgement to go out first
FAILURE_TEXTS = {"too long": texts.TOO_LONG_FOR_MODEL}


def answer_pieces(answer: AnswerMessage, language: str = "en") -> list[str]:
    """What the user reads, as plain-text messages of at most 4096 characters.

    The answer is split at paragraph or sentence boundaries; the bot's "Sources:" part (from what
    was retrieved, never from the model) and the research reminder end the last piece; a failure is
    one notice. No parse mode is used, so no markup can be refused.
    """
    if answer.status != "ok":
        return [t(FAILURE_TEXTS.get(answer.text, texts.FAILED), language)]
    early, rest = early_parts(answer)
    closing = t(texts.REMINDER, language)
    grounding = sources_part(answer.sources, language) if answer.sources else ""
    if not answer.sources and answer.library_version:
        grounding = t(texts.NOT_FROM_LIBRARY, language)
    if grounding:
        closing = f"{grounding}\n\n{closing}"
    body = rest.strip() or ("" if early else "…")
    return [*early, *split_message(f"{body}\n\n{closing}" if body else closing)]


def early_parts(answer: AnswerMessage) -> tuple[list[str], str]:
    """The paragraphs of a final answer that were sent early (DELIVERY=paragraphs), and the rest."""
    parts, start = [], 0
    for end in answer.part_ends:
        parts.append(answer.text[start:end].strip())
        start = end
    return parts, answer.text[start:]


def source_name(source: Source, language: str) -> str:
    """``Title — Section, p. 3`` in the user's language."""
    name = f"{source.title} — {source.section}" if source.section else source.title
    if source.page is not None:
        name += ", " + t(texts.SOURCE_PAGE, language).format(page=source.page)
    return name


def sources_part(sources: Sequence[Source], language: str) -> str:
    """The "Sources:" part: each passage given to the model, numbered as the prompt numbered it."""
    lines = [f"[{number}] {source_name(source, language)}" for number, source in enumerate(sources, 1)]
    return "\n".join([t(texts.SOURCES_HEADING, language), *lines])


def answer_text(answer: AnswerMessage) -> str:
    """The whole answer as one text (English), for tools that do not send it."""
    return "\n\n".join(answer_pieces(answer))


def _ts(seconds: float | None) -> datetime | None:
    """Epoch seconds as an aware datetime."""
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


async def send_until_accepted(
    bot: ExtBot[Any], chat_id: int, text: str, reply_to: int | None, markup: InlineKeyboardMarkup | None
) -> Message | None:
    """Send (at answer priority) until Telegram accepts it, waiting out flood control and network
    errors; the message sent, or None when the chat is gone (blocked, deleted)."""
    reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
    backoff = Backoff(first_s=0.5, cap_s=2.0)
    while True:
        try:
            return await bot.send_message(
                chat_id, text, reply_parameters=reply, reply_markup=markup, rate_limit_args=ANSWER
            )
        except RetryAfter as exc:
            log.warning("delivery.flood_control", retry_after=str(exc.retry_after))
            await backoff.wait(seconds=exc.retry_after)
        except (Forbidden, BadRequest) as exc:
            log.warning("delivery.undeliverable", error=type(exc).__name__)
            return None
        except NetworkError as exc:
            log.warning("delivery.network", error=type(exc).__name__)
            await backoff.wait()


class AnswerDelivery(StreamLoop[AnswerMessage]):
    """Reads the answers stream in the bots' group and sends each answer once."""

    name = "answer-delivery"

    def __init__(self, bot: ExtBot[Any], res: Resources) -> None:
        super().__init__(bot, res)
        self._model_seen: tuple[str | None, str] | None = None
        self._sent_at: dict[str, float | None] = {}  # sent, not yet recorded (the database was away)
        self._reclaim_at = 0.0

    async def _prepare(self) -> None:
        await self.res.queue.ensure_groups()
        self._reclaim_at = time.monotonic() + self.res.queue.claim_idle_ms / 1000

    def _reread_due(self) -> bool:
        """Every claim time: also the answers another bot process read and died with are taken over."""
        now = time.monotonic()
        if now < self._reclaim_at:
            return False
        self._reclaim_at = now + self.res.queue.claim_idle_ms / 1000
        return True

    async def _read(self, pending: bool) -> Sequence[Delivery[AnswerMessage]]:
        queue, consumer = self.res.queue, self.res.consumer
        batch = await queue.read_answers(consumer, pending=pending, block_ms=1_000)
        return batch + (await queue.reclaim_answers(consumer) if pending else [])

    async def _handle(self, delivery: Delivery[AnswerMessage]) -> None:
        await self.deliver(delivery)

    async def deliver(self, delivery: Delivery[AnswerMessage]) -> None:
        """Send one answer (retrying on flood control and network errors), record it, ack it."""
        answer = delivery.message
        with structlog.contextvars.bound_contextvars(question_id=answer.question_id):
            queue = self.res.queue
            await self._settle_acknowledgement(answer.question_id)
            if answer.part is not None:
                await self._deliver_part(answer)
                await queue.ack_answer(delivery.entry_id)
                return
            conversation_id: str | None = None
            message_ids: list[int] = []
            if not await queue.was_sent(answer.question_id):
                language = answer.language or await self._language(answer.question_id)
                if answer.status == "ok" and answer.conversation_id:
                    conversation_id = await remember_answer(
                        self.res, answer.user, answer.question_id, answer.text, answer.worker
                    )
                sent, message_ids = await self._send_pieces(answer, language)
                if sent is not None and answer.finished_at:
                    metrics.DELIVERY_SECONDS.observe(max(0.0, sent - answer.finished_at))
                await queue.mark_sent(answer.question_id)
                self._sent_at[answer.question_id] = sent
            # The user may ask again as soon as they have the answer, also while the database is away.
            await queue.clear_pending(answer.user, answer.question_id)
            if conversation_id is not None and message_ids:
                await link_answer(self.res, answer.user, conversation_id, answer.chat_id, message_ids)
            await self.res.progress.stop_typing(answer.chat_id)
            if not await queue.was_recorded(answer.question_id):  # maybe sent before a database outage
                # After a restart the send time is unknown: it was sent just before.
                await self._record(answer, self._sent_at.get(answer.question_id, time.time()))
                await queue.mark_recorded(answer.question_id)
            self._sent_at.pop(answer.question_id, None)
            await queue.ack_answer(delivery.entry_id)

    async def _settle_acknowledgement(self, question_id: str) -> None:
        """The answer is here first: give the acknowledgement a moment (order kept), then drop it
        if it is still waiting behind Telegram's outgoing limit."""
        ack = self.res.acknowledgements.pop(question_id, None)
        if ack is not None and not ack.done():
            await asyncio.wait({ack}, timeout=ACK_GRACE_S)
            if not ack.done():
                ack.cancel()
                log.info("ack.dropped", reason="answer ready")

    async def _deliver_part(self, part: AnswerMessage) -> None:
        """Send an early paragraph once, in order; the final answer sends any this one could not."""
        queue, index = self.res.queue, part.part or 0
        key = f"{part.question_id}#{index}"  # the final answer's piece of the same index
        if await queue.was_sent(part.question_id) or await queue.was_sent(key):
            return
        if index > 0 and not await queue.was_sent(f"{part.question_id}#{index - 1}"):
            return  # the one before is not out: the final answer sends both, in order
        reply_to = part.reply_to if index == 0 else None
        sent = await self._send(part.chat_id, part.text, reply_to, None)
        if sent is not None:
            await queue.mark_sent(key, sent.message_id)  # the final answer links it to the conversation
            log.info("answer.part_sent", part=index)

    async def _language(self, question_id: str) -> str:
        """The language the question's user is spoken to in (stored with the question)."""
        async with self.res.sessionmaker() as session:
            question = await session.get(Question, question_id)
        return (question.language if question else None) or self.res.settings.default_language

    async def _send_pieces(self, answer: AnswerMessage, language: str) -> tuple[float | None, list[int]]:
        """Send every piece (the first replies to the question, the last has 👍/👎).

        Returns when the last was sent (None if undeliverable) and the ids of the answer's messages,
        those sent before too (early paragraphs, or pieces sent before a restart): a reply to any of
        them continues the conversation.
        """
        pieces = answer_pieces(answer, language)
        sent_at: float | None = None
        message_ids: list[int] = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            key = f"{answer.question_id}#{index}"  # a restart does not resend the pieces already sent
            if not last and await self.res.queue.was_sent(key):
                if (earlier := await self.res.queue.sent_message(key)) is not None:
                    message_ids.append(earlier)
                continue
            ok = last and answer.status == "ok"
            markup = feedback_keyboard(answer.question_id, language) if ok else None
            sent = await self._send(answer.chat_id, piece, answer.reply_to if index == 0 else None, markup)
            if sent is None:
                return None, message_ids
            sent_at = time.time()
            message_ids.append(sent.message_id)
            if not last:
                await self.res.queue.mark_sent(key, sent.message_id)
        if answer.status == "ok" and sent_at is not None:  # a clinician may be asked about it
            await self.res.cases.remember_answer(answer.question_id, answer.text)
        if answer.status == "ok" and answer.finished_at and answer.taken_at:
            await self.res.progress.record_service_time(answer.finished_at - answer.taken_at)
        return sent_at, message_ids

    async def _send(
        self, chat_id: int, text: str, reply_to: int | None, markup: InlineKeyboardMarkup | None
    ) -> Message | None:
        """Send until Telegram accepts it; None when the chat is gone (blocked, deleted)."""
        return await send_until_accepted(self.bot, chat_id, text, reply_to, markup)

    async def _record(self, answer: AnswerMessage, sent_at: float | None) -> None:
        """Store the answer (text only with research consent) and log the latency split."""
        now = datetime.now(UTC)
        async with self.res.sessionmaker.begin() as session:
            if await session.scalar(select(Answer.id).where(Answer.question_id == answer.question_id)):
                return  # recorded before Redis lost the "recorded" marker (committed, then Redis went away)
            await record_answer(
                session, question_id=answer.question_id, text=answer.text, status=answer.status,
                model_sha256=answer.model_sha256, prompt_version=answer.prompt_version,
                prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                taken_at=_ts(answer.taken_at) or now, first_token_at=_ts(answer.first_token_at),
                finished_at=_ts(answer.finished_at) or now, sent_at=_ts(sent_at), worker=answer.worker,
                stop_reason=answer.stop_reason, conversation_id=answer.conversation_id, turn=answer.turn,
            )  # fmt: skip
            status = "answered" if answer.status == "ok" and sent_at else "failed"
            await set_question_status(session, answer.question_id, status)
            await self._audit_model(session, answer)
        log.info(
            "answer.sent",
            status=answer.status,
            delivered=sent_at is not None,
            **latency_split(answer, sent_at),
        )

    async def _audit_model(self, session: AsyncSession, answer: AnswerMessage) -> None:
        """Audit a model or prompt change, seen in the answers (workers need no database)."""
        model = (answer.model_sha256, answer.prompt_version)
        if answer.status != "ok" or model == self._model_seen:
            return
        events = await audit_startup(session, "worker", {}, model_sha256=model[0], prompt_version=model[1])
        self._model_seen = model
        if "model.changed" in events:
            log.info("model.changed", sha256=(model[0] or "")[:16], prompt_version=model[1])


def latency_split(answer: AnswerMessage, sent_at: float | None) -> dict[str, float]:
    """Seconds spent in each stage: received → enqueued → taken → first token → last token → sent."""
    marks = [
        ("enqueue_s", answer.received_at, answer.enqueued_at),
        ("wait_s", answer.enqueued_at, answer.taken_at),
        ("first_token_s", answer.taken_at, answer.first_token_at),
        ("generate_s", answer.first_token_at, answer.finished_at),
        ("send_s", answer.finished_at, sent_at),
    ]
    return {name: round(end - start, 4) for name, start, end in marks if start and end}
