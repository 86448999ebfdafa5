"""The batched engine: many requests at once on one llama.cpp context (admission, batches, recovery).

One context (:class:`~inference.batch_context.BatchContext`) holds a unified KV cache shared by up
to ``max_sequences`` requests. Sequence 0 holds the fixed instruction prefix, evaluated once; a new
request gets the prefix by sharing its cells (no copy, no extra memory), so only its own tokens are
evaluated. Each request is a :class:`~inference.batch_sequence.Job` whose state (waiting,
prefilling, generating, done) the scheduling reads; each has its own sampler, stop strings, token
budget and cancel callback.

Each :meth:`BatchEngine.step` admits waiting requests in order while a sequence id and their KV
cells are free, then fills one batch of at most ``n_batch`` tokens: one token for each generating
request, then prompt tokens of prefilling ones, shortest tail first; a tail longer than the room
left is split over as many steps as it needs.

The recovery follows llama.cpp's own server (``update_slots`` in ``tools/server``): a batch with
entries is always decoded; when ``llama_decode`` finds no free KV cell (status 1) the batch is
decoded again in halves, down to one token; when even one token does not fit, the newest request is
preempted (its cells freed, it waits again at the head of the queue, admission held until a request
finishes) so the older ones go on, and a request alone that cannot grow is failed with
:class:`~inference.errors.ContextFullError`. Any other failure fails every request that still had
tokens in the batch with :class:`~inference.errors.DecodeError`, and removes their KV cells, so none
is left with positions whose KV was never written; the engine keeps serving.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.batch_context import (
    BatchContext,
    Entry,
    free_model,
    free_sampler,
    load_model,
    make_sampler,
)
from inference.batch_sequence import Callback, Job, Outcome, Request, State
from inference.engine import (
    Engine,
    GenerationResult,
    ModelLease,
    StopReason,
    default_threads,
    route_llama_logs,
)
from inference.errors import ContextFullError, DecodeError, InferenceError, PromptTooLongError
from inference.modelfile import validate_gguf

__all__ = ["PREFIX_SEQ", "BatchEngine", "BatchStats", "Callback", "Job", "Outcome", "Request", "State"]

PREFIX_SEQ = 0
"""The sequence id that keeps the instruction prefix."""


@dataclass
class BatchStats:
    """Counters: successful decode calls, tokens they fed, seconds inside ``llama_decode``, recoveries."""

    decodes: int = 0
    tokens: int = 0
    decode_s: float = 0.0
    prefix_tokens_saved: int = 0
    retries: int = 0
    """Decodes that found no KV room (status 1) and were tried again with a smaller batch."""
    preemptions: int = 0
    """Requests put back in the queue to make KV room for the others."""
    failures: int = 0
    """Decodes that failed for good (their requests were failed)."""


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class BatchEngine:
    """Answers many requests at once on one context; ``step`` must run on one thread at a time."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        use_mmap: bool = True,
        max_sequences: int = 4,
        reserve_answer: bool = True,
        _lease: ModelLease | None = None,
    ) -> None:
        """Load ``model_path`` (or use an already loaded model) and create the batched context.

        With ``reserve_answer`` a request is admitted only when the KV cells of its prompt tail and
        of its whole answer budget are free; without it, when its prompt tail fits (more requests
        at once; one that then finds the cache full is preempted and answered later).
        """
        route_llama_logs()
        self.model_path = Path(model_path)
        self.max_sequences = max_sequences
        self.n_batch = n_batch
        self.reserve_answer = reserve_answer
        self._lease = _lease
        if _lease is None:
            validate_gguf(self.model_path)
        self._model: Any = load_model(self.model_path, use_mmap) if _lease is None else _lease.model
        try:
            self._llama: BatchContext | None = BatchContext(
                self._model,
                self.model_path,
                n_ctx=n_ctx,
                n_threads=n_threads or default_threads(),
                n_batch=n_batch,
                max_sequences=max_sequences,
            )
        except InferenceError:
            self._free_model()
            raise
        self._n_ctx = self._llama.n_ctx
        self._step_lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._active: dict[int, Job] = {}
        self._free_ids = list(range(self.max_sequences, 0, -1))
        self._admitted = 0
        self._held = False  # no admission after a preemption until a request finishes
        self._prefix: list[int] = []
        self.stats = BatchStats()

    @classmethod
    def sharing(
        cls, engine: Engine, *, max_sequences: int = 4, n_batch: int = 512, reserve_answer: bool = True
    ) -> BatchEngine:
        """A batched context on the model ``engine`` already loaded (no second copy of the weights).

        The batched engine holds a lease on the model (see :meth:`Engine.lease_model`), so closing
        ``engine`` first, even while this context is being created, leaves the weights in memory
        until this one is closed too. InferenceError if ``engine`` is closed.
        """
        lease = engine.lease_model()
        try:
            return cls(
                engine.model_path,
                n_ctx=engine.n_ctx,
                n_threads=engine.n_threads,
                n_batch=n_batch,
                max_sequences=max_sequences,
                reserve_answer=reserve_answer,
                _lease=lease,
            )
        except BaseException:
            lease.release()
            raise

    # -- properties ------------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """KV cells of the context, shared by the prefix and every active request."""
        return self._n_ctx

    @property
    def context(self) -> Any:
        """The llama_context pointer (for measurements such as the bare decode loop)."""
        return self._live().ctx

    @property
    def prefix_tokens(self) -> int:
        """Tokens of the evaluated instruction prefix (0 when none is set)."""
        return len(self._prefix)

    @property
    def active(self) -> int:
        """Requests holding a sequence now (prefilling or generating)."""
        return len(self._active)

    @property
    def reserved_cells(self) -> int:
        """KV cells promised to active requests.

        With ``reserve_answer``: prompt tail + token budget each; else the cells each holds or will
        hold for its prompt tail and the tokens it generated so far.
        """
        if self.reserve_answer:
            return sum(job.reserved for job in self._active.values())
        return sum(job.reserved + len(job.generated) for job in self._active.values())

    def sequence_cells(self, seq_id: int) -> int:
        """KV cells sequence ``seq_id`` occupies now (its positions; 0 when it holds none)."""
        return self._live().cells(seq_id)

    def _live(self) -> BatchContext:
        """The context; raises once the engine is closed."""
        if self._llama is None:
            raise InferenceError(f"{self.model_path}: batch engine is closed")
        return self._llama

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` as a prompt: ``<bos>`` first, control tokens parsed."""
        return self._live().tokenize(text)

    # -- prefix ----------------------------------------------------------------------------------

    def set_prefix(self, text: str) -> int:
        """Evaluate ``text`` once into the prefix sequence; return its token count (blocking)."""
        llama = self._live()
        tokens = llama.tokenize(text)
        if len(tokens) >= llama.n_ctx // 2:
            raise PromptTooLongError(len(tokens), llama.n_ctx // 2)
        with self._step_lock:
            llama.forget(PREFIX_SEQ)
            self._prefix = []
            for start in range(0, len(tokens), self.n_batch):
                chunk = tokens[start : start + self.n_batch]
                entries = [(PREFIX_SEQ, token, start + i, False) for i, token in enumerate(chunk)]
                status = self._decode(entries)
                if status != 0:
                    llama.forget(PREFIX_SEQ)
                    raise DecodeError(status)
            self._prefix = tokens
        return len(tokens)

    # -- requests --------------------------------------------------------------------------------

    def submit(self, request: Request, on_done: Callback) -> Job:
        """Queue ``request``; ``on_done`` gets its result (or error) from the stepping thread.

        The returned job shows the request's :class:`State` as the engine moves it along.
        """
        if request.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        job = Job(request, on_done)
        with self._cond:
            self._waiting.append(job)
            self._cond.notify_all()
        return job

    def busy(self) -> bool:
        """Whether any request waits or runs."""
        return bool(self._waiting or self._active)

    def generate_many(self, requests: Sequence[Request]) -> list[GenerationResult]:
        """Run ``requests`` together to the end (blocking); raise the first error any of them got."""
        outcomes: dict[int, Outcome] = {}
        for index, request in enumerate(requests):
            self.submit(request, functools.partial(outcomes.__setitem__, index))
        self.run_until_idle()
        results = []
        for index in range(len(requests)):
            outcome = outcomes[index]
            if isinstance(outcome, InferenceError):
                raise outcome
            results.append(outcome)
        return results

    def generate(self, prompt: str, **options: Any) -> GenerationResult:
        """One request alone (see :class:`Request` for the options)."""
        return self.generate_many([Request(prompt, **options)])[0]

    def run_until_idle(self) -> None:
        """Step until no request waits or runs (blocking)."""
        while self.busy():
            self.step()

    def serve(self, halt: threading.Event) -> None:
        """Step whenever there is work; return once ``halt`` is set and nothing runs (blocking)."""
        while True:
            with self._cond:
                while not self.busy() and not halt.is_set():
                    self._cond.wait()
                if not self.busy():
                    return
            self.step()

    def wake(self) -> None:
        """Wake :meth:`serve` (after setting its halt event)."""
        with self._cond:
            self._cond.notify_all()

    # -- scheduling ------------------------------------------------------------------------------

    def step(self) -> None:
        """Admit waiting requests, then decode one batch (a token per generating request, prompt chunks)."""
        with self._step_lock:
            self._live()
            self._admit()
            self._drop_cancelled_prefills()
            entries = self._plan()
            if entries:
                self._run(entries)

    def _admit(self) -> None:
        """Start waiting requests while a sequence id and their KV cells are free (in order)."""
        while self._free_ids and not self._held:
            with self._cond:
                if not self._waiting:
                    return
                job = self._waiting[0]
                if not self._try_start(job):
                    return
                self._waiting.popleft()

    def _try_start(self, job: Job) -> bool:
        """Admit ``job`` or end it (refused, cancelled): True; False when it must wait for room."""
        job.started_at = time.time()
        if job.tokens is None:
            job.tokens = self.tokenize(job.request.prompt)
        tokens, request = job.tokens, job.request
        shared = min(_common_prefix(tokens, self._prefix), len(tokens) - 1) if request.reuse_prefix else 0
        need = len(tokens) - shared + request.max_tokens
        room = self.n_ctx - len(self._prefix)  # cells a request may use when it runs alone
        if need > room:
            self._end(job, PromptTooLongError(len(tokens), room + shared - request.max_tokens))
            return True
        if job.cancelled():
            self._end(job, "cancelled")
            return True
        reserve = need if self.reserve_answer else len(tokens) - shared + 1
        if self.reserved_cells + reserve > room:
            return False
        self._begin(job, shared, reserve)
        return True

    def _begin(self, job: Job, shared: int, reserve: int) -> None:
        """WAITING -> PREFILLING: a sequence id, the prefix cells it shares, a sampler."""
        llama = self._live()
        assert job.tokens is not None
        job.move(State.PREFILLING)
        job.seq_id = self._free_ids.pop()
        llama.forget(job.seq_id)
        if shared:
            llama.share(PREFIX_SEQ, job.seq_id, shared)
            self.stats.prefix_tokens_saved += shared
        job.sampler = make_sampler(job.request.temperature, job.request.seed)
        self._admitted += 1
        job.admitted, job.reserved = self._admitted, reserve
        job.pos, job.pending = shared, job.tokens[shared:]
        self._active[job.seq_id] = job

    def _drop_cancelled_prefills(self) -> None:
        """Cancel prefilling requests whose callback says so (generating ones check after each token)."""
        for job in list(self._active.values()):
            if job.state is State.PREFILLING and job.cancelled():
                self._finish(job, "cancelled")

    def _plan(self) -> list[Entry]:
        """The next batch: one token per generating request, then prompt chunks, at most n_batch.

        Shorter prompt tails go first, so a short question is not held up behind a long one. A
        request's positions advance by what it got; its last prompt token (or its generated token)
        asks for logits. A prompt tail that does not fit goes on at the next step.
        """
        generating = [job for job in self._active.values() if job.state is State.GENERATING]
        prefilling = [job for job in self._active.values() if job.state is State.PREFILLING and job.pending]
        entries: list[Entry] = []
        for job in generating + sorted(prefilling, key=lambda job: len(job.pending)):
            room = self.n_batch - len(entries)
            if room <= 0:
                break
            take = job.pending[:room]
            last = len(take) == len(job.pending)
            entries.extend(
                (job.seq_id, token, job.pos + i, last and i == len(take) - 1) for i, token in enumerate(take)
            )
            job.pos += len(take)
            job.pending = job.pending[len(take) :]
        return entries

    def _run(self, entries: list[Entry]) -> None:
        """Decode ``entries``, halving the batch while the KV cache has no room; recover from failures."""
        size = self.n_batch
        while entries:
            view = entries[:size]
            status = self._decode(view)
            if status == 0:
                self._sample(view)
                entries = self._alive(entries[len(view) :])
                size = self.n_batch
            elif status == 1 and len(view) > 1:
                self.stats.retries += 1
                size = len(view) // 2
            else:
                entries = self._recover(entries, status)
                size = self.n_batch

    def _alive(self, entries: list[Entry]) -> list[Entry]:
        """The entries of requests still holding their sequence."""
        return [entry for entry in entries if entry[0] in self._active]

    def _recover(self, entries: list[Entry], status: int) -> list[Entry]:
        """After ``entries`` failed to decode: make KV room by preempting, or fail their requests.

        Returns the entries still to decode. Every failed request loses its KV cells, so none keeps
        positions whose KV was never written.
        """
        if status == 1 and len(self._active) > 1:
            self._preempt(max(self._active.values(), key=lambda job: job.admitted))
            return self._alive(entries)
        self.stats.failures += 1
        error: InferenceError = ContextFullError() if status == 1 else DecodeError(status)
        for seq_id in dict.fromkeys(entry[0] for entry in entries):
            if seq_id in self._active:
                self._finish(self._active[seq_id], error)
        return []

    def _preempt(self, job: Job) -> None:
        """PREFILLING/GENERATING -> WAITING, first in the queue; admit nothing until a request finishes."""
        self._release(job)
        job.move(State.WAITING)
        with self._cond:
            self._waiting.appendleft(job)
        self._held = True
        self.stats.preemptions += 1

    def _decode(self, entries: Sequence[Entry]) -> int:
        """One llama_decode of ``entries``, counted; its status (0 done, 1 no KV room, else failed)."""
        status, seconds = self._live().decode(entries)
        self.stats.decode_s += seconds
        if status == 0:
            self.stats.decodes += 1
            self.stats.tokens += len(entries)
        return status

    def _sample(self, view: list[Entry]) -> None:
        """Sample the next token of each request whose logits ``view`` produced; finish the done ones."""
        llama = self._live()
        now = time.time()
        outputs = [(index, entry[0]) for index, entry in enumerate(view) if entry[3]]
        for index, seq_id in outputs:
            job = self._active[seq_id]
            token = llama.sample(job.sampler, index)
            if job.state is State.PREFILLING:  # its prompt is in: PREFILLING -> GENERATING
                job.move(State.GENERATING)
                job.first_token_at = now
            reason = "stop" if llama.is_end(token) else job.add_token(token, llama.piece(token))
            if reason is not None:
                self._finish(job, reason)

    def _release(self, job: Job) -> None:
        """Free the request's KV cells, sampler and sequence id."""
        self._live().forget(job.seq_id)
        free_sampler(job.sampler)
        del self._active[job.seq_id]
        self._free_ids.append(job.seq_id)

    def _finish(self, job: Job, outcome: StopReason | InferenceError) -> None:
        """PREFILLING/GENERATING -> DONE: free the sequence (admission may go on), report the outcome."""
        self._release(job)
        self._held = False
        self._end(job, outcome)

    @staticmethod
    def _end(job: Job, outcome: StopReason | InferenceError) -> None:
        """Move ``job`` to DONE and report ``outcome`` (a stop reason or an error)."""
        job.move(State.DONE)
        job.on_done(outcome if isinstance(outcome, InferenceError) else job.result(outcome))

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the context, then the model this engine loaded (or release its lease on a shared one)."""
        with self._step_lock:
            if self._llama is None:
                return
            for job in list(self._active.values()):
                self._finish(job, InferenceError("the engine was closed"))
            with self._cond:
                waiting, self._waiting = list(self._waiting), deque()
            for job in waiting:
                self._end(job, InferenceError("the engine was closed"))
            self._llama.free()
            self._llama = None
            self._free_model()

    def _free_model(self) -> None:
        """Free the model this engine loaded, or give a shared one back (after its context is freed)."""
        if self._lease is not None:
            self._lease.release()
        elif self._model is not None:
            free_model(self._model)
        self._model = None

    def __enter__(self) -> BatchEngine:
        """Use as a context manager that closes the engine."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the engine."""
        self.close()
