"""Telegram's outgoing limits, shared by every bot process through Redis, with answers sent first.

Telegram allows a bot about 30 messages per second overall and 20 per minute in one group; above that it
answers 429 with a ``retry_after``. Every call that names a chat takes a token from a bucket kept in
Redis (GCRA, on Redis' clock), so two bot processes together stay under the limit. Waiting calls are
served by priority, not by arrival: an answer goes before the acknowledgements queued ahead of it, and a
"typing…" action goes last, and only when it need not wait at all (a late one helps nobody, and in a
group it would take a message's place in the group's 20 a minute). A 429 pauses every process for its
``retry_after``, then the call is tried again (up to ``max_retries``) at its priority. When Redis is
away the process keeps its own bucket until Redis is back: messages still go out, at most at the full
rate per process.

Priorities are passed as python-telegram-bot's ``rate_limit_args`` on a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from telegram.error import RetryAfter, TelegramError
from telegram.ext import BaseRateLimiter

from bot import metrics

log = structlog.get_logger("bot.telegram.outgoing")

ANSWER = 0  # an answer, or the danger-sign referral: what the user is waiting for
REPLY = 1  # a reply to a command or a button (the default)
ACKNOWLEDGEMENT = 2  # "your question is in the queue"
CHAT_ACTION = 3  # "typing…"

OVERALL_PER_S = 30.0
OVERALL_BURST = 5
GROUP_PER_MIN = 15.0  # with a burst of 5: at most 20 in any minute in one group
GROUP_BURST = 5

Result = bool | dict[str, Any] | list[dict[str, Any]]
Callback = Callable[..., Coroutine[Any, Any, Result]]

# GCRA on Redis' clock. KEYS: bucket, pause. ARGV: interval ms, burst. Returns 0 when a token was taken,
# else the milliseconds to wait (a pause set after a 429 holds every process).
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused end
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > tolerance then return math.max(1, math.ceil(tat - now - tolerance)) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 1000)
return 0
"""


@dataclass
class LocalBucket:
    """The same GCRA in process memory: used before Redis is attached and while it is away."""

    interval_s: float
    burst: int
    tat: float = 0.0

    def take(self, now: float, paused_until: float) -> float:
        """0 when a token was taken, else the seconds to wait."""
        if paused_until > now:
            return paused_until - now
        tat = max(self.tat, now)
        tolerance = self.interval_s * (self.burst - 1)
        if tat - now > tolerance:
            return tat - now - tolerance
        self.tat = tat + self.interval_s
        return 0.0


def is_group(chat_id: object) -> bool:
    """Groups, supergroups and channels have negative ids (or an @username)."""
    with contextlib.suppress(ValueError, TypeError):
        return int(chat_id) < 0  # type: ignore[call-overload, no-any-return]
    return isinstance(chat_id, str)


class Skipped(TelegramError):
    """A best-effort call (a chat action) not sent, because it would have had to wait its turn."""

    def __init__(self) -> None:
        super().__init__("not sent: the outgoing limit is in use")


class Gate:
    """The calls waiting for one bucket, served by priority: a dispatcher hands out its tokens."""

    def __init__(self, take: Callable[[], Awaitable[float]]) -> None:
        self._take = take
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Calls waiting here."""
        return sum(1 for _, _, waiter in self._waiting if not waiter.done())

    @property
    def idle(self) -> bool:
        """Nothing waits and no dispatcher runs."""
        return not self._waiting and (self._dispatcher is None or self._dispatcher.done())

    async def turn(self, priority: int, *, best_effort: bool = False) -> None:
        """Wait for a token; ``best_effort`` takes one only if free now, else raises Skipped."""
        if best_effort:
            if self.waiting or await self._take() > 0:
                raise Skipped
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), waiter))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="outgoing-dispatch")
        try:
            await waiter
        except asyncio.CancelledError:
            waiter.cancel()  # the dispatcher skips it
            raise

    async def _dispatch(self) -> None:
        """Hand out tokens, always to the most urgent waiting call; ends when nobody waits."""
        while True:
            self._drop_cancelled()
            if not self._waiting:
                return
            wait = await self._take()
            if wait > 0:
                await asyncio.sleep(wait)  # pacing to the limit, not synchronisation
                continue
            self._drop_cancelled()
            if self._waiting:
                heapq.heappop(self._waiting)[2].set_result(None)

    def _drop_cancelled(self) -> None:
        while self._waiting and self._waiting[0][2].done():
            heapq.heappop(self._waiting)

    async def close(self) -> None:
        """Stop the dispatcher; calls still waiting are released (they fail on the closed connection)."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        for _, _, waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)
        self._waiting.clear()


