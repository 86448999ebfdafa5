"""The worker loop: take questions from the queue, generate off the event loop, publish answers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass

import structlog

from inference.engine import Engine, GenerationResult
from inference.errors import PromptTooLongError
from inference.prompt import PROMPT_VERSION, build_prompt
from storage.queue import AnswerMessage, Delivery, QuestionMessage, Queue

log = structlog.get_logger("inference.worker")

TOO_LONG_TEXT = "too long"


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs besides the queue and the engine."""

    name: str
    model_sha256: str | None
    max_answer_tokens: int = 384
    temperature: float = 0.0
    heartbeat_s: float = 10.0
    cancel_poll_s: float = 0.5


class Worker:
    """Answers questions one at a time with one engine; the model runs in a thread."""

    def __init__(self, queue: Queue, engine: Engine, config: WorkerConfig) -> None:
        self.queue = queue
        self.engine = engine
        self.config = config
        self.answered = 0
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; an unfinished question stays pending for a restart."""
        self._stop = stop
        await self.queue.ensure_groups()
        log.info("worker.ready", worker=self.config.name)
        while not stop.is_set():
            for delivery in await self.queue.read_questions(self.config.name, count=1, block_ms=500):
                if stop.is_set():
                    break
                await self.handle(delivery)
                await self.queue.trim()

    async def handle(self, delivery: Delivery[QuestionMessage]) -> None:
        """Answer one question, unless it was withdrawn."""
        question = delivery.message
        with structlog.contextvars.bound_contextvars(question_id=question.question_id):
            if await self.queue.is_cancelled(question.question_id):
                await self.queue.drop(delivery)
                log.info("question.dropped", reason="cancelled")
                return
            log.info("question.taken", deliveries=delivery.deliveries, chars=len(question.text))
            taken_at = time.time()
            cancelled, interrupted = threading.Event(), threading.Event()
            watcher = asyncio.create_task(self._watch(delivery, cancelled, interrupted))
            try:
                result = await asyncio.to_thread(self._generate, question, cancelled, interrupted)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if interrupted.is_set() and not cancelled.is_set():
                log.info("question.left_pending", reason="shutdown")
                return
            await self._publish(delivery, result, taken_at)

    def _generate(
        self, question: QuestionMessage, cancelled: threading.Event, interrupted: threading.Event
    ) -> GenerationResult | str:
        """Run the model (in a worker thread); a refusal is returned as its reason."""
        prompt = build_prompt(question.text, question.language)
        try:
            return self.engine.generate(
                prompt,
                max_tokens=self.config.max_answer_tokens,
                temperature=self.config.temperature,
                should_stop=lambda: cancelled.is_set() or interrupted.is_set(),
            )
        except PromptTooLongError as exc:
            log.warning("generation.refused", error=type(exc).__name__)
            return TOO_LONG_TEXT

    async def _watch(
        self, delivery: Delivery[QuestionMessage], cancelled: threading.Event, interrupted: threading.Event
    ) -> None:
        """Keep the claim alive; notice a withdrawal or a shutdown while the model runs."""
        last_beat = time.monotonic()
        while not cancelled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.cancel_poll_s)
            if self._stop.is_set():
                interrupted.set()
                return
            if await self.queue.is_cancelled(delivery.message.question_id):
                cancelled.set()
            if time.monotonic() - last_beat >= self.config.heartbeat_s:
                await self.queue.heartbeat(self.config.name, [delivery.entry_id])
                last_beat = time.monotonic()

    async def _publish(
        self, delivery: Delivery[QuestionMessage], result: GenerationResult | str, taken_at: float
    ) -> None:
        """Write the answer and ack, or drop a withdrawn question."""
        if isinstance(result, GenerationResult) and result.stop_reason == "cancelled":
            await self.queue.drop(delivery)
            log.info("question.dropped", reason="cancelled")
            return
        answer = self._answer(delivery.message, result, taken_at)
        await self.queue.finish(delivery, answer)
        self.answered += 1
        log.info(
            "answer.published",
            status=answer.status,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            seconds=round(answer.finished_at - taken_at, 3),
        )

    def _answer(self, q: QuestionMessage, result: GenerationResult | str, taken_at: float) -> AnswerMessage:
        """The answer message for a result (or a refusal)."""
        common = {
            "question_id": q.question_id,
            "chat_id": q.chat_id,
            "reply_to": q.message_id,
            "user": q.user,
            "model_sha256": self.config.model_sha256,
            "prompt_version": PROMPT_VERSION,
            "received_at": q.received_at,
            "enqueued_at": q.enqueued_at,
            "taken_at": taken_at,
            "worker": self.config.name,
        }
        if isinstance(result, str):
            return AnswerMessage(**common, status="failed", text=result, finished_at=time.time())
        return AnswerMessage(
            **common,
            text=result.text,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            stop_reason=result.stop_reason,
            first_token_at=result.first_token_at,
            finished_at=result.finished_at,
        )
