"""The held-question job: a group question whose asker did not consent in time is dropped, and the
group told, by whichever bot process sweeps first (the expiry is in Redis: it survives a restart)."""

from __future__ import annotations

from typing import Any

import structlog
from telegram.error import TelegramError
from telegram.ext import Job, JobQueue

from bot.flows import groups
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.questions import reply

log = structlog.get_logger("bot.held")

JOB_NAME = "held-expiry"
MAX_SWEEP_S = 5.0  # a held question is dropped at most this late (or CONSENT_HOLD_S, when shorter)


async def expire_held(context: BotContext) -> None:
    """Drop the held questions that are due and say so in their groups."""
    res = context.resources
    for held in await groups.expire_due(res):
        try:
            await reply(context.bot, held, t(texts.GROUP_QUESTION_DROPPED, held.language))
        except TelegramError as exc:
            log.warning("question.hold_expired_notice_failed", error=type(exc).__name__)
        log.info("question.hold_expired")


def schedule_held_expiry(job_queue: JobQueue[Any], hold_s: float) -> Job[Any]:
    """Sweep the held questions every ``min(CONSENT_HOLD_S, 5 s)``."""
    interval = min(hold_s, MAX_SWEEP_S)
    return job_queue.run_repeating(expire_held, interval=interval, first=interval, name=JOB_NAME)
