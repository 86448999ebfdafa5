"""The path of a question after its handler: danger-sign check, fairness, recording and queueing.

Used by private questions, group questions (/ask, mention, reply) and group questions released
after their asker consented in private.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from telegram import Message, ReplyParameters
from telegram.error import TelegramError
from telegram.ext import ExtBot

from bot import metrics, redflags
from bot.flows.library import RetrievalLimits, retrieve
from bot.redflags import RedFlag
from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.alerts import alert
from bot.telegram.i18n import t
from bot.telegram.outgoing import ACKNOWLEDGEMENT, ANSWER, REPLY
from storage.models import Question
from storage.queue import QuestionMessage
from storage.repositories.questions import mark_enqueued, record_question
from storage.repositories.users import get_or_create_user

log = structlog.get_logger("bot.questions")


async def reply(bot: ExtBot[Any], question: QuestionMessage, text: str, priority: int = REPLY) -> Message:
    """Send ``text`` to the question's chat as a reply to it (plain text), at ``priority``."""
    target = ReplyParameters(question.message_id, allow_sending_without_reply=True)
    return await bot.send_message(question.chat_id, text, reply_parameters=target, rate_limit_args=priority)


async def warn_if_danger(
    bot: ExtBot[Any], res: Resources, question: QuestionMessage, language: str
) -> RedFlag | None:
    """On a danger sign: the fixed referral message at once and an alert to the on-call chat."""
    flag = redflags.check(question.text)
    if flag is None:
        return None
    emergency = res.settings.emergency_number or t(texts.EMERGENCY_DEFAULT, language)
    referral = t(texts.RED_FLAG, language).format(emergency=emergency)
    await reply(bot, question, referral, ANSWER)
    note = texts.ALERT_RED_FLAG.format(rule=flag.label, user=question.user, question=question.question_id)
    await alert(bot, res.settings.oncall_chat_id, note)
    log.warning("question.red_flag", rule=flag.label)
    metrics.DANGER_SIGNS.labels(flag.rule).inc()
    return flag


async def acknowledgement(res: Resources, position: int, slots: int, language: str) -> str:
    """Place in the queue, with an estimated wait once recent answer times are known.

    ``slots`` is how many questions the running workers answer at once: position 8 with 8 slots is
    answered now, not after seven others.
    """
    wait = await res.progress.estimated_wait_s(position, slots)
    if wait is None:
        return t(texts.ACK, language).format(position=position)
    if wait < 60:
        return t(texts.ACK_UNDER_MINUTE, language).format(position=position)
    return t(texts.ACK_WITH_WAIT, language).format(position=position, minutes=math.ceil(wait / 60))


async def queue_question(
    bot: ExtBot[Any], res: Resources, question: QuestionMessage, language: str, *, urgent: bool = False
) -> bool:
    """One pending question per user; refuse when busy (not urgent ones); record, enqueue, acknowledge.

    Safe to run again for the same question (an update handled again after a crash or an outage):
    the question is recorded once, enqueued once and acknowledged at most once. It is enqueued before
    the acknowledgement, so a refused acknowledgement never loses it.
    """
    claim = await res.queue.claim_pending(question.user, question.question_id)  # atomic: one per user
    if claim == "other":
        await reply(bot, question, t(texts.STILL_WORKING, language))
        return False
    position = await res.queue.waiting() + 1
    if claim == "new" and position > res.settings.busy_queue_size and not urgent:
        await res.queue.clear_pending(question.user, question.question_id)
        await reply(bot, question, t(texts.BUSY, language))
        log.info("question.busy", waiting=position - 1)
        return False
    question = await _record(res, await _ground(res, question), language)
    stamped = {"enqueued_at": time.time(), "delivery": res.settings.delivery}
    enqueued = await res.queue.enqueue_once(question.model_copy(update=stamped))
    async with res.sessionmaker.begin() as session:
        await mark_enqueued(session, question.question_id, datetime.now(UTC))
    if enqueued is not None:
        log.info("question.enqueued", position=enqueued.position, chat_type=question.chat_type)
    await res.progress.start_typing(question.chat_id)
    if await res.updates.once(f"ack:{question.question_id}"):
        # In the background: it waits its turn under Telegram's outgoing limit, and is dropped when
        # the answer is ready first (an acknowledgement after the answer helps nobody).
        task = asyncio.create_task(_acknowledge(bot, res, question, position, language))
        res.acknowledgements[question.question_id] = task
        task.add_done_callback(lambda _: res.acknowledgements.pop(question.question_id, None))
    return True


async def _acknowledge(
    bot: ExtBot[Any], res: Resources, question: QuestionMessage, position: int, language: str
) -> None:
    """The acknowledgement; Telegram refusing it loses nothing (the question is queued).

    No "typing…" here: the acknowledgement says enough, and chat actions count against Telegram's
    outgoing limit like messages. The typing job shows it while the answer is being written.
    """
    try:
        slots = await res.queue.capacity()
        await reply(bot, question, await acknowledgement(res, position, slots, language), ACKNOWLEDGEMENT)
        if question.received_at:
            metrics.ACKNOWLEDGEMENT_SECONDS.observe(max(0.0, time.time() - question.received_at))
    except TelegramError as exc:
        log.warning("question.ack_failed", error=type(exc).__name__)


async def _ground(res: Resources, question: QuestionMessage) -> QuestionMessage:
    """The question with the library passages retrieved for it (see bot.flows.library)."""
    settings = res.settings
    limits = RetrievalLimits(settings.library_top_k, settings.library_max_tokens, settings.library_min_match)
    async with res.sessionmaker() as session:
        grounding = await retrieve(session, question.text, question.language, limits)
    if grounding.passages:
        log.info("question.grounded", passages=len(grounding.passages))
    return question.model_copy(
        update={"passages": grounding.passages, "library_version": grounding.library_version}
    )


async def _record(res: Resources, question: QuestionMessage, language: str) -> QuestionMessage:
    """Store the question once (text only with research consent); returns it with the research flag set."""
    flag = redflags.check(question.text)  # warn_if_danger's check; also for held group questions
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
