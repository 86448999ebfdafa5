"""A gate that lets a suspect question run alone on the engine.

A failed ``llama_decode`` fails every sequence of its batch, and a question that crashes the
process takes its batch-mates' deliveries with it: a question that already failed (or was already
delivered before) runs alone, so only a question that fails by itself is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class SoloGate:
    """Generations enter shared or solo: a solo one waits for the engine to empty and keeps it."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._running = 0
        self._solo = False

    @contextlib.asynccontextmanager
    async def enter(self, *, solo: bool) -> AsyncIterator[None]:
        """Hold a place on the engine for one generation (alone when ``solo``)."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._solo)
            if solo:
                self._solo = True
                await self._changed.wait_for(lambda: self._running == 0)
            self._running += 1
        try:
            yield
        finally:
            async with self._changed:
                self._running -= 1
                if solo:
                    self._solo = False
                self._changed.notify_all()
