"""Operational alerts to the admin chat: dead letters, a queue backing up, no worker answering.

Each condition is reported when it starts (not at every check); the dead-letter count is reported
when it grows. What was reported lives in Redis (one hash under the queue namespace), and each
change of it is one atomic swap: whichever bot process sees a change first reports it, once per
deployment. The check itself runs once per interval under a lease. Alerts carry pseudonyms and rule
names only, never message text; they are in English (for the people running the bot).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from bot.jobs.lease import run_leased
from bot.redflags import RedFlag
from bot.resources import Resources
from storage.queue import QuestionMessage

JOB_NAME = "monitor"
STATE_TTL_S = 7 * 86_400  # unchecked this long (no admin chat): start afresh

ALERT_RED_FLAG = (
    "🚩 Danger sign {rule} from user {user} (question {question}). The user was told to seek emergency care."
)
ALERT_DEAD_LETTERS = "⚠️ {count} question(s) could not be answered (dead letters)."
ALERT_BACKLOG = "⚠️ The queue is backing up: {count} questions waiting."
ALERT_WORKERS_DOWN = "⚠️ No worker has read the queue for {seconds} s: questions are not being answered."
ALERT_WORKERS_BACK = "✅ A worker is reading the queue again."
ALERT_STALLED = "⚠️ No worker seems to be answering: the oldest question has waited {minutes} min."

Notify = Callable[[str], Awaitable[object]]  # sends one alert to the admin chat

# Set field ARGV[1] to ARGV[2] and return its previous value; write nothing when it is unchanged.
_SWAP = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old ~= ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return old
"""


def red_flag_note(flag: RedFlag, question: QuestionMessage) -> str:
    """The on-call alert for a danger sign: rule, user pseudonym and question id."""
    return ALERT_RED_FLAG.format(rule=flag.label, user=question.user, question=question.question_id)


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


async def _check_workers(res: Resources, state: MonitorState, notify: Notify) -> None:
    """Alert when no worker has read the queue for WORKER_DOWN_S, and again when one is back."""
    live = await res.queue.live_workers()
    change = await state.started("workers_down", live == 0)
    if change is not None:
        text = ALERT_WORKERS_DOWN if change else ALERT_WORKERS_BACK
        await notify(text.format(seconds=int(res.queue.worker_alive_s)))


async def check(res: Resources, notify: Notify) -> None:
    """One round of checks (a repeating job while ADMIN_CHAT_ID is set), in one process per round."""
    await run_leased(res.leases, JOB_NAME, res.settings.monitor_interval_s, lambda: _check(res, notify))


async def _check(res: Resources, notify: Notify) -> None:
    """Compare each condition with what was reported and alert on the changes."""
    state = MonitorState(res.queue.redis, res.queue.names.namespace)
    dead = await res.queue.dead_count()
    before = await state.swap("dead", str(dead))
    if before is not None and dead > int(before):
        await notify(ALERT_DEAD_LETTERS.format(count=dead - int(before)))
    waiting = await res.queue.waiting()
    if await state.started("backlog", waiting >= res.settings.busy_queue_size):
        await notify(ALERT_BACKLOG.format(count=waiting))
    age = await res.queue.oldest_age_s()
    if await state.started("stalled", age > res.settings.stall_alert_s):
        await notify(ALERT_STALLED.format(minutes=round(age / 60, 1)))
    await _check_workers(res, state, notify)