class OutgoingLimiter(BaseRateLimiter[int]):
    """Overall and per-group limits in Redis, a priority queue per process, 429s retried."""

    def __init__(self, *, max_retries: int = 3) -> None:
        self.max_retries = max_retries
        self._redis: Redis | None = None
        self._namespace = ""
        self._group_key: Callable[[int], str] = str
        self._take_script: Any = None
        overall = LocalBucket(1 / OVERALL_PER_S, OVERALL_BURST)
        self._overall = Gate(lambda: self._take("overall", 1000 / OVERALL_PER_S, OVERALL_BURST, overall))
        self._groups: dict[str, Gate] = {}
        self._group_buckets: dict[str, LocalBucket] = {}  # used only while Redis is away
        self._paused_until = 0.0
        self._local = False  # True while Redis is away (logged once per outage)

    def attach(self, redis: Redis, namespace: str, group_key: Callable[[int], str]) -> None:
        """Share the limits through ``redis``; ``group_key`` names a group without its Telegram id."""
        self._redis, self._namespace, self._group_key = redis, namespace, group_key
        self._take_script = redis.register_script(_TAKE)

    @property
    def waiting(self) -> int:
        """Calls of this process waiting for an overall token."""
        return self._overall.waiting

    @property
    def local(self) -> bool:
        """True while Redis is away and this process keeps its own buckets."""
        return self._local

    async def initialize(self) -> None:
        """Nothing to open: the dispatcher starts with the first call."""

    async def shutdown(self) -> None:
        """Stop the dispatchers; calls still waiting are released to fail on the closed connection."""
        for gate in [self._overall, *self._groups.values()]:
            await gate.close()
        self._groups.clear()

    async def process_request(
        self,
        callback: Callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Result:
        """Wait for the group's and then the overall turn (by priority), call, retry after a 429."""
        chat_id = data.get("chat_id")
        if chat_id is None:
            return await callback(*args, **kwargs)  # getMe, answerCallbackQuery...: not limited
        priority = REPLY if rate_limit_args is None else rate_limit_args
        best_effort = priority >= CHAT_ACTION
        for attempt in range(self.max_retries + 1):
            if is_group(chat_id):
                await self._group_turn(chat_id, priority, best_effort)
            await self._overall.turn(priority, best_effort=best_effort)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                metrics.TELEGRAM_429.labels(endpoint).inc()
                if attempt == self.max_retries:
                    raise
                pause = exc.retry_after
                seconds = pause.total_seconds() if hasattr(pause, "total_seconds") else float(pause)
                log.info("outgoing.flood_control", endpoint=endpoint, retry_after_s=seconds)
                await self._pause(seconds + 0.1)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- turns -------------------------------------------------------------------------------

    async def _group_turn(self, chat_id: object, priority: int, best_effort: bool) -> None:
        """Wait (by priority) for a token of this group's bucket: 20 messages a minute."""
        try:
            name = "group:" + self._group_key(int(chat_id))  # type: ignore[call-overload]
        except (ValueError, TypeError):
            name = "group:@"  # an @channel name: all such share one bucket (the bot sends none)
        gate = self._groups.get(name)
        if gate is None:
            local = self._group_buckets.setdefault(name, LocalBucket(60 / GROUP_PER_MIN, GROUP_BURST))
            gate = Gate(lambda: self._take(name, 60_000 / GROUP_PER_MIN, GROUP_BURST, local))
            self._groups[name] = gate
        try:
            await gate.turn(priority, best_effort=best_effort)
        finally:
            if gate.idle:
                self._groups.pop(name, None)

    async def _take(self, name: str, interval_ms: float, burst: int, local: LocalBucket) -> float:
        """0 when a token of bucket ``name`` was taken, else the seconds to wait before asking again."""
        if self._take_script is not None:
            try:
                keys = [f"{self._namespace}:outgoing:{name}", f"{self._namespace}:outgoing:pause"]
                wait_ms = int(await self._take_script(keys=keys, args=[interval_ms, burst]))
                if self._local:
                    self._local = False
                    log.info("outgoing.shared_limit_back")
                return wait_ms / 1000
            except (RedisError, OSError) as exc:
                if not self._local:
                    self._local = True
                    log.warning("outgoing.local_limit", error=type(exc).__name__)
        return local.take(time.monotonic(), self._paused_until)

    async def _pause(self, seconds: float) -> None:
        """Hold every call of every process for ``seconds`` (Telegram's flood control)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.set(f"{self._namespace}:outgoing:pause", "1", px=int(seconds * 1000))
