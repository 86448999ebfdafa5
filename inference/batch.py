"""The batched engine's front door: many requests at once on one llama.cpp context, with prefix reuse.

:class:`BatchEngine` loads the model (or leases an :class:`~inference.engine.Engine`'s), creates the
context (:mod:`inference.batch_context`), evaluates the instruction prefix once, queues requests and
steps the :class:`~inference.batch_schedule.Scheduler`, which moves each request
(:mod:`inference.batch_sequence`) from waiting through prefilling and generating to done.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.batch_context import BatchContext, free_model, kv_bytes_per_cell, load_model
from inference.batch_pool import KvPool, PoolStats
from inference.batch_schedule import PREFIX_SEQ, BatchStats, Scheduler
from inference.batch_sequence import Callback, Job, Outcome, Request, State
from inference.engine import (
    Engine,
    GenerationResult,
    ModelLease,
    default_threads,
    route_llama_logs,
)
from inference.errors import InferenceError, PromptTooLongError
from inference.modelfile import validate_gguf

__all__ = ["PREFIX_SEQ", "BatchEngine", "BatchStats", "Callback", "Job", "Outcome", "Request", "State"]


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
        pool_slots: int = 0,
        pool_bytes: int = 0,
        _lease: ModelLease | None = None,
    ) -> None:
        """Load ``model_path`` (or use an already loaded model) and create the batched context.

        With ``reserve_answer`` a request is admitted only when the KV cells of its prompt tail and
        of its whole answer budget are free; without it, when its prompt tail fits (more requests
        at once; one that then finds the cache full is preempted and answered later).

        With ``pool_slots`` and ``pool_bytes``, finished requests keep their KV cells in up to
        ``pool_slots`` idle sequences of at most ``pool_bytes`` together (the conversation pool,
        :mod:`inference.batch_pool`), so a follow-up evaluates only its new tokens.
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
            llama = BatchContext(
                self._model,
                self.model_path,
                n_ctx=n_ctx,
                n_threads=n_threads or default_threads(),
                n_batch=n_batch,
                max_sequences=max_sequences,
                idle_sequences=pool_slots if pool_bytes > 0 else 0,
            )
        except InferenceError:
            self._free_model()
            raise
        self._llama: BatchContext | None = llama
        self._n_ctx = llama.n_ctx
        self._step_lock = threading.Lock()
        self.bytes_per_cell = kv_bytes_per_cell(self._model)
        pool = None
        if pool_slots > 0 and pool_bytes > 0:
            pool = KvPool(max_sequences + 1, pool_slots, pool_bytes, self.bytes_per_cell)
        self._pool = pool
        self._scheduler = Scheduler(
            llama, n_batch=n_batch, max_sequences=max_sequences, reserve_answer=reserve_answer, pool=pool
        )
        self.stats: BatchStats = self._scheduler.stats
        self.prefix_source = ""
        """How the prefix got into the cache: "evaluated", "evaluated, saved" or "loaded"."""

    @classmethod
    def sharing(
        cls,
        engine: Engine,
        *,
        max_sequences: int = 4,
        n_batch: int = 512,
        reserve_answer: bool = True,
        pool_slots: int = 0,
        pool_bytes: int = 0,
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
                pool_slots=pool_slots,
                pool_bytes=pool_bytes,
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
        return len(self._scheduler.prefix)

    @property
    def active(self) -> int:
        """Requests holding a sequence now (prefilling or generating)."""
        return len(self._scheduler.active)

    @property
    def reserved_cells(self) -> int:
        """KV cells promised to active requests.

        With ``reserve_answer``: prompt tail + token budget each; else the cells each holds or will
        hold for its prompt tail and the tokens it generated so far.
        """
        return self._scheduler.reserved_cells

    @property
    def pool_bytes(self) -> int:
        """Bytes of KV the conversation pool holds now (0 without a pool)."""
        return self._pool.bytes if self._pool is not None else 0

    @property
    def pool_budget_bytes(self) -> int:
        """The conversation pool's budget (0 without a pool)."""
        return self._pool.budget_bytes if self._pool is not None else 0

    @property
    def pool_stats(self) -> PoolStats:
        """The pool's hits, tokens saved, entries kept and evicted (all 0 without a pool)."""
        return self._pool.stats if self._pool is not None else PoolStats()

    def clear_pool(self) -> None:
        """Forget every conversation kept in the pool (blocking; the bench compares with and without)."""
        with self._step_lock:
            self._scheduler.clear_pool()

    def pool_sequences(self) -> list[int]:
        """The idle sequence ids holding pool entries, oldest first."""
        return list(self._pool.entries) if self._pool is not None else []

    def state_bytes(self, seq_id: int) -> int:
        """Bytes llama.cpp would save for sequence ``seq_id`` (its cells, shared ones included)."""
        return self._live().state_bytes(seq_id)

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

    async def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a prompt, by the model's own tokenizer (what history trimming counts)."""
        return len(self.tokenize(text))

    # -- prefix ----------------------------------------------------------------------------------

    def set_prefix(self, text: str, state: Path | None = None) -> int:
        """Evaluate ``text`` once into the prefix sequence; return its token count (blocking).

        With ``state`` (see :mod:`inference.prefix_state`) the KV state saved there is loaded
        instead when it holds exactly these tokens; otherwise ``text`` is evaluated and saved there.
        :attr:`prefix_source` then says which happened.
        """
        tokens = self.tokenize(text)
        if len(tokens) >= self.n_ctx // 2:
            raise PromptTooLongError(len(tokens), self.n_ctx // 2)
        with self._step_lock:
            if state is not None and state.is_file() and self._scheduler.restore_prefix(state, tokens):
                self.prefix_source = "loaded"
                return len(tokens)
            self._scheduler.set_prefix(tokens)
            self.prefix_source = "evaluated"
            if state is not None:
                self._save_prefix(state, tokens)
        return len(tokens)

    def _save_prefix(self, state: Path, tokens: list[int]) -> None:
        """Write the prefix sequence to ``state`` (a temporary file renamed, so never half a file)."""
        state.parent.mkdir(parents=True, exist_ok=True)
        partial = state.with_name(f"{state.name}.{os.getpid()}.tmp")
        if self._live().save_sequence(PREFIX_SEQ, partial, tokens):
            partial.replace(state)
            self.prefix_source = "evaluated, saved"
        else:
            partial.unlink(missing_ok=True)

    # -- requests --------------------------------------------------------------------------------

    def submit(self, request: Request, on_done: Callback) -> Job:
        """Queue ``request``; ``on_done`` gets its result (or error) from the stepping thread.

        The returned job shows the request's :class:`State` as the engine moves it along.
        """
        if request.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        job = Job(request, on_done)
        self._scheduler.submit(job)
        return job

    def busy(self) -> bool:
        """Whether any request waits or runs."""
        return self._scheduler.busy()

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
        cond = self._scheduler.cond
        while True:
            with cond:
                while not self.busy() and not halt.is_set():
                    cond.wait()
                if not self.busy():
                    return
            self.step()

    def wake(self) -> None:
        """Wake :meth:`serve` (after setting its halt event)."""
        with self._scheduler.cond:
            self._scheduler.cond.notify_all()

    def step(self) -> None:
        """Admit waiting requests, then decode one batch (a token per generating request, prompt chunks)."""
        with self._step_lock:
            self._live()
            self._scheduler.step()

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the context, then the model this engine loaded (or release its lease on a shared one)."""
        with self._step_lock:
            if self._llama is None:
                return
            self._scheduler.end_all("the engine was closed")
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
