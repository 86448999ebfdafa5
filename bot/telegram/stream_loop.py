"""The background loop that reads one stream in the bots' group: start, stop, and a re-read on demand."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from telegram.ext import ExtBot

from bot.resources import Resources


class StreamLoop:
    """Runs ``_run`` as a background task until stopped; entries not yet acked stay pending in Redis.

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

    async def _run(self) -> None:
        raise NotImplementedError


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait for it."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
