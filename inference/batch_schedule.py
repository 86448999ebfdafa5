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


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Scheduler:
    """The waiting queue and the active requests of one context; the caller serialises the steps."""

    def __init__(
        self, llama: BatchContext, *, n_batch: int, max_sequences: int, reserve_answer: bool
    ) -> None:
        self.llama = llama
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
        loaded = self.llama.load_sequence(PREFIX_SEQ, path, len(tokens) + 1)
        if loaded != tokens:
            self.llama.forget(PREFIX_SEQ)
            return False
        self.prefix = tokens
        return True

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
        shared = min(_common_prefix(tokens, self.prefix), len(tokens) - 1) if request.reuse_prefix else 0
        need = len(tokens) - shared + request.max_tokens
        room = self.llama.n_ctx - len(self.prefix)  # cells a request may use when it runs alone
        if need > room:
            self._end(job, PromptTooLongError(len(tokens), room + shared - request.max_tokens))
            return True
        if job.cancelled():
            self._end(job, "cancelled")
            return True
        reserve = need if self.reserve_answer else len(tokens) - shared + 1
        if self.reserved_cells + reserve > room:
            return False
        self._begin(job, tokens, shared, reserve)
        return True

    def _begin(self, job: Job, tokens: list[int], shared: int, reserve: int) -> None:
        """WAITING -> PREFILLING: a sequence id, the prefix cells it shares, a sampler."""
        job.move(State.PREFILLING)
        job.seq_id = self._free_ids.pop()
        self.llama.forget(job.seq_id)
        if shared:
            self.llama.share(PREFIX_SEQ, job.seq_id, shared)
            self.stats.prefix_tokens_saved += shared
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

    def _release(self, job: Job) -> None:
        """Free the request's KV cells, sampler and sequence id."""
        self.llama.forget(job.seq_id)
        free_sampler(job.sampler)
        del self.active[job.seq_id]
        self._free_ids.append(job.seq_id)

    def _finish(self, job: Job, outcome: StopReason | InferenceError) -> None:
        """Free an active request's sequence (admission may go on), then end it."""
        self._release(job)
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
