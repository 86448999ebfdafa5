"""Several questions at once on one llama.cpp context: prefix KV reuse and continuous batching.

One llama.cpp context holds a *unified* KV cache of ``n_ctx`` cells shared by up to
``max_sequences`` questions. Sequence 0 holds the fixed instruction prefix, evaluated once; a new
question gets the prefix by ``llama_memory_seq_cp`` (in a unified cache that only tags the prefix
cells with one more sequence id: no copy, no extra memory), so only its own tokens are evaluated.
Each :meth:`BatchEngine.step` fills one batch of at most ``n_batch`` tokens: one token for each
question that is generating, then prompt tokens of questions that joined (continuous admission); a
prompt tail longer than the room left is split over as many steps as it needs. Each question has its
own sampler, stop strings, token budget and cancel callback.

The scheduling follows llama.cpp's own server (``update_slots`` in ``tools/server``): a batch with
entries is always decoded; when ``llama_decode`` finds no free KV cell (status 1) the batch is
decoded again in halves, down to one token; when even one token does not fit, the newest sequence is
preempted (its cells freed, its request put back at the head of the queue, admission held until a
sequence finishes) so the older ones go on, and a sequence alone that cannot grow is failed with
:class:`~inference.errors.ContextFullError`. Any other failure fails every sequence that still had
tokens in the batch with :class:`~inference.errors.DecodeError`, and removes their KV cells, so no
sequence is left with positions whose KV was never written; the engine keeps serving.

Gemma2's sliding-window layers: the context is created with ``swa_full`` (a full-size SWA cache),
so sequence copy and removal behave exactly as for the global layers.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.engine import (
    Engine,
    GenerationResult,
    ModelLease,
    StopReason,
    default_threads,
    log_state_first_error,
    route_llama_logs,
    validate_gguf,
)
from inference.errors import (
    ContextFullError,
    DecodeError,
    InferenceError,
    ModelCorruptError,
    PromptTooLongError,
)

PREFIX_SEQ = 0
"""The sequence id that keeps the instruction prefix."""


@dataclass(frozen=True)
class Request:
    """One generation: the prompt and its own sampling, stop strings, budget and cancel callback."""

    prompt: str
    max_tokens: int
    temperature: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    should_stop: Callable[[], bool] | None = None
    reuse_prefix: bool = True


Outcome = GenerationResult | InferenceError
Callback = Callable[[Outcome], None]
_Entry = tuple[int, int, int, bool]
"""One batch row: sequence id, token, position, whether its logits are wanted."""


@dataclass
class _Sequence:
    """A request being answered: its KV sequence id, what to feed next, what it produced."""

    seq_id: int
    request: Request
    on_done: Callback
    sampler: Any
    prompt_tokens: int
    reserved: int
    admitted: int
    pos: int
    pending: list[int]
    started_at: float
    generated: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    first_token_at: float | None = None

    def cancelled(self) -> bool:
        """Whether the request's cancel callback says stop."""
        return self.request.should_stop is not None and self.request.should_stop()


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
    """Sequences put back in the queue to make KV room for the others."""
    failures: int = 0
    """Decodes that failed for good (their sequences were failed)."""


def _context_params(n_ctx: int, n_threads: int, n_batch: int, max_sequences: int) -> Any:
    """llama_context_params for a unified, full-SWA cache with ``max_sequences`` + 1 sequences."""
    import llama_cpp

    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = n_batch
    params.n_seq_max = max_sequences + 1  # + the prefix sequence
    params.n_outputs_max = max_sequences + 1  # one row of logits per sequence, not per batch token
    params.n_outputs_max_per_seq = 1
    params.n_threads = n_threads
    params.n_threads_batch = n_threads
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as the plain path (Llama)
    params.swa_full = True
    params.kv_unified = True
    params.no_perf = False
    return params


