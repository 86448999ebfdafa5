"""Operational alerts to the admin chat: dead letters, a queue backing up, no worker answering.

Each condition is reported when it starts (not at every check); the dead-letter count is reported
when it grows. What was reported lives in Redis (one hash under the queue namespace), and each
change of it is one atomic swap: whichever bot process sees a change first reports it, once per
deployment. The check itself runs once per interval under a lease.
"""

from __future__ import annotations

from redis.asyncio import Redis

from bot.jobs.lease import run_leased
from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.alerts import alert
from bot.telegram.context import BotContext

JOB_NAME = "monitor"
STATE_TTL_S = 7 * 86_400  # unchecked this long (no admin chat): start afresh

# Set field ARGV[1] to ARGV[2] and return its previous value; write nothing when it is unchanged.
_SWAP = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old ~= ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return old
"""


class MonitorState:
    """What was already reported, shared by the deployment's bot processes."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.key = f"{namespace}:monitor"

    async def swap(self, field: str, value: str) -> str | None:
        """Store ``value`` for ``field``; the value before (None the first time)."""
        old = await self.redis.eval(_SWAP, 1, self.key, field, value, str(STATE_TTL_S))  # type: ignore[misc]
        return None if old is None else str(old)

    async def started(self, field: str, on: bool) -> bool | None:
        """Record a condition; True when it just started, False when it just ended, else None."""
        old = await self.swap(field, "1" if on else "0")
        if old == ("1" if on else "0") or (old is None and not on):
            return None
        return on


async def _check_workers(context: BotContext, res: Resources, state: MonitorState) -> None:
    """Alert when no worker has read the queue for WORKER_DOWN_S, and again when one is back."""
    live = await res.queue.live_workers()
    change = await state.started("workers_down", live == 0)
    if change is not None:
        text = texts.ALERT_WORKERS_DOWN if change else texts.ALERT_WORKERS_BACK
        await alert(
            context.bot, res.settings.admin_chat_id, text.format(seconds=int(res.queue.worker_alive_s))
        )


async def check(context: BotContext) -> None:
    """One round of checks (a repeating job while ADMIN_CHAT_ID is set), in one process per round."""
    res = context.resources
    await run_leased(res.leases, JOB_NAME, res.settings.monitor_interval_s, lambda: _check(context, res))


async def _check(context: BotContext, res: Resources) -> None:
    """Compare each condition with what was reported and alert on the changes."""
    state = MonitorState(res.queue.redis, res.queue.names.namespace)
    chat = res.settings.admin_chat_id
    dead = await res.queue.dead_count()
    before = await state.swap("dead", str(dead))
    if before is not None and dead > int(before):
        await alert(context.bot, chat, texts.ALERT_DEAD_LETTERS.format(count=dead - int(before)))
    waiting = await res.queue.waiting()
    if await state.started("backlog", waiting >= res.settings.busy_queue_size):
        await alert(context.bot, chat, texts.ALERT_BACKLOG.format(count=waiting))
    age = await res.queue.oldest_age_s()
    if await state.started("stalled", age > res.settings.stall_alert_s):
        await alert(context.bot, chat, texts.ALERT_STALLED.format(minutes=round(age / 60, 1)))
    await _check_workers(context, res, state)
