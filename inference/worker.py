"""The worker loop: take up to N questions from the queue, answer them together, publish each answer.

The model runs in one thread of its own (:meth:`BatchEngine.serve`): every step decodes one token
for each question being answered, and a question read from the queue while others are generating
joins at the next step. Each question is acked (in the same transaction as its answer) as soon as
its own answer is written.

Nothing here ends the worker but a stop or a dead engine:

- Redis going away (and coming back) is an outage: one log line, reads and publishes retried with
  capped backoff, finished answers kept in memory until they are published; heartbeats and
  withdrawal checks that fail are simply tried again at the next tick.
- A question whose generation raises is tried again (each try counts as a delivery) and then
  dead-lettered, its user told; the worker goes on with the others.
- A question whose claim another worker took over (after an outage longer than the claim time)
  stops generating; an answer already finished is still published, at most once (the queue's
  ``answered`` marker).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog

from inference import metrics
from inference.backend import Backend
from inference.batch import BatchEngine, Outcome, Request
from inference.early import EarlyParagraphs
from inference.engine import Engine, GenerationResult
from inference.errors import InferenceError, PromptTooLongError
from inference.outage import UNAVAILABLE, Outage
from inference.prompt import PROMPT_VERSION, fit_prompt, preamble_prompt
from inference.solo import SoloGate
from storage.queue import AnswerMessage, Delivery, QuestionMessage, Queue, Source

log = structlog.get_logger("inference.worker")

TOO_LONG_TEXT = "too long"
READ_BLOCK_MS = 500
TRIM_EVERY_S = 60.0

T = TypeVar("T")


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
    capacity_ttl_s: float = 15.0
    prefix_state: Path | None = None
    """Where the instruction prefix's KV state is loaded from at start, or saved to (cold start)."""
    pool_slots: int = 16
    pool_bytes: int = 256 << 20
    """The conversation KV pool of a batched context the worker creates (see BatchEngine)."""


class EngineGoneError(InferenceError):
    """The model thread ended while questions were waiting for it."""


class _Stopped(Exception):
    """The worker is stopping while Redis is away: give up and leave the question pending."""


@dataclass
class _InFlight:
    """A question being answered: its delivery and the flags its generation watches."""

    delivery: Delivery[QuestionMessage]
    cancelled: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    interrupted: threading.Event = field(default_factory=threading.Event)
    generated: bool = False  # its answer is ready: a lost claim no longer matters (publish is idempotent)
    failed: bool = False  # its generation failed here: it runs alone from now on
    early: EarlyParagraphs | None = None  # DELIVERY=paragraphs: finished paragraphs go out early
    history_turns: int = 0  # earlier conversation turns its prompt holds (after trimming)

    def should_stop(self) -> bool:
        """Whether generation should end early (withdrawn, taken over, shutting down)."""
        return self.cancelled.is_set() or self.lost.is_set() or self.interrupted.is_set()


