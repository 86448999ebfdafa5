"""Operational alerts to the admin chat: dead letters, a queue backing up, no worker answering.

Each condition is reported when it starts (not at every check); the dead-letter count is reported
when it grows.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.alerts import alert
from bot.telegram.context import BotContext


@dataclass
class MonitorState:
    """What was already reported."""

    dead: int | None = None
    backlog: bool = False
    stalled: bool = False
    workers_down: bool = False


async def _check_workers(context: BotContext, res: Resources, state: MonitorState) -> None:
    """Alert when no worker has read the queue for WORKER_DOWN_S, and again when one is back."""
    live = await res.queue.live_workers()
    down = live == 0
    if down != state.workers_down:
        text = texts.ALERT_WORKERS_DOWN if down else texts.ALERT_WORKERS_BACK
        await alert(
            context.bot, res.settings.admin_chat_id, text.format(seconds=int(res.queue.worker_alive_s))
        )
    state.workers_down = down


async def check(context: BotContext) -> None:
    """One round of checks (a repeating job while ADMIN_CHAT_ID is set)."""
    res = context.resources
    state: MonitorState = context.bot_data.setdefault("monitor", MonitorState())
    chat = res.settings.admin_chat_id
    dead = await res.queue.dead_count()
    if state.dead is not None and dead > state.dead:
        await alert(context.bot, chat, texts.ALERT_DEAD_LETTERS.format(count=dead - state.dead))
    state.dead = dead
    waiting = await res.queue.waiting()
    backlog = waiting >= res.settings.busy_queue_size
    if backlog and not state.backlog:
        await alert(context.bot, chat, texts.ALERT_BACKLOG.format(count=waiting))
    state.backlog = backlog
    age = await res.queue.oldest_age_s()
    stalled = age > res.settings.stall_alert_s
    if stalled and not state.stalled:
        await alert(context.bot, chat, texts.ALERT_STALLED.format(minutes=round(age / 60, 1)))
    state.stalled = stalled
    await _check_workers(context, res, state)
