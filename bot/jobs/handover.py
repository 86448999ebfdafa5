"""The handover check: a case waiting HANDOVER_ALERT_MIN without a reply is reported once.

Unclaimed, it alerts ONCALL_CHAT_ID with the case's console link (never its text); either way the
asker is told it is still waiting, so nobody waits in silence.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from telegram.error import TelegramError
from telegram.ext import JobQueue

from bot.telegram import texts
from bot.telegram.alerts import alert
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from storage.models import Case, utcnow
from storage.repositories.cases import mark_overdue, overdue_cases

log = structlog.get_logger("bot.handover_check")


def case_link(console_url: str, case_id: int) -> str:
    """The console page of a case."""
    return f"{console_url.rstrip('/')}/cases/{case_id}"


async def check_cases(context: BotContext) -> None:
    """Report every case that has waited too long (once each); no transaction is open while sending."""
    res = context.resources
    minutes = res.settings.handover_alert_min
    async with res.sessionmaker() as session:
        waiting = await overdue_cases(session, utcnow() - timedelta(minutes=minutes))
    for case in waiting:
        if case.claimed_by is None:
            link = case_link(res.settings.console_url, case.id)
            await alert(context.bot, res.settings.oncall_chat_id,
                        texts.ALERT_CASE_UNCLAIMED.format(minutes=round(minutes, 1), link=link))  # fmt: skip
        route = await res.cases.route(case.question_id)
        if route is not None:
            try:
                await context.bot.send_message(route[0], t(texts.HANDOVER_WAITING, case.language))
            except TelegramError as exc:
                log.warning("case.waiting_notice_failed", error=type(exc).__name__)
        async with res.sessionmaker.begin() as session:
            fresh = await session.get(Case, case.id)
            if fresh is not None:
                await mark_overdue(session, fresh)
        log.info("case.overdue", case_id=case.id, claimed=case.claimed_by is not None)


def schedule_handover_check(job_queue: JobQueue[Any], interval_s: float) -> None:
    """Check waiting cases every ``interval_s`` seconds."""
    job_queue.run_repeating(check_cases, interval=interval_s, first=interval_s, name="handover")
