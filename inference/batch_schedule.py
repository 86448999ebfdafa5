"""Which requests run on the batched context and what each step decodes (admission to outcome).

Each :meth:`Scheduler.step` admits waiting requests in order while a sequence id and their KV cells
are free, then fills one batch of at most ``n_batch`` tokens: one token for each generating request,
then prompt tokens of prefilling ones, shortest tail first; a tail longer than the room left is
split over as many steps as it needs. Sequence 0 holds the instruction prefix; an admitted request
shares its cells (no copy), so only its own tokens are evaluated.

The recovery follows llama.cpp's own server (``update_slots`` in ``tools/server``): a batch with
entries is always decoded; when ``llama_decode`` finds no free KV cell (status 1) the batch is
decoded again in halves, down to one token; when even one token does not fit, the newest request is
preempted (its cells freed, it waits again at the head of the queue, admission held until a request
finishes) so the older ones go on, and a request alone that cannot grow is failed with
:class:`~inference.errors.ContextFullError`. Any other failure fails every request that still had
tokens in the batch with :class:`~inference.errors.DecodeError`, and removes their KV cells, so none
is left with positions whose KV was never written.

With a conversation pool (:mod:`inference.batch_pool`), a request that finishes leaves its KV
cells to an idle pool sequence, and admission starts a request from the pool entry sharing the
longest start with its prompt when that is longer than the instruction prefix. Idle cells count
against the context's room: entries are evicted (oldest first) before a request waits for room,
and before a batch that finds no KV cell is split or a request preempted.

Every state change of a request happens here, through :meth:`Job.move
<inference.batch_sequence.Job.move>`: :meth:`_begin` (waiting -> prefilling), :meth:`_sample`
(prefilling -> generating), :meth:`_preempt` (-> waiting) and :meth:`_end` (-> done).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inference.batch_context import BatchContext, Entry, free_sampler, make_sampler
from inference.batch_pool import KvPool, PoolEntry, common_prefix
from inference.batch_sequence import Job, State
from inference.engine import StopReason
from inference.errors import ContextFullError, DecodeError, InferenceError, PromptTooLongError

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


class Scheduler:
    """The waiting queue and the active requests of one context; the caller serialises the steps."""

    def __init__(
        self,
        llama: BatchContext,
        *,
        n_batch: int,
        max_sequences: int,
        reserve_answer: bool,
        pool: KvPool | None = None,
    ) -> None:
        self.llama = llama
        self.pool = pool
        self.n_batch = n_batch
        self.reserve_answer = reserve_answer
        self.cond = threading.Condition()
        """Guards the waiting queue; notified when a request is queued."""
        self.stats = BatchStats()
        self.prefix: list[int] = []
        self.waiting: deque[Job] = deque()
        self.active: dict[int, Job] = {}
        """Requests holding a sequence (prefilling or generating), by sequence id."""
        self._free_ids = list(range(max_sequences, 0, -1))
        self._admitted = 0
        self._held = False  # no admission after a preemption until a request finishes

    @property
    def reserved_cells(self) -> int:
        """KV cells promised to active requests (see ``BatchEngine.reserved_cells``)."""
        if self.reserve_answer:
            return sum(job.reserved for job in self.active.values())
        return sum(job.reserved + len(job.generated) for job in self.active.values())

    def submit(self, job: Job) -> None:
        """Queue a waiting ``job`` at the end."""
        with self.cond:
            self.waiting.append(job)
            self.cond.notify_all()

    def busy(self) -> bool:
        """Whether any request waits or runs."""
        return bool(self.waiting or self.active)

    # -- the prefix ------------------------------------------------------------------------------

    def set_prefix(self, tokens: list[int]) -> None:
        """Evaluate ``tokens`` into the prefix sequence (nothing may be active); DecodeError on failure."""
        self.llama.forget(PREFIX_SEQ)
        self.prefix = []
        self.clear_pool()  # its entries start with the old prefix
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            status = self._decode([(PREFIX_SEQ, token, start + i, False) for i, token in enumerate(chunk)])
            if status != 0:
                self.llama.forget(PREFIX_SEQ)
                raise DecodeError(status)
        self.prefix = tokens

    def restore_prefix(self, path: Path, tokens: list[int]) -> bool:
        """Load the prefix sequence from ``path`` if it holds exactly ``tokens`` (nothing may be active)."""
        self.llama.forget(PREFIX_SEQ)
        self.prefix = []
        self.clear_pool()  # its entries start with the old prefix
        loaded = self.llama.load_sequence(PREFIX_SEQ, path, len(tokens) + 1)
        if loaded != tokens:
            self.llama.forget(PREFIX_SEQ)
            return False
        self.prefix = tokens
        return True

    def clear_pool(self) -> None:
        """Evict every idle pool entry."""
        while self.pool is not None and (entry := self.pool.oldest()) is not None:
            self._evict(entry)

    # -- one step --------------------------------------------------------------------------------

    def step(self) -> None:
        """Admit waiting requests, then decode one batch (a token per generating request, prompt chunks)."""
        self._admit()
        self._drop_cancelled_prefills()
        entries = self._plan()
        if entries:
            self._run(entries)

    def _admit(self) -> None:
        """Start waiting requests while a sequence id and their KV cells are free (in order)."""
        while self._free_ids and not self._held:
            with self.cond:
                if not self.waiting:
                    return
                job = self.waiting[0]
                if not self._try_start(job):
                    return
                self.waiting.popleft()

    def _try_start(self, job: Job) -> bool:
        """Admit ``job`` or end it (refused, cancelled): True; False when it must wait for room."""
        job.started_at = time.time()
        if job.tokens is None:
            job.tokens = self.llama.tokenize(job.request.prompt)
        tokens, request = job.tokens, job.request
        limit = len(tokens) - 1  # the last prompt token is always evaluated (its logits)
        prefix_cells = min(common_prefix(tokens, self.prefix), limit) if request.reuse_prefix else 0
        entry, shared = self.pool.best(tokens) if self.pool and request.reuse_prefix else (None, 0)
        shared = min(shared, limit)
        if entry is None or not entry.worth_taking(shared):
            entry, shared = None, prefix_cells
        else:
            prefix_cells = min(prefix_cells, entry.prefix_cells)
        need = len(tokens) - prefix_cells + request.max_tokens  # the cells it will own at most
        room = self.llama.n_ctx - len(self.prefix)  # cells a request may use when it runs alone
        if need > room:
            self._end(job, PromptTooLongError(len(tokens), room + prefix_cells - request.max_tokens))
            return True
        if job.cancelled():
            self._end(job, "cancelled")
            return True
        reserve = need if self.reserve_answer else len(tokens) - prefix_cells + 1
        if not self._make_room(reserve, room, entry):
            return False
        self._begin(job, tokens, shared, reserve, entry, prefix_cells)
        return True

    def _make_room(self, reserve: int, room: int, keep: PoolEntry | None) -> bool:
        """Evict idle pool entries (not ``keep``) until ``reserve`` more cells fit; whether they do."""
        while True:
            idle = 0 if self.pool is None else self.pool.cells - (keep.own_cells if keep else 0)
            if self.reserved_cells + reserve + idle <= room:
                return True
            victim = self.pool.oldest(keep) if self.pool is not None else None
            if victim is None:
                return False
            self._evict(victim)

    def _begin(
        self,
        job: Job,
        tokens: list[int],
        shared: int,
        reserve: int,
        entry: PoolEntry | None,
        prefix_cells: int,
    ) -> None:
        """WAITING -> PREFILLING: a sequence id, the cells it shares (prefix or pool entry), a sampler."""
        job.move(State.PREFILLING)
        job.seq_id = self._free_ids.pop()
        self.llama.forget(job.seq_id)
        if entry is not None and self.pool is not None:  # the entry's cells become the request's
            self.llama.share(entry.seq_id, job.seq_id, shared)
            self.llama.forget(entry.seq_id)
            self.pool.take(entry)
            self.pool.stats.hits += 1
            self.pool.stats.tokens_saved += shared - prefix_cells
        elif shared:
            self.llama.share(PREFIX_SEQ, job.seq_id, shared)
        self.stats.prefix_tokens_saved += prefix_cells
        job.prefix_cells = prefix_cells
        job.sampler = make_sampler(job.request.temperature, job.request.seed)
        self._admitted += 1
        job.admitted, job.reserved = self._admitted, reserve
        job.pos, job.pending = shared, tokens[shared:]
        self.active[job.seq_id] = job

    def _drop_cancelled_prefills(self) -> None:
        """Cancel prefilling requests whose callback says so (generating ones check after each token)."""
        for job in list(self.active.values()):
            if job.state is State.PREFILLING and job.cancelled():
                self._finish(job, "cancelled")

    def _plan(self) -> list[Entry]:
        """The next batch: one token per generating request, then prompt chunks, at most n_batch.

        Shorter prompt tails go first, so a short question is not held up behind a long one. A
        request's positions advance by what it got; its last prompt token (or its generated token)
        asks for logits. A prompt tail that does not fit goes on at the next step.
        """
        generating = [job for job in self.active.values() if job.state is State.GENERATING]
        prefilling = [job for job in self.active.values() if job.state is State.PREFILLING]
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
            elif status == 1 and self.pool is not None and (idle := self.pool.oldest()) is not None:
                self._evict(idle)  # idle conversation cells go before any request is held up
            elif status == 1 and len(view) > 1:
                self.stats.retries += 1
                size = len(view) // 2
            else:
                entries = self._recover(entries, status)
                size = self.n_batch

    def _alive(self, entries: list[Entry]) -> list[Entry]:
        """The entries of requests still holding their sequence."""
        return [entry for entry in entries if entry[0] in self.active]

    def _recover(self, entries: list[Entry], status: int) -> list[Entry]:
        """After ``entries`` failed to decode: make KV room by preempting, or fail their requests.

        Returns the entries still to decode. Every failed request loses its KV cells, so none keeps
        positions whose KV was never written.
        """
        if status == 1 and len(self.active) > 1:
            self._preempt(max(self.active.values(), key=lambda job: job.admitted))
            return self._alive(entries)
        self.stats.failures += 1
        error: InferenceError = ContextFullError() if status == 1 else DecodeError(status)
        for seq_id in dict.fromkeys(entry[0] for entry in entries):
            if seq_id in self.active:
                self._finish(self.active[seq_id], error)
        return []

    def _preempt(self, job: Job) -> None:
        """PREFILLING/GENERATING -> WAITING, first in the queue; admit nothing until a request finishes."""
        self._release(job)
        job.move(State.WAITING)
        with self.cond:
            self.waiting.appendleft(job)
        self._held = True
        self.stats.preemptions += 1

    def _decode(self, entries: Sequence[Entry]) -> int:
        """One llama_decode of ``entries``, counted; its status (0 done, 1 no KV room, else failed)."""
        status, seconds = self.llama.decode(entries)
        self.stats.decode_s += seconds
        if status == 0:
            self.stats.decodes += 1
            self.stats.tokens += len(entries)
        return status

    def _sample(self, view: list[Entry]) -> None:
        """Sample the next token of each request whose logits ``view`` produced; finish the done ones."""
        now = time.time()
        outputs = [(index, entry[0]) for index, entry in enumerate(view) if entry[3]]
        for index, seq_id in outputs:
            job = self.active[seq_id]
            token = self.llama.sample(job.sampler, index)
            if job.state is State.PREFILLING:  # its whole prompt is in the cache
                job.move(State.GENERATING)
                job.first_token_at = now
            reason = "stop" if self.llama.is_end(token) else job.add_token(token, self.llama.piece(token))
            if reason is not None:
                self._finish(job, reason)

    def _release(self, job: Job, keep: bool = False) -> None:
        """Free the request's KV cells (with ``keep``: to the pool), sampler and sequence id."""
        if keep:
            self._keep(job)
        self.llama.forget(job.seq_id)
        free_sampler(job.sampler)
        del self.active[job.seq_id]
        self._free_ids.append(job.seq_id)

    def _keep(self, job: Job) -> None:
        """Give a finished request's KV cells to an idle pool sequence (within the pool's budget)."""
        pool = self.pool
        own = job.pos - job.prefix_cells
        if pool is None or not pool.enabled or not pool.fits(own):
            return
        while pool.cells + own > pool.budget_cells and (victim := pool.oldest()) is not None:
            self._evict(victim)
        slot = pool.slot()
        if slot is None and (victim := pool.oldest()) is not None:
            self._evict(victim)
            slot = pool.slot()
        if slot is None:
            return
        self.llama.share(job.seq_id, slot, job.pos)
        pool.add(slot, job.kv_tokens(), job.prefix_cells)

    def _evict(self, entry: PoolEntry) -> None:
        """Free an idle pool entry's cells (a later follow-up recomputes them)."""
        assert self.pool is not None
        self.llama.forget(entry.seq_id)
        self.pool.take(entry)
        self.pool.stats.evicted += 1

    def _finish(self, job: Job, outcome: StopReason | InferenceError) -> None:
        """Free an active request's sequence (admission may go on), then end it.

        A request that ran to its end (not failed, not cancelled) leaves its KV cells to the pool.
        """
        self._release(job, keep=outcome in ("stop", "length"))
        self._held = False
        self._end(job, outcome)

    @staticmethod
    def _end(job: Job, outcome: StopReason | InferenceError) -> None:
        """-> DONE, and report ``outcome`` (a stop reason or an error)."""
        job.move(State.DONE)
        job.on_done(outcome if isinstance(outcome, InferenceError) else job.result(outcome))

    def end_all(self, reason: str) -> None:
        """End every active and waiting request with an InferenceError saying ``reason`` (at close)."""
        for job in list(self.active.values()):
            self._finish(job, InferenceError(reason))
        with self.cond:
            waiting, self.waiting = list(self.waiting), deque()
        for job in waiting:
            self._end(job, InferenceError(reason))
