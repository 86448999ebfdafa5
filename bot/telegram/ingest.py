"""Durable ingest: updates are stored in Redis before Telegram's offset moves past them, then handled.

Two parts. The poller long-polls ``getUpdates`` (raw JSON, not parsed), stores each batch in the update
log and only then asks for the next offset, which is what confirms the batch to Telegram: an update
Telegram forgets is always in Redis. It runs in a thread of its own, on its own event loop and Redis
connection, so handlers keeping the main loop busy never delay an update's way into Redis.

The consumer reads the log, parses each update on its own (one that python-telegram-bot cannot parse is
skipped and logged without content), lets the Application's handlers run, and acks the update. An update
whose handling failed on a passing outage (Redis, the database, the network) is left pending and handled
again after a backoff, so nothing acknowledged is lost. Updates of one chat are handled in order;
different chats are handled concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from redis.exceptions import RedisError
from telegram import Bot, Update

from bot import metrics
from bot.errors import BotError
from storage.queue.backoff import Backoff
from storage.queue.updates import StoredUpdate, UpdateLog, update_id_of

log = structlog.get_logger("bot.ingest")

ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "channel_post", "my_chat_member"]
TELEGRAM_RETRIES = 5  # an update whose handling failed on Telegram's side this often is given up


@dataclass
class Handling:
    """What the handlers said about the update being handled (set by the error handler)."""

    retry: bool = False
    reason: str = ""


_current: contextvars.ContextVar[Handling | None] = contextvars.ContextVar("ingest_handling", default=None)


def retry_later(reason: str) -> bool:
    """Ask for the update being handled to be handled again later; False outside the consumer."""
    handling = _current.get()
    if handling is None:
        return False
    handling.retry, handling.reason = True, reason
    return True


@dataclass
class IngestConfig:
    """Knobs of the ingest: long-poll timeout, consumer name, concurrency, reclaim time."""

    consumer: str = "bot"
    poll_timeout_s: int = 30
    concurrency: int = 16
    reclaim_idle_ms: int = 60_000
    allowed_updates: list[str] = field(default_factory=lambda: list(ALLOWED_UPDATES))


Process = Callable[[Update], Awaitable[Any]]


class PollRefused(BotError):
    """The Bot API answered getUpdates with an error (status, and its retry_after when flood control)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"getUpdates refused with HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class UpdateIngest:
    """Poll Telegram into the update log, and hand each stored update to ``process`` once."""

    def __init__(
        self,
        bot: Bot,
        api_url: str,
        updates: UpdateLog,
        process: Process,
        config: IngestConfig,
        *,
        poll_log: Callable[[], UpdateLog] | None = None,
    ) -> None:
        """``poll_log`` makes the poller's own update log (a client of the same Redis) for its thread;
        without it the poller shares ``updates`` on the caller's loop."""
        self.bot = bot
        self.api_url = api_url  # carries the token: never logged
        self.updates = updates
        self._poll_log = poll_log
        self._poller: threading.Thread | None = None
        self._poll_halt = threading.Event()
        self._poll_loop: asyncio.AbstractEventLoop | None = None
        self._poll_task: asyncio.Task[Any] | None = None
        self._poll_stop: asyncio.Event | None = None
        self.process = process
        self.config = config
        self._stop_polling = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._chat_tails: dict[int, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(config.concurrency)
        self._offset: int | None = None
        self._retry_due = False
        self._recheck = False
        self._backoff = Backoff()
        self.handled = 0
        self.retries = 0
        self.store_failures = 0

    def start(self, *, poll: bool = True) -> None:
        """Start the consumer and (unless updates arrive another way) the poller."""
        self._tasks.append(asyncio.create_task(self._consume(), name="ingest-consume"))
        if not poll:
            return
        if self._poll_log is None:
            self._tasks.append(asyncio.create_task(self._poll(self.updates), name="ingest-poll"))
        else:
            self._poller = threading.Thread(target=self._poll_thread, name="ingest-poll", daemon=True)
            self._poller.start()

    async def stop(self) -> None:
        """Stop polling, finish the updates being handled; the rest stays stored for the next start."""
        self._stop_polling.set()
        for task in self._tasks:
            if task.get_name() == "ingest-poll":
                task.cancel()  # a long poll in progress returns nothing Telegram would forget
        await self._stop_poll_thread()
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        await self._confirm()

    def recheck_pending(self) -> None:
        """Read this consumer's unacked updates again soon (entries were moved to it)."""
        self._recheck = True

    # -- poller ------------------------------------------------------------------------------

    def _poll_thread(self) -> None:
        """The poller's thread: its own event loop until halted (a crash is logged and polling resumes)."""
        while not self._poll_halt.is_set():
            try:
                asyncio.run(self._poll_own_loop())
            except Exception as exc:  # never leave the bot without a poller
                log.error("ingest.poll_crashed", error=type(exc).__name__)
                self._poll_halt.wait(1.0)

    async def _poll_own_loop(self) -> None:
        """Poll with an update log of this loop's own (a Redis client is bound to one loop)."""
        assert self._poll_log is not None
        updates = self._poll_log()
        stop = asyncio.Event()
        self._poll_stop, self._poll_task = stop, asyncio.current_task()
        self._poll_loop = asyncio.get_running_loop()
        try:
            if not self._poll_halt.is_set():
                with contextlib.suppress(asyncio.CancelledError):
                    await self._poll(updates, stop)
        finally:
            self._poll_loop = None
            await updates.redis.aclose()

    async def _stop_poll_thread(self) -> None:
        """Halt the poller's thread (a long poll in progress is cancelled) and wait for it to end."""
        if self._poller is None:
            return
        self._poll_halt.set()
        loop = self._poll_loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                loop.call_soon_threadsafe(self._cancel_poll)
        await asyncio.to_thread(self._poller.join)
        self._poller = None

    def _cancel_poll(self) -> None:
        """(In the poller's loop) stop waiting and cancel the long poll."""
        if self._poll_stop is not None:
            self._poll_stop.set()
        if self._poll_task is not None:
            self._poll_task.cancel()

    async def _poll(self, updates: UpdateLog, stop: asyncio.Event | None = None) -> None:
        """Long-poll getUpdates; store each batch before asking for the next offset."""
        stop = stop or self._stop_polling
        backoff = Backoff()
        async with httpx.AsyncClient(timeout=self.config.poll_timeout_s + 10) as client:
            while not stop.is_set():
                try:
                    batch = await self._get_updates(client, self.config.poll_timeout_s)
                except PollRefused as exc:
                    log.warning("ingest.poll_refused", status=exc.status)
                    await backoff.wait(stop, seconds=exc.retry_after or None)
                    continue
                except httpx.HTTPError as exc:
                    log.warning("ingest.poll_failed", error=type(exc).__name__)
                    await backoff.wait(stop)
                    continue
                backoff.reset()
                if batch and await self._store(updates, batch, stop):
                    ids = [i for i in map(update_id_of, batch) if i is not None]
                    if ids:
                        self._offset = max(ids) + 1

    async def _get_updates(
        self, client: httpx.AsyncClient, timeout: int, limit: int = 100
    ) -> list[dict[str, Any]]:
        """One getUpdates call, the result as raw JSON objects (never parsed here)."""
        params: dict[str, Any] = {
            "timeout": timeout,
            "limit": limit,
            "allowed_updates": self.config.allowed_updates,
        }
        if self._offset is not None:
            params["offset"] = self._offset
        response = await client.post(f"{self.api_url}/getUpdates", json=params)
        try:
            body = response.json()
        except ValueError:
            raise PollRefused(response.status_code, None) from None
        if not isinstance(body, dict) or not body.get("ok"):
            retry = (body.get("parameters") or {}).get("retry_after") if isinstance(body, dict) else None
            raise PollRefused(response.status_code, float(retry) if isinstance(retry, int | float) else None)
        result = body.get("result")
        return [raw for raw in result if isinstance(raw, dict)] if isinstance(result, list) else []

    async def _store(self, updates: UpdateLog, batch: list[dict[str, Any]], stop: asyncio.Event) -> bool:
        """Store the batch, retrying while Redis is away; False when stopped before it was stored."""
        backoff = Backoff()
        while True:
            try:
                started = time.perf_counter()
                new = await updates.store(batch)
                metrics.UPDATE_STORE_SECONDS.observe(time.perf_counter() - started)
                log.debug("ingest.stored", updates=len(batch), new=new)
                return True
            except (RedisError, OSError) as exc:
                log.warning("ingest.store_failed", error=type(exc).__name__)
                self.store_failures += 1
                if stop.is_set():
                    return False  # not confirmed: Telegram sends the batch again at the next start
                await backoff.wait(stop)

    async def _confirm(self) -> None:
        """Tell Telegram the stored updates are safe (the next start would do it too)."""
        if self._offset is None:
            return
        async with httpx.AsyncClient(timeout=5) as client:
            with contextlib.suppress(httpx.HTTPError, PollRefused):
                await self._get_updates(client, 0, limit=1)

    # -- consumer ----------------------------------------------------------------------------

    async def _consume(self) -> None:
        """Own unacked updates first (after a restart or a failure), then new ones, until stopped.

        Every RECLAIM_IDLE_MS, and when ``recheck_pending`` says so, it reads its own unacked ones
        again (taken over from a bot process that died) and reclaims long-idle ones.
        """
        pending, ensured = True, False
        reclaim_at = time.monotonic() + self.config.reclaim_idle_ms / 1000
        while not self._stop.is_set():
            if self._recheck or time.monotonic() >= reclaim_at:
                pending, self._recheck = True, False
                reclaim_at = time.monotonic() + self.config.reclaim_idle_ms / 1000
            if self._retry_due:
                self._retry_due, pending = False, True
                await self._backoff.wait(self._stop)
                continue
            try:
                if not ensured:
                    await self.updates.ensure_group()
                    ensured = True
                batch = await self._next(pending)
            except (RedisError, OSError) as exc:
                log.warning("ingest.read_failed", error=type(exc).__name__)
                pending = True
                await self._backoff.wait(self._stop)
                continue
            pending = pending and bool(batch)
            for stored in batch:
                await self._dispatch(stored)

    async def _next(self, pending: bool) -> list[StoredUpdate]:
        """The next updates to handle (pending ones exclude those being handled now)."""
        skip = frozenset(self._in_flight)
        if pending:
            own = await self.updates.read(self.config.consumer, pending=True, skip=skip)
            if own:
                return own
            return [
                s
                for s in await self.updates.reclaim(self.config.consumer, self.config.reclaim_idle_ms)
                if s.entry_id not in skip
            ]
        return await self.updates.read(self.config.consumer, pending=False, block_ms=1_000)

    async def _dispatch(self, stored: StoredUpdate) -> None:
        """Handle ``stored`` after the previous update of its chat, with bounded concurrency."""
        await self._slots.acquire()
        chat = _chat_of(stored.payload)
        previous = self._chat_tails.get(chat) if chat is not None else None
        task = asyncio.create_task(self._handle_after(previous, stored))
        self._in_flight[stored.entry_id] = task
        if chat is not None:
            self._chat_tails[chat] = task
        task.add_done_callback(lambda _t: self._done(stored.entry_id, chat, task))

    def _done(self, entry_id: str, chat: int | None, task: asyncio.Task[None]) -> None:
        """Free the slot of a handled update."""
        self._slots.release()
        self._in_flight.pop(entry_id, None)
        if chat is not None and self._chat_tails.get(chat) is task:
            del self._chat_tails[chat]

    async def _handle_after(self, previous: asyncio.Task[None] | None, stored: StoredUpdate) -> None:
        """Wait for the chat's previous update, then handle this one."""
        if previous is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)
        try:
            await self._handle(stored)
        except (RedisError, OSError) as exc:
            log.warning("ingest.ack_failed", error=type(exc).__name__, update_id=stored.update_id)
            self._retry_due = True
        except Exception as exc:  # never let one update stop the consumer
            log.error("ingest.handle_failed", error=type(exc).__name__, update_id=stored.update_id)
            self._retry_due = True

    async def _handle(self, stored: StoredUpdate) -> None:
        """Parse, run the handlers, ack, or leave pending for a retry."""
        with structlog.contextvars.bound_contextvars(update_id=stored.update_id):
            update = self._parse(stored)
            if update is None:
                await self.updates.ack(stored.entry_id)
                metrics.UPDATES.labels("unparseable").inc()
                return
            handling = Handling()
            token = _current.set(handling)
            try:
                await self.process(update)
            finally:
                _current.reset(token)
            if handling.retry and (handling.reason != "telegram" or stored.deliveries < TELEGRAM_RETRIES):
                log.warning("update.retry_later", reason=handling.reason, deliveries=stored.deliveries)
                self.retries += 1
                self._retry_due = True
                return
            await self.updates.ack(stored.entry_id)
            metrics.UPDATES.labels(metrics.update_type(stored.payload)).inc()
            self._backoff.reset()
            self.handled += 1

    def _parse(self, stored: StoredUpdate) -> Update | None:
        """The update as PTB's object, or None (logged without content) when it cannot be parsed."""
        if stored.payload is None:
            log.warning("update.unparseable", reason="not a JSON object")
            return None
        try:
            return Update.de_json(stored.payload, self.bot)
        except Exception as exc:
            log.warning("update.unparseable", error=type(exc).__name__)
            return None


def _chat_of(payload: dict[str, Any] | None) -> int | None:
    """The chat an update belongs to (for ordering), if it says."""
    if not payload:
        return None
    for kind in ("message", "edited_message", "channel_post", "my_chat_member"):
        part = payload.get(kind)
        if isinstance(part, dict) and isinstance(part.get("chat"), dict):
            chat_id = part["chat"].get("id")
            return chat_id if isinstance(chat_id, int) else None
    query = payload.get("callback_query")
    if isinstance(query, dict) and isinstance(query.get("from"), dict):
        user_id = query["from"].get("id")
        return user_id if isinstance(user_id, int) else None
    return None
