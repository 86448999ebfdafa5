"""The background loop that reads one stream in the bots' group: start, stop, retries, a re-read on demand."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import structlog
from pydantic import BaseModel
from redis.exceptions import RedisError
from telegram.error import NetworkError
from telegram.ext import ExtBot

from bot.resources import Resources
from storage.queue import Delivery

log = structlog.get_logger("bot.stream_loop")

M = TypeVar("M", bound=BaseModel)
RETRY_S = 2.0
# Redis, the network or Telegram away: worth a warning, then the pending entries are read again.
TRANSIENT = (OSError, ConnectionError, NetworkError, RedisError)


class StreamLoop(Generic[M]):
    """Reads and handles entries in a background task until stopped; unacked entries stay pending in Redis.

    This consumer's pending entries are read first (after a restart or a take-over), then new ones; after
    an error, and whenever ``recheck_pending`` or ``_reread_due`` asks, the pending ones again. A subclass
    says how to ``_prepare`` (create its groups), ``_read`` and ``_handle``.
    ``recheck_pending`` asks the loop to read this consumer's unacked entries again soon: entries of a
    bot process that died were just moved to it.
    """

    name = "stream-loop"

    def __init__(self, bot: ExtBot[Any], res: Resources) -> None:
        self.bot = bot
        self.res = res
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._recheck = False

    def recheck_pending(self) -> None:
        """Read this consumer's unacked entries again soon."""
        self._recheck = True

    def _take_recheck(self) -> bool:
        """Whether a re-read was asked for since the last call."""
        asked, self._recheck = self._recheck, False
        return asked

    def start(self) -> None:
        """Run the loop as a background task."""
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop the loop and wait for it to end."""
        self._stop.set()
        await cancel_task(self._task)

    async def _prepare(self) -> None:
        """Before the first read (for example: create the consumer groups)."""

    async def _read(self, pending: bool) -> Sequence[Delivery[M]]:
        """The next entries: this consumer's unacked ones when ``pending``, else new ones (blocking ~1 s)."""
        raise NotImplementedError

    async def _handle(self, delivery: Delivery[M]) -> None:
        """Handle one entry and ack it."""
        raise NotImplementedError

    def _reread_due(self) -> bool:
        """Whether the pending entries are due to be read again (besides errors and rechecks)."""
        return False

    async def _run(self) -> None:
        """Read and handle until stopped; after an error, wait RETRY_S and read the pending ones again."""
        await self._prepare()
        pending = True
        while not self._stop.is_set():
            pending = self._take_recheck() or self._reread_due() or pending
            try:
                batch = await self._read(pending)
                pending = False
                for delivery in batch:
                    await self._handle(delivery)
            except TRANSIENT as exc:
                log.warning("stream_loop.retry", loop=self.name, error=type(exc).__name__)
                pending = True
                await asyncio.sleep(RETRY_S)
            except Exception as exc:
                log.error("stream_loop.error", loop=self.name, error=type(exc).__name__)
                pending = True
                await asyncio.sleep(RETRY_S)


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait for it."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
