"""DELIVERY=paragraphs on the worker: publish an answer's finished paragraphs while it is being written."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from inference.outage import UNAVAILABLE
from inference.paragraphs import Paragraphs
from storage.queue import AnswerMessage, QuestionMessage, Queue

log = structlog.get_logger("inference.early")

PartFactory = Callable[[int, str], AnswerMessage]
"""Makes the answer message of early paragraph ``index`` with its text."""


class EarlyParagraphs:
    """Publishes each finished paragraph once, in order; the final answer says where they end.

    :meth:`on_text` is called on the engine's thread; publishing happens on ``loop``, one part after
    the other. A part that cannot be published (Redis away) is not lost: the final answer carries
    the whole text and where each early paragraph ends, and the bot sends what it has not sent.
    """

    def __init__(
        self, queue: Queue, question: QuestionMessage, make: PartFactory, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.queue = queue
        self.question = question
        self.make = make
        self.loop = loop
        self.paragraphs = Paragraphs()
        self._last: asyncio.Task[None] | None = None

    def restart(self) -> None:
        """A new generation of the same question (after a failure): paragraphs are counted again."""
        self.paragraphs = Paragraphs()

    def on_text(self, text: str) -> None:
        """The answer so far (engine thread): hand each newly finished paragraph to the event loop."""
        for index, paragraph in self.paragraphs.feed(text):
            with contextlib.suppress(RuntimeError):  # the loop is gone: the final answer has it all
                self.loop.call_soon_threadsafe(self._queue_part, index, paragraph)

    def _queue_part(self, index: int, paragraph: str) -> None:
        """Publish after the previous part (event loop)."""
        self._last = self.loop.create_task(self._publish(self._last, index, paragraph))

    async def _publish(self, previous: asyncio.Task[None] | None, index: int, paragraph: str) -> None:
        """Publish one part once the one before it is out; one try (the final answer covers a miss)."""
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            published = await self.queue.publish_part(self.question, self.make(index, paragraph))
        except UNAVAILABLE as exc:
            log.info("answer.part_skipped", part=index, error=type(exc).__name__)
            return
        log.info("answer.part_published" if published else "answer.part_known", part=index)

    async def settle(self) -> list[int]:
        """Wait for the parts being published; where each early paragraph ends in the final text."""
        if self._last is not None:
            await asyncio.gather(self._last, return_exceptions=True)
        return list(self.paragraphs.ends)