class Worker:
    """Answers up to ``max_sequences`` questions at once with one model; the model runs in a thread.

    ``engine`` is a :class:`BatchEngine` or another :class:`~inference.backend.Backend` (a model
    server: :class:`~inference.remote.RemoteEngine`), or a plain :class:`Engine` whose loaded model
    the worker shares with a batched context of its own (created in :meth:`run`, closed when it ends).
    """

    def __init__(self, queue: Queue, engine: Engine | Backend, config: WorkerConfig) -> None:
        self.queue = queue
        self.engine = engine
        self.config = config
        self.answered = 0
        self.engine_failed = False
        self.redis = Outage("redis")
        self._stop = asyncio.Event()
        self._flight: dict[str, _InFlight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._futures: set[asyncio.Future[Outcome]] = set()
        self._gate = SoloGate()
        self.batch: Backend | None = None
        """The backend (batched engine) once :meth:`run` opened it."""

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; an unfinished question stays pending for a restart."""
        self._stop = stop
        try:
            await self._retrying(self.queue.ensure_groups)
        except _Stopped:
            return
        batch = await asyncio.to_thread(self._open_batch)
        self.batch = batch
        halt = threading.Event()
        stepping = asyncio.create_task(asyncio.to_thread(batch.serve, halt))
        stepping.add_done_callback(lambda task: self._engine_ended(task, halt))
        slots = batch.max_sequences
        keepalive = asyncio.create_task(self._keepalive(slots))
        try:
            await self._retrying(
                lambda: self.queue.advertise(self.config.name, slots, self.config.capacity_ttl_s)
            )
            log.info("worker.ready", worker=self.config.name, max_sequences=slots)
            await self._loop(batch, stop)
        except _Stopped:
            log.info("worker.stopping", reason="redis_unavailable")
        finally:
            for flight in self._flight.values():
                flight.interrupted.set()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            halt.set()
            batch.wake()
            await asyncio.gather(stepping, return_exceptions=True)
            if batch is not self.engine:
                batch.close()
            with contextlib.suppress(*UNAVAILABLE):
                await self.queue.withdraw(self.config.name)

    def _open_batch(self) -> Backend:
        """The batched engine, with the instruction prefix evaluated once (blocking)."""
        batch: Backend
        if isinstance(self.engine, Engine):
            batch = BatchEngine.sharing(
                self.engine,
                max_sequences=self.config.max_sequences,
                pool_slots=self.config.pool_slots,
                pool_bytes=self.config.pool_bytes,
            )
        else:
            batch = self.engine
        if self.config.prefix_reuse and batch.prefix_tokens == 0:
            started = time.perf_counter()
            tokens = batch.set_prefix(preamble_prompt(), self.config.prefix_state)
            source = getattr(batch, "prefix_source", "")
            log.info(
                "prefix.ready", tokens=tokens, source=source, seconds=round(time.perf_counter() - started, 3)
            )
        return batch

    def _engine_ended(self, task: asyncio.Task[None], halt: threading.Event) -> None:
        """The model thread ended: unless asked to, the engine is broken and the worker stops."""
        if halt.is_set():
            return
        error = task.exception() if not task.cancelled() else None
        log.error("engine.failed", error=type(error).__name__ if error else "stopped")
        self.engine_failed = True
        for future in list(self._futures):
            if not future.done():
                future.set_result(EngineGoneError("the model thread ended"))
        self._stop.set()

    # -- reading -----------------------------------------------------------------------------------

    async def _loop(self, batch: Backend, stop: asyncio.Event) -> None:
        """Fill every free slot from the queue; one task per question; ride out Redis outages."""
        resume_after: str | None = "0"  # own entries left from before a restart, read page by page
        last_trim = time.monotonic()
        while not stop.is_set():
            free = batch.max_sequences - len(self._tasks)
            if free <= 0:
                await asyncio.wait(self._tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                if self.redis.down:  # back: streams may be new (no persistence), claims may look stale
                    await self.queue.ensure_groups()
                    await self._beat()  # renew our claims before anyone (even we) reclaims them
                if resume_after is None:
                    deliveries = await self.queue.read_questions(
                        self.config.name, count=free, block_ms=READ_BLOCK_MS, own_pending=False
                    )
                else:
                    deliveries, resume_after = await self.queue.resume(self.config.name, free, resume_after)
                if time.monotonic() - last_trim > TRIM_EVERY_S:
                    await self.queue.trim()
                    last_trim = time.monotonic()
                self.redis.recovered()
            except UNAVAILABLE as exc:
                await self.redis.pause(exc, stop)
                continue
            for delivery in await self._not_routed(deliveries):
                self._start(delivery, batch)

    async def _not_routed(
        self, deliveries: list[Delivery[QuestionMessage]]
    ) -> list[Delivery[QuestionMessage]]:
        """The deliveries to answer here: a follow-up goes to the worker that answered its previous
        turn when that one can take it (it keeps the conversation's KV state; here it is recomputed)."""
        kept = []
        for delivery in deliveries:
            try:
                routed = await self.queue.route(delivery, self.config.name)
            except UNAVAILABLE as exc:  # answered here; had the hand-over happened, the claim check stops us
                log.warning("question.route_failed", error=type(exc).__name__)
                routed = False
            if routed:
                metrics.FOLLOW_UPS_ROUTED.inc()
                log.info(
                    "question.routed", question_id=delivery.message.question_id, to=delivery.message.holder
                )
            else:
                kept.append(delivery)
        return kept

    def _start(self, delivery: Delivery[QuestionMessage], batch: Backend) -> None:
        """Answer ``delivery`` in a task of its own, unless it is already being answered here."""
        if delivery.entry_id in self._flight or self._stop.is_set():
            return  # our own claim, taken again after an outage: it is being answered
        self._flight[delivery.entry_id] = _InFlight(delivery)
        task = asyncio.create_task(self.handle(delivery, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- keeping claims ----------------------------------------------------------------------------

    async def _keepalive(self, slots: int) -> None:
        """Renew the claims, notice withdrawals, announce the capacity; failures wait for the next tick."""
        tick = min(self.config.cancel_poll_s, self.config.heartbeat_s)
        last_beat = last_advert = float("-inf")
        while True:
            try:
                now = time.monotonic()
                if now - last_beat >= self.config.heartbeat_s:
                    await self._beat()
                    last_beat = now
                await self._check_withdrawn()
                if now - last_advert >= self.config.capacity_ttl_s / 3:
                    await self.queue.advertise(self.config.name, slots, self.config.capacity_ttl_s)
                    last_advert = now
                self.redis.recovered()  # wakes the tasks waiting out the outage
            except UNAVAILABLE as exc:
                self.redis.failed(exc)
            await asyncio.sleep(tick)

    async def _beat(self) -> None:
        """Renew the claim of every question in flight; stop generating the ones another worker took."""
        flights = dict(self._flight)
        lost = await self.queue.heartbeat(self.config.name, list(flights))
        for entry_id in lost:
            flight = flights.get(entry_id)
            if flight is not None and not flight.generated and not flight.lost.is_set():
                flight.lost.set()
                log.warning("question.claim_lost", question_id=flight.delivery.message.question_id)

    async def _check_withdrawn(self) -> None:
        """Flag the questions in flight that their users withdrew."""
        for flight in list(self._flight.values()):
            if await self.queue.is_cancelled(flight.delivery.message.question_id):
                flight.cancelled.set()

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis operation until it succeeds; raises :class:`_Stopped` once the worker stops."""
        while True:
            try:
                result = await operation()
            except UNAVAILABLE as exc:
                if self._stop.is_set():
                    raise _Stopped from None
                await self.redis.pause(exc, self._stop)
                continue
            self.redis.recovered()
            return result

    # -- answering ---------------------------------------------------------------------------------

    async def handle(self, delivery: Delivery[QuestionMessage], batch: Backend) -> None:
        """Answer one question unless withdrawn; never raises (a failure leaves it pending)."""
        flight = self._flight.setdefault(delivery.entry_id, _InFlight(delivery))
        metrics.BATCH_OCCUPANCY.set(len(self._flight))
        with structlog.contextvars.bound_contextvars(question_id=delivery.message.question_id):
            try:
                await self._answer_question(flight, batch)
            except _Stopped:
                log.info("question.left_pending", reason="shutdown")
            except Exception as exc:  # a bug must not end the worker: the question is reclaimed later
                log.error("question.failed", error=type(exc).__name__)
            finally:
                self._flight.pop(delivery.entry_id, None)
                metrics.BATCH_OCCUPANCY.set(len(self._flight))

    async def _answer_question(self, flight: _InFlight, batch: Backend) -> None:
        """Generate (trying again after a failure), then publish, drop or leave the question."""
        question = flight.delivery.message
        if await self._retrying(lambda: self.queue.is_cancelled(question.question_id)):
            await self._retrying(lambda: self.queue.drop(flight.delivery))
            log.info("question.dropped", reason="cancelled")
            return
        log.info("question.taken", deliveries=flight.delivery.deliveries, chars=len(question.text))
        taken_at = time.time()
        if question.delivery == "paragraphs":
            flight.early = EarlyParagraphs(
                self.queue,
                question,
                lambda index, text: AnswerMessage(**self._common(question, taken_at), part=index, text=text),
                asyncio.get_running_loop(),
            )
        result = await self._generate_with_retries(flight, batch)
        flight.generated = True
        part_ends = await flight.early.settle() if flight.early is not None else []
        if result is None:
            return
        if isinstance(result, GenerationResult) and result.stop_reason == "cancelled":
            await self._settle_stopped(flight)
            return
        await self._publish(flight.delivery, result, taken_at, part_ends)

    async def _generate_with_retries(
        self, flight: _InFlight, batch: Backend
    ) -> GenerationResult | str | None:
        """The question's result; after a failure it is tried again until delivered too often (None)."""
        while True:
            try:
                return await self._generate(batch, flight)
            except EngineGoneError:
                log.info("question.left_pending", reason="engine_failed")
                return None
            except Exception as exc:  # any engine failure belongs to this question, not the worker
                log.warning(
                    "generation.failed", error=type(exc).__name__, deliveries=flight.delivery.deliveries
                )
                flight.failed = True
            if flight.interrupted.is_set():
                log.info("question.left_pending", reason="shutdown")
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), min(2.0, 0.25 * flight.delivery.deliveries))
            again = await self._retrying(lambda: self.queue.redeliver(flight.delivery, self.config.name))
            if again is None:
                log.warning("question.given_up", deliveries=flight.delivery.deliveries)
                return None
            flight.delivery = again

    async def _settle_stopped(self, flight: _InFlight) -> None:
        """A generation that ended early: withdrawn (drop it), taken over or shutting down (leave it)."""
        if flight.cancelled.is_set():
            await self._retrying(lambda: self.queue.drop(flight.delivery))
            log.info("question.dropped", reason="cancelled")
        elif flight.lost.is_set():
            log.info("question.released", reason="claimed_elsewhere")
        else:
            log.info("question.left_pending", reason="shutdown")

    async def _generate(self, batch: Backend, flight: _InFlight) -> GenerationResult | str:
        """Submit the question to the model thread and wait; a refusal is returned as its reason."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def deliver(outcome: Outcome) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future, outcome)

        question = flight.delivery.message
        prompt, flight.history_turns = await self._prompt(batch, question)
        request = Request(
            prompt,
            max_tokens=self.config.max_answer_tokens,
            temperature=self.config.temperature,
            should_stop=flight.should_stop,
            reuse_prefix=self.config.prefix_reuse,
            on_text=flight.early.on_text if flight.early is not None else None,
        )
        if flight.early is not None:
            flight.early.restart()
        if self.engine_failed:
            raise EngineGoneError("the model thread ended")
        solo = flight.failed or flight.delivery.deliveries > 1  # suspect: no batch-mates to take along
        async with self._gate.enter(solo=solo):
            if self.engine_failed:
                raise EngineGoneError("the model thread ended")
            self._futures.add(future)
            try:
                batch.submit(request, deliver)
                outcome = await future
            finally:
                self._futures.discard(future)
        if isinstance(outcome, PromptTooLongError):
            log.warning("generation.refused", error=type(outcome).__name__)
            return TOO_LONG_TEXT
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _prompt(self, batch: Backend, question: QuestionMessage) -> tuple[str, int]:
        """The question's prompt with its earlier turns, and how many of them it holds.

        Turns are dropped from the oldest while the prompt and the answer budget overflow the
        backend's context (the embedded engine's N_CTX, or the server's per-request context).
        """
        return await fit_prompt(
            question.text, question.language, question.history, batch.count_tokens,
            batch.n_ctx - self.config.max_answer_tokens, question.passages,
        )  # fmt: skip

    async def _publish(
        self,
        delivery: Delivery[QuestionMessage],
        result: GenerationResult | str,
        taken_at: float,
        part_ends: list[int] | None = None,
    ) -> None:
        """Write the answer and ack, retrying while Redis is away (the answer waits in memory)."""
        answer = self._answer(delivery.message, result, taken_at, part_ends or [])
        flight = self._flight.get(delivery.entry_id)
        if flight is not None:
            answer = answer.model_copy(update={"history_turns": flight.history_turns})
        try:
            published = await self.queue.finish(delivery, answer)
        except UNAVAILABLE as exc:
            self.redis.failed(exc)
            log.info("answer.held", reason="redis_unavailable")  # kept here until Redis is back
            published = await self._retrying(lambda: self.queue.finish(delivery, answer))
        if not published:
            log.info("answer.skipped", reason="already_answered")
            return
        self.answered += 1
        _observe(answer)
        log.info(
            "answer.published",
            status=answer.status,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            seconds=round(answer.finished_at - taken_at, 3),
            published_after_s=round(time.time() - answer.finished_at, 3),
        )

    def _answer(
        self, q: QuestionMessage, result: GenerationResult | str, taken_at: float, part_ends: list[int]
    ) -> AnswerMessage:
        """The answer message for a result (or a refusal); ``part_ends``: its paragraphs sent early."""
        common = self._common(q, taken_at)
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
            part_ends=part_ends,
            sources=tuple(Source(**p.model_dump(exclude={"text"})) for p in q.passages),
        )

    def _common(self, q: QuestionMessage, taken_at: float) -> dict[str, Any]:
        """The fields every answer message of ``q`` carries (early paragraphs and the final answer)."""
        return {
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
            "library_version": q.library_version,
            "conversation_id": q.conversation_id,
            "turn": q.turn,
        }


def _observe(answer: AnswerMessage) -> None:
    """The published answer's times and tokens in the worker's metrics."""
    metrics.ANSWERS.labels(answer.status).inc()
    if answer.taken_at and answer.enqueued_at:
        metrics.QUEUE_WAIT_SECONDS.observe(max(0.0, answer.taken_at - answer.enqueued_at))
    if answer.status != "ok" or not answer.taken_at:
        return
    if answer.first_token_at:
        metrics.FIRST_TOKEN_SECONDS.observe(max(0.0, answer.first_token_at - answer.taken_at))
    metrics.GENERATION_SECONDS.observe(max(0.0, answer.finished_at - answer.taken_at))
    metrics.TOKENS.labels("prompt").inc(answer.prompt_tokens)
    metrics.TOKENS.labels("completion").inc(answer.completion_tokens)


def _resolve(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    """Set a question's outcome (on the event loop), unless it was already settled."""
    if not future.done():
        future.set_result(outcome)
