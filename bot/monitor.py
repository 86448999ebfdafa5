"""Operational alerts to the admin chat: dead letters, a queue backing up, no worker answering.

Each condition is reported when it starts (not at every check); the dead-letter count is reported
when it grows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from telegram.ext import ContextTypes

from bot import resources, texts
from bot.alerts import alert
from bot.resources import Resources


@dataclass
class MonitorState:
    """What was already reported."""

    dead: int | None = None
    backlog: bool = False
    stalled: bool = False


async def _oldest_age_s(res: Resources) -> float:
    """Age of the oldest question still in the stream (waiting or being answered), 0 when empty."""
    entries = await res.queue.redis.xrange(res.queue.names.questions, count=1)
    if not entries:
        return 0.0
    return max(0.0, time.time() - int(str(entries[0][0]).split("-", 1)[0]) / 1000)


async def check(context: ContextTypes.DEFAULT_TYPE) -> None:
    """One round of checks (a repeating job while ADMIN_CHAT_ID is set)."""
    res = resources.get(context.bot_data)
    state: MonitorState = context.bot_data.setdefault("monitor", MonitorState())
    chat = res.settings.admin_chat_id
    dead = int(await res.queue.redis.xlen(res.queue.names.dead))
    if state.dead is not None and dead > state.dead:
        await alert(context.bot, chat, texts.ALERT_DEAD_LETTERS.format(count=dead - state.dead))
    state.dead = dead
    waiting = await res.queue.waiting()
    backlog = waiting >= res.settings.busy_queue_size
    if backlog and not state.backlog:
        await alert(context.bot, chat, texts.ALERT_BACKLOG.format(count=waiting))
    state.backlog = backlog
    age = await _oldest_age_s(res)
    stalled = age > res.settings.stall_alert_s
    if stalled and not state.stalled:
        await alert(context.bot, chat, texts.ALERT_STALLED.format(minutes=round(age / 60, 1)))
    state.stalled = stalled
