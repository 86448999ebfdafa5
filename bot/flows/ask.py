"""Asking a question: text checks, danger signs, one pending question per user, recording and queueing.

Used by private questions, group questions (/ask, mention, reply) and group questions released
after their asker consented in private.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import structlog

from bot import metrics, redflags
from bot.flows.conversation import remember_question
from bot.flows.library import RetrievalLimits, context_of, retrieve
from bot.redflags import RedFlag
from bot.resources import Resources
from storage.models import Question
from storage.queue import QuestionMessage
from storage.repositories.questions import mark_enqueued, record_question, set_question_status
from storage.repositories.users import get_or_create_user

log = structlog.get_logger("bot.questions")


class Refusal(StrEnum):
    """Why a question is not taken."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    STILL_WORKING = "still_working"  # the user's previous question is not answered yet
    BUSY = "busy"  # the queue is full


@dataclass(frozen=True)
class Queued:
    """A question on the queue: its place, and whether this handling should acknowledge it."""

    position: int
    acknowledge: bool


def refusal_of(text: str, max_chars: int) -> Refusal | None:
    """Empty and over-long text are refused."""
    if not text:
        return Refusal.EMPTY
    if len(text) > max_chars:
        return Refusal.TOO_LONG
    return None


def danger(question: QuestionMessage) -> RedFlag | None:
    """The danger sign in the question, if any (checked before anything else)."""
    flag = redflags.check(question.text)
    if flag is not None:
        log.warning("question.red_flag", rule=flag.label)
        metrics.DANGER_SIGNS.labels(flag.rule).inc()
    return flag


async def enqueue(
    res: Resources, question: QuestionMessage, language: str, *, urgent: bool = False
) -> Queued | Refusal:
    """One pending question per user; refuse when busy (not urgent ones); record and enqueue.

    Safe to run again for the same question (an update handled again after a crash or an outage):
    the question is recorded once, enqueued once and acknowledged at most once. It is enqueued before
    any acknowledgement, so a refused acknowledgement never loses it.
    """
    claim = await res.queue.claim_pending(question.user, question.question_id)  # atomic: one per user
    if claim == "other":
        return Refusal.STILL_WORKING
    position = await res.queue.waiting() + 1
    if claim == "new" and position > res.settings.busy_queue_size and not urgent:
        await res.queue.clear_pending(question.user, question.question_id)
        log.info("question.busy", waiting=position - 1)
        return Refusal.BUSY
    question = await _record(res, await _ground(res, question), language)
    await res.cases.remember_question(
        question_id=question.question_id, user=question.user, chat_id=question.chat_id,
        message_id=question.message_id, language=language, text=question.text,
        danger=redflags.check(question.text) is not None,
        conversation_id=question.conversation_id, turn=question.turn,
    )  # fmt: skip
    await remember_question(res, question)
    stamped = {"enqueued_at": time.time(), "delivery": res.settings.delivery}
    enqueued = await res.queue.enqueue_once(question.model_copy(update=stamped))
    async with res.sessionmaker.begin() as session:
        await mark_enqueued(session, question.question_id, datetime.now(UTC))
    if enqueued is not None:
        log.info("question.enqueued", position=enqueued.position, chat_type=question.chat_type)
    await res.progress.start_typing(question.chat_id)
    return Queued(position, await res.updates.once(f"ack:{question.question_id}"))


async def cancel(res: Resources, pseudonym: str, chat_id: int) -> bool:
    """Take the user's pending question off the queue (a worker that has it drops the answer)."""
    question_id = await res.queue.cancel(pseudonym)
    if question_id is None:
        return False
    async with res.sessionmaker.begin() as session:
        await set_question_status(session, question_id, "cancelled")
    await res.progress.stop_typing(chat_id)
    return True


async def _ground(res: Resources, question: QuestionMessage) -> QuestionMessage:
    """The question with the library passages retrieved for it, a follow-up's with its conversation's
    earlier questions as context (see bot.flows.library)."""
    settings = res.settings
    limits = RetrievalLimits(settings.library_top_k, settings.library_max_tokens, settings.library_min_match)
    context = context_of(question.history)
    async with res.sessionmaker() as session:
        grounding = await retrieve(session, question.text, question.language, limits, context)
    if grounding.passages:
        log.info("question.grounded", passages=len(grounding.passages))
    return question.model_copy(
        update={"passages": grounding.passages, "library_version": grounding.library_version}
    )


async def _record(res: Resources, question: QuestionMessage, language: str) -> QuestionMessage:
    """Store the question once (text only with research consent); returns it with the research flag set."""
    flag = redflags.check(question.text)  # danger()'s check; also for held group questions
    async with res.sessionmaker.begin() as session:
        existing = await session.get(Question, question.question_id)
        if existing is not None:  # recorded when this update was handled before
            return question.model_copy(update={"research": existing.research})
        user = await get_or_create_user(session, question.user, language)
        question = question.model_copy(update={"research": user.research_consent})
        await record_question(
            session, question_id=question.question_id, user=user, text=question.text,
            chat_pseudonym=res.pseudonyms.chat(question.chat_id), chat_type=question.chat_type,
            language=language, research=question.research,
            received_at=datetime.fromtimestamp(question.received_at, UTC),
            red_flag=flag.label if flag else None, passage_ids=[p.id for p in question.passages],
            library_version=question.library_version,
        )  # fmt: skip
    return question