def _load_model(path: Path, use_mmap: bool) -> Any:
    """Load a GGUF model with the low-level API; ModelCorruptError when llama.cpp refuses it."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE
    model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
    if not model:
        reason = log_state_first_error() or "unknown error"
        raise ModelCorruptError(path, f"{path}: llama.cpp could not load the model: {reason}")
    return model


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
        of its whole answer budget are free; without it, when its prompt tail fits (more sequences
        at once; a sequence that then finds the cache full is preempted and answered later).
        """
        route_llama_logs()
        self.model_path = Path(model_path)
        self.max_sequences = max_sequences
        self.n_batch = n_batch
        self.reserve_answer = reserve_answer
        self._lease = _lease
        if _lease is None:
            validate_gguf(self.model_path)
        self._model: Any = _load_model(self.model_path, use_mmap) if _lease is None else _lease.model
        self._ctx: Any = self._create_context(n_ctx, n_threads or default_threads(), n_batch)
        self._init_state()

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

    def _create_context(self, n_ctx: int, n_threads: int, n_batch: int) -> Any:
        """The llama.cpp context; InferenceError if it cannot be created."""
        import llama_cpp

        params = _context_params(n_ctx, n_threads, n_batch, self.max_sequences)
        ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not ctx:
            self._free_model()
            raise InferenceError(
                f"{self.model_path}: llama.cpp could not create a {n_ctx}-token context: "
                f"{log_state_first_error() or 'unknown error'}"
            )
        return ctx

    def _init_state(self) -> None:
        """Vocabulary, batch buffer, scheduling state."""
        import llama_cpp

        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._n_ctx = int(llama_cpp.llama_n_ctx(self._ctx))
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._step_lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiting: deque[tuple[Request, Callback]] = deque()
        self._active: dict[int, _Sequence] = {}
        self._free_ids = list(range(self.max_sequences, 0, -1))
        self._admitted = 0
        self._held = False  # no admission after a preemption until a sequence finishes
        self._prefix: list[int] = []
        self.stats = BatchStats()

    # -- properties ------------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """KV cells of the context, shared by the prefix and every active sequence."""
        return self._n_ctx

    @property
    def context(self) -> Any:
        """The llama_context pointer (for measurements such as the bare decode loop)."""
        return self._live_ctx()

    @property
    def prefix_tokens(self) -> int:
        """Tokens of the evaluated instruction prefix (0 when none is set)."""
        return len(self._prefix)

    @property
    def active(self) -> int:
        """Sequences being answered now."""
        return len(self._active)

    @property
    def reserved_cells(self) -> int:
        """KV cells promised to active sequences.

        With ``reserve_answer``: prompt tail + token budget each; else the cells each holds or will
        hold for its prompt tail and the tokens it generated so far.
        """
        if self.reserve_answer:
            return sum(seq.reserved for seq in self._active.values())
        return sum(seq.reserved + len(seq.generated) for seq in self._active.values())

    def sequence_cells(self, seq_id: int) -> int:
        """KV cells sequence ``seq_id`` occupies now (its positions; 0 when it holds none)."""
        import llama_cpp

        high = llama_cpp.llama_memory_seq_pos_max(self._mem, seq_id)
        low = llama_cpp.llama_memory_seq_pos_min(self._mem, seq_id)
        return 0 if high < 0 else int(high - low + 1)

    def _live_ctx(self) -> Any:
        """The context; raises once the engine is closed."""
        if self._ctx is None:
            raise InferenceError(f"{self.model_path}: batch engine is closed")
        return self._ctx

    # -- tokens ----------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` as a prompt: ``<bos>`` first, control tokens parsed."""
        import llama_cpp

        data = text.encode("utf-8")
        size = len(data) + 8
        buffer = (llama_cpp.llama_token * size)()
        count = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, size, True, True)
        if count < 0:
            size = -count
            buffer = (llama_cpp.llama_token * size)()
            count = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, size, True, True)
        return list(buffer[:count])

    def _piece(self, token: int) -> bytes:
        """The bytes of one generated token."""
        import llama_cpp

        buffer = ctypes.create_string_buffer(64)
        size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, 64, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]

    # -- prefix ----------------------------------------------------------------------------------

    def set_prefix(self, text: str) -> int:
        """Evaluate ``text`` once into the prefix sequence; return its token count (blocking)."""
        import llama_cpp

        tokens = self.tokenize(text)
        if len(tokens) >= self.n_ctx // 2:
            raise PromptTooLongError(len(tokens), self.n_ctx // 2)
        with self._step_lock:
            llama_cpp.llama_memory_seq_rm(self._mem, PREFIX_SEQ, -1, -1)
            self._prefix = []
            for start in range(0, len(tokens), self.n_batch):
                chunk = tokens[start : start + self.n_batch]
                self._fill([(PREFIX_SEQ, token, start + i, False) for i, token in enumerate(chunk)])
                status = self._decode()
                if status != 0:
                    llama_cpp.llama_memory_seq_rm(self._mem, PREFIX_SEQ, -1, -1)
                    raise DecodeError(status)
            self._prefix = tokens
        return len(tokens)

    # -- requests --------------------------------------------------------------------------------

    def submit(self, request: Request, on_done: Callback) -> None:
        """Queue ``request``; ``on_done`` gets its result (or error) from the stepping thread."""
        if request.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        with self._cond:
            self._waiting.append((request, on_done))
            self._cond.notify_all()

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
        """Admit waiting requests, then decode one batch (a token per generating sequence, prompt chunks)."""
        with self._step_lock:
            self._live_ctx()
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
                request, on_done = self._waiting[0]
                outcome = self._start(request, on_done)
                if outcome == "wait":
                    return
                self._waiting.popleft()

    def _start(self, request: Request, on_done: Callback) -> str:
        """Begin ``request`` ("started"), refuse or cancel it ("done"), or leave it waiting ("wait")."""
        started_at = time.time()
        tokens = self.tokenize(request.prompt)
        shared = min(_common_prefix(tokens, self._prefix), len(tokens) - 1) if request.reuse_prefix else 0
        need = len(tokens) - shared + request.max_tokens
        room = self.n_ctx - len(self._prefix)  # cells a sequence may use when it runs alone
        if need > room:
            on_done(PromptTooLongError(len(tokens), room + shared - request.max_tokens))
            return "done"
        if request.should_stop is not None and request.should_stop():
            on_done(GenerationResult("", len(tokens), 0, "cancelled", started_at, None, time.time()))
            return "done"
        reserve = need if self.reserve_answer else len(tokens) - shared + 1
        if self.reserved_cells + reserve > room:
            return "wait"
        self._begin(request, on_done, tokens, shared, reserve, started_at)
        return "started"

    def _begin(
        self,
        request: Request,
        on_done: Callback,
        tokens: list[int],
        shared: int,
        reserve: int,
        started: float,
    ) -> None:
        """Give ``request`` a sequence id, the prefix cells it shares, and a sampler."""
        import llama_cpp

        seq_id = self._free_ids.pop()
        llama_cpp.llama_memory_seq_rm(self._mem, seq_id, -1, -1)
        if shared:
            llama_cpp.llama_memory_seq_cp(self._mem, PREFIX_SEQ, seq_id, 0, shared)
            self.stats.prefix_tokens_saved += shared
        sampler = _make_sampler(request.temperature, request.seed)
        self._admitted += 1
        self._active[seq_id] = _Sequence(
            seq_id,
            request,
            on_done,
            sampler,
            len(tokens),
            reserve,
            self._admitted,
            shared,
            tokens[shared:],
            started,
        )

    def _drop_cancelled_prefills(self) -> None:
        """Cancel sequences whose prompt is still being evaluated when their callback says so."""
        for seq in list(self._active.values()):
            if not seq.generated and seq.first_token_at is None and seq.cancelled():
                self._finish(seq, "cancelled")

    def _plan(self) -> list[_Entry]:
        """The next batch: one token per generating sequence first, then prompt chunks, at most n_batch.

        Shorter prompt tails go first, so a short question is not held up behind a long one. A
        sequence's positions advance by what it got; its last prompt token (or its generated token)
        asks for logits. A prompt tail that does not fit goes on at the next step.
        """
        entries: list[_Entry] = []
        for seq in sorted(self._active.values(), key=lambda seq: len(seq.pending)):
            room = self.n_batch - len(entries)
            if room <= 0:
                break
            take = seq.pending[:room]
            last = len(take) == len(seq.pending)
            entries.extend(
                (seq.seq_id, token, seq.pos + i, last and i == len(take) - 1) for i, token in enumerate(take)
            )
            seq.pos += len(take)
            seq.pending = seq.pending[len(take) :]
        return entries

    def _run(self, entries: list[_Entry]) -> None:
        """Decode ``entries``, halving the batch while the KV cache has no room; recover from failures."""
        size = self.n_batch
        while entries:
            view = entries[:size]
            self._fill(view)
            status = self._decode()
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

    def _alive(self, entries: list[_Entry]) -> list[_Entry]:
        """The entries of sequences still active."""
        return [entry for entry in entries if entry[0] in self._active]

    def _recover(self, entries: list[_Entry], status: int) -> list[_Entry]:
        """After ``entries`` failed to decode: make KV room by preempting, or fail their sequences.

        Returns the entries still to decode. Every failed sequence loses its KV cells, so none keeps
        positions whose KV was never written.
        """
        if status == 1 and len(self._active) > 1:
            self._preempt(max(self._active.values(), key=lambda seq: seq.admitted))
            return self._alive(entries)
        self.stats.failures += 1
        error: InferenceError = ContextFullError() if status == 1 else DecodeError(status)
        for seq_id in dict.fromkeys(entry[0] for entry in entries):
            if seq_id in self._active:
                self._finish(self._active[seq_id], error)
        return []

    def _preempt(self, seq: _Sequence) -> None:
        """Free ``seq`` and queue its request again first; admit nothing until a sequence finishes."""
        self._release(seq)
        with self._cond:
            self._waiting.appendleft((seq.request, seq.on_done))
        self._held = True
        self.stats.preemptions += 1

    def _fill(self, entries: Sequence[_Entry]) -> None:
        """Write (sequence id, token, position, wants logits) entries into the batch."""
        batch = self._batch
        for i, (seq_id, token, pos, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = logits
        batch.n_tokens = len(entries)

    def _decode(self) -> int:
        """One llama_decode of the filled batch; its status (0 done, 1 no KV room, else failed)."""
        import llama_cpp

        started = time.perf_counter()
        status = int(llama_cpp.llama_decode(self._ctx, self._batch))
        self.stats.decode_s += time.perf_counter() - started
        if status == 0:
            self.stats.decodes += 1
            self.stats.tokens += int(self._batch.n_tokens)
        return status

    def _sample(self, view: list[_Entry]) -> None:
        """Sample the next token of each sequence whose logits ``view`` produced; finish the done ones."""
        import llama_cpp

        now = time.time()
        outputs = [(index, entry[0]) for index, entry in enumerate(view) if entry[3]]
        for index, seq_id in outputs:
            seq = self._active[seq_id]
            token = int(llama_cpp.llama_sampler_sample(seq.sampler, self._ctx, index))
            seq.first_token_at = seq.first_token_at or now
            reason = self._advance(seq, token)
            if reason is not None:
                self._finish(seq, reason)

    def _advance(self, seq: _Sequence, token: int) -> StopReason | None:
        """Record ``token`` for ``seq``; the stop reason when the sequence is done, else None."""
        import llama_cpp

        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return "stop"
        seq.generated.append(token)
        seq.text += self._piece(token)
        if seq.request.stop and self._cut_at_stop(seq):
            return "stop"
        if len(seq.generated) >= seq.request.max_tokens:
            return "length"
        if seq.cancelled():
            return "cancelled"
        seq.pending = [token]
        return None

    @staticmethod
    def _cut_at_stop(seq: _Sequence) -> bool:
        """Cut the text at the first stop string it now contains; whether it did."""
        text = seq.text.decode("utf-8", errors="ignore")
        hits = [text.find(stop) for stop in seq.request.stop if stop and stop in text]
        if not hits:
            return False
        seq.text = bytearray(text[: min(hits)].encode("utf-8"))
        return True

    def _release(self, seq: _Sequence) -> None:
        """Free the sequence's KV cells, sampler and id."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
        llama_cpp.llama_sampler_free(seq.sampler)
        del self._active[seq.seq_id]
        self._free_ids.append(seq.seq_id)

    def _finish(self, seq: _Sequence, outcome: StopReason | InferenceError) -> None:
        """Free the sequence (admission may go on), then report its outcome."""
        self._release(seq)
        self._held = False
        if isinstance(outcome, InferenceError):
            seq.on_done(outcome)
            return
        text = bytes(seq.text).decode("utf-8", errors="replace")
        seq.on_done(
            GenerationResult(
                text,
                seq.prompt_tokens,
                len(seq.generated),
                outcome,
                seq.started_at,
                seq.first_token_at,
                time.time(),
                tuple(seq.generated),
            )
        )

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the context, then the model this engine loaded (or release its lease on a shared one)."""
        import llama_cpp

        with self._step_lock:
            if self._ctx is None:
                return
            for seq in list(self._active.values()):
                self._finish(seq, InferenceError("the engine was closed"))
            with self._cond:
                waiting, self._waiting = list(self._waiting), deque()
            for _request, on_done in waiting:
                on_done(InferenceError("the engine was closed"))
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
            self._free_model()

    def _free_model(self) -> None:
        """Free the model this engine loaded, or give a shared one back (after its context is freed)."""
        import llama_cpp

        if self._lease is not None:
            self._lease.release()
        elif self._model is not None:
            llama_cpp.llama_model_free(self._model)
        self._model = None

    def __enter__(self) -> BatchEngine:
        """Use as a context manager that closes the engine."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the engine."""
        self.close()


def _make_sampler(temperature: float, seed: int) -> Any:
    """A sampler chain: greedy at temperature 0, else top-k 40, top-p 0.95, min-p 0.05, temperature."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    for sampler in (
        llama_cpp.llama_sampler_init_top_k(40),
        llama_cpp.llama_sampler_init_top_p(0.95, 1),
        llama_cpp.llama_sampler_init_min_p(0.05, 1),
        llama_cpp.llama_sampler_init_temp(temperature),
        llama_cpp.llama_sampler_init_dist(seed),
    ):
        llama_cpp.llama_sampler_chain_add(chain, sampler)
    return chain
