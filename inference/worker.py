"""The worker loop: take up to N questions from the queue, answer them together, publish each answer.

The model runs in one thread of its own (:meth:`BatchEngine.serve`): every step decodes one token
for each question being answered, and a question read from the queue while others are generating
joins at the next step. Each question is acked (in the same transaction as its answer) as soon as
its own answer is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass

import structlog

from inference.batch import BatchEngine, Outcome, Request
from inference.engine import Engine, GenerationResult
from inference.errors import PromptTooLongError
from inference.prompt import PROMPT_VERSION, build_prompt, preamble_prompt
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
    max_sequences: int = 4
    prefix_reuse: bool = True


class Worker:
    """Answers up to ``max_sequences`` questions at once with one model; the model runs in a thread.

    ``engine`` is a :class:`BatchEngine`, or a plain :class:`Engine` whose loaded model the worker
    shares with a batched context of its own (created in :meth:`run`, closed when it ends).
    """

    def __init__(self, queue: Queue, engine: Engine | BatchEngine, config: WorkerConfig) -> None:
        self.queue = queue
        self.engine = engine
        self.config = config
        self.answered = 0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; an unfinished question stays pending for a restart."""
        self._stop = stop
        await self.queue.ensure_groups()
        batch = await asyncio.to_thread(self._open_batch)
        halt = threading.Event()
        stepping = asyncio.create_task(asyncio.to_thread(batch.serve, halt))
        log.info("worker.ready", worker=self.config.name, max_sequences=batch.max_sequences)
        try:
            await self._loop(batch, stop)
        finally:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            halt.set()
            batch.wake()
            await stepping
            if batch is not self.engine:
                batch.close()

    def _open_batch(self) -> BatchEngine:
        """The batched engine, with the instruction prefix evaluated once (blocking)."""
        if isinstance(self.engine, BatchEngine):
            batch = self.engine
        else:
            batch = BatchEngine.sharing(self.engine, max_sequences=self.config.max_sequences)
        if self.config.prefix_reuse and batch.prefix_tokens == 0:
            batch.set_prefix(preamble_prompt())
        return batch

    def consumer(self, slot: int) -> str:
        """The queue consumer name of a slot: the worker's name, then ``name#1``, ``name#2``...

        Each slot reads and acks under its own name, so a slot's unacked question (left by a
        restart) comes back to that slot first, and questions in flight are never read again.
        """
        return self.config.name if slot == 0 else f"{self.config.name}#{slot}"

    async def _loop(self, batch: BatchEngine, stop: asyncio.Event) -> None:
        """Fill every free slot from the queue (one question per slot); one task per question."""
        slots: dict[int, asyncio.Task[None]] = {}
        while not stop.is_set():
            self._reap(slots)
            free = [slot for slot in range(batch.max_sequences) if slot not in slots]
            if not free:
                await asyncio.wait(slots.values(), timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                continue
            found = False
            for index, slot in enumerate(free):
                wait_ms = 500 if index == len(free) - 1 and not found and not slots else 1
                deliveries = await self.queue.read_questions(self.consumer(slot), count=1, block_ms=wait_ms)
                if deliveries and not stop.is_set():
                    found = True
                    slots[slot] = asyncio.create_task(self.handle(deliveries[0], batch, self.consumer(slot)))
                    self._tasks.add(slots[slot])
            if not found and slots:
                await asyncio.wait(slots.values(), timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            await self.queue.trim()

    def _reap(self, slots: dict[int, asyncio.Task[None]]) -> None:
        """Free the slots of finished questions; re-raise the failure of one that failed."""
        for slot, task in list(slots.items()):
            if task.done():
                del slots[slot]
                self._tasks.discard(task)
                task.result()

    async def handle(
        self, delivery: Delivery[QuestionMessage], batch: BatchEngine, consumer: str | None = None
    ) -> None:
        """Answer one question (read by ``consumer``, default the worker's name), unless withdrawn."""
        question = delivery.message
        with structlog.contextvars.bound_contextvars(question_id=question.question_id):
            if await self.queue.is_cancelled(question.question_id):
                await self.queue.drop(delivery)
                log.info("question.dropped", reason="cancelled")
                return
            log.info("question.taken", deliveries=delivery.deliveries, chars=len(question.text))
            taken_at = time.time()
            cancelled, interrupted = threading.Event(), threading.Event()
            watcher = asyncio.create_task(
                self._watch(delivery, consumer or self.config.name, cancelled, interrupted)
            )
            try:
                result = await self._generate(batch, question, cancelled, interrupted)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if interrupted.is_set() and not cancelled.is_set():
                log.info("question.left_pending", reason="shutdown")
                return
            await self._publish(delivery, result, taken_at)

    async def _generate(
        self,
        batch: BatchEngine,
        question: QuestionMessage,
        cancelled: threading.Event,
        interrupted: threading.Event,
    ) -> GenerationResult | str:
        """Submit the question to the model thread and wait; a refusal is returned as its reason."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def deliver(outcome: Outcome) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future, outcome)

        request = Request(
            build_prompt(question.text, question.language),
            max_tokens=self.config.max_answer_tokens,
            temperature=self.config.temperature,
            should_stop=lambda: cancelled.is_set() or interrupted.is_set(),
            reuse_prefix=self.config.prefix_reuse,
        )
        batch.submit(request, deliver)
        outcome = await future
        if isinstance(outcome, PromptTooLongError):
            log.warning("generation.refused", error=type(outcome).__name__)
            return TOO_LONG_TEXT
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _watch(
        self,
        delivery: Delivery[QuestionMessage],
        consumer: str,
        cancelled: threading.Event,
        interrupted: threading.Event,
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
                await self.queue.heartbeat(consumer, [delivery.entry_id])
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
            "language": q.language,
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


def _resolve(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    """Set a question's outcome (on the event loop), unless it was already settled."""
    if not future.done():
        future.set_result(outcome)
