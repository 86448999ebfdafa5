"""The Telegram side of a question after its handler: referral, refusals and the acknowledgement.

Used by private questions, group questions (/ask, mention, reply) and group questions released
after their asker consented in private; the decisions are ``bot.flows.ask``'s.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import structlog
from telegram import Message, ReplyParameters
from telegram.error import TelegramError
from telegram.ext import ExtBot

from bot import metrics
from bot.flows import ask
from bot.flows.alerts import red_flag_note
from bot.redflags import RedFlag
from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.alerts import alert
from bot.telegram.i18n import t
from bot.telegram.keyboards import clinician_keyboard
from bot.telegram.outgoing import ACKNOWLEDGEMENT, ANSWER, REPLY
from storage.queue import QuestionMessage

log = structlog.get_logger("bot.questions")


async def reply(bot: ExtBot[Any], question: QuestionMessage, text: str, priority: int = REPLY) -> Message:
    """Send ``text`` to the question's chat as a reply to it (plain text), at ``priority``."""
    target = ReplyParameters(question.message_id, allow_sending_without_reply=True)
    return await bot.send_message(question.chat_id, text, reply_parameters=target, rate_limit_args=priority)


async def warn_if_danger(
    bot: ExtBot[Any], res: Resources, question: QuestionMessage, language: str
) -> RedFlag | None:
    """On a danger sign: the fixed referral message at once and an alert to the on-call chat."""
    flag = ask.danger(question)
    if flag is None:
        return None
    emergency = res.settings.emergency_number or t(texts.EMERGENCY_DEFAULT, language)
    referral = t(texts.RED_FLAG, language).format(emergency=emergency)
    target = ReplyParameters(question.message_id, allow_sending_without_reply=True)
    offer = clinician_keyboard(question.question_id, language)  # works once the question is queued
    await bot.send_message(
        question.chat_id, referral, reply_parameters=target, reply_markup=offer, rate_limit_args=ANSWER
    )
    await alert(bot, res.settings.oncall_chat_id, red_flag_note(flag, question))
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


REFUSALS = {ask.Refusal.STILL_WORKING: texts.STILL_WORKING, ask.Refusal.BUSY: texts.BUSY}


async def queue_question(
    bot: ExtBot[Any], res: Resources, question: QuestionMessage, language: str, *, urgent: bool = False
) -> bool:
    """Queue the question (``bot.flows.ask.enqueue``): say why when it is refused, else acknowledge it."""
    outcome = await ask.enqueue(res, question, language, urgent=urgent)
    if isinstance(outcome, ask.Refusal):
        await reply(bot, question, t(REFUSALS[outcome], language))
        return False
    if outcome.acknowledge:
        # In the background: it waits its turn under Telegram's outgoing limit, and is dropped when
        # the answer is ready first (an acknowledgement after the answer helps nobody).
        task = asyncio.create_task(_acknowledge(bot, res, question, outcome.position, language))
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
