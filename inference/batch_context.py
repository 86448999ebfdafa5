"""The llama.cpp side of the batched engine: model, multi-sequence context, batch buffer, samplers.

One context holds a *unified* KV cache of ``n_ctx`` cells shared by ``max_sequences`` sequences plus
the prefix sequence. Gemma2's sliding-window layers: the context is created with ``swa_full`` (a
full-size SWA cache), so sequence copy and removal behave exactly as for the global layers.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.engine import log_state_first_error
from inference.errors import InferenceError, ModelCorruptError

Entry = tuple[int, int, int, bool]
"""One batch row: sequence id, token, position, whether its logits are wanted."""


def load_model(path: Path, use_mmap: bool) -> Any:
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


def free_model(model: Any) -> None:
    """Free a model :func:`load_model` loaded (after every context on it is freed)."""
    import llama_cpp

    llama_cpp.llama_model_free(model)


def kv_bytes_per_cell(model: Any) -> int:
    """Bytes of one KV cell (one token's K and V in every layer, F16 as the context stores them)."""
    import llama_cpp

    def meta(key: str) -> int | None:
        buffer = ctypes.create_string_buffer(128)
        size = llama_cpp.llama_model_meta_val_str(model, key.encode(), buffer, 128)
        text = buffer.value.decode("utf-8", "replace") if size > 0 else ""
        return int(text) if text.isdigit() else None

    architecture = ctypes.create_string_buffer(64)
    llama_cpp.llama_model_meta_val_str(model, b"general.architecture", architecture, 64)
    arch = architecture.value.decode("utf-8", "replace")
    n_head = max(1, int(llama_cpp.llama_model_n_head(model)))
    fallback = int(llama_cpp.llama_model_n_embd(model)) // n_head
    key = meta(f"{arch}.attention.key_length") or fallback
    value = meta(f"{arch}.attention.value_length") or key
    layers, heads = int(llama_cpp.llama_model_n_layer(model)), int(llama_cpp.llama_model_n_head_kv(model))
    return layers * heads * (key + value) * 2


def _context_params(
    n_ctx: int, n_threads: int, n_batch: int, max_sequences: int, idle_sequences: int = 0
) -> Any:
    """llama_context_params for a unified, full-SWA cache with ``max_sequences`` + 1 sequences
    (and ``idle_sequences`` more that only keep KV cells: the conversation pool)."""
    import llama_cpp

    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = n_batch
    params.n_seq_max = max_sequences + 1 + idle_sequences  # + the prefix sequence + the pool
    # One row of logits per sequence, not per batch token (llama.cpp wants a row for every sequence id,
    # the pool's idle ones included: 4 bytes x vocabulary each).
    params.n_outputs_max = params.n_seq_max
    params.n_outputs_max_per_seq = 1
    params.n_threads = n_threads
    params.n_threads_batch = n_threads
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as the plain path (Llama)
    params.swa_full = True
    params.kv_unified = True
    params.no_perf = False
    return params


class BatchContext:
    """A context on ``model`` for ``max_sequences`` + 1 sequences, with a batch of ``n_batch`` rows."""

    def __init__(
        self,
        model: Any,
        model_path: Path,
        *,
        n_ctx: int,
        n_threads: int,
        n_batch: int,
        max_sequences: int,
        idle_sequences: int = 0,
    ) -> None:
        """Create the context; InferenceError if llama.cpp cannot."""
        import llama_cpp

        params = _context_params(n_ctx, n_threads, n_batch, max_sequences, idle_sequences)
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            raise InferenceError(
                f"{model_path}: llama.cpp could not create a {n_ctx}-token context: "
                f"{log_state_first_error() or 'unknown error'}"
            )
        self.ctx: Any = ctx
        self.vocab: Any = llama_cpp.llama_model_get_vocab(model)
        self.mem: Any = llama_cpp.llama_get_memory(ctx)
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.batch: Any = llama_cpp.llama_batch_init(n_batch, 0, 1)

    # -- tokens ----------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` as a prompt: ``<bos>`` first, control tokens parsed."""
        import llama_cpp

        data = text.encode("utf-8")
        size = len(data) + 8
        buffer = (llama_cpp.llama_token * size)()
        count = llama_cpp.llama_tokenize(self.vocab, data, len(data), buffer, size, True, True)
        if count < 0:
            size = -count
            buffer = (llama_cpp.llama_token * size)()
            count = llama_cpp.llama_tokenize(self.vocab, data, len(data), buffer, size, True, True)
        return list(buffer[:count])

    def piece(self, token: int) -> bytes:
        """The bytes of one generated token."""
        import llama_cpp

        buffer = ctypes.create_string_buffer(64)
        size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]

    def is_end(self, token: int) -> bool:
        """Whether ``token`` ends a generation (``<end_of_turn>``, ``<eos>``)."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    # -- KV sequences ----------------------------------------------------------------------------

    def forget(self, seq_id: int) -> None:
        """Free every KV cell of sequence ``seq_id``."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self.mem, seq_id, -1, -1)

    def share(self, source: int, target: int, count: int) -> None:
        """Tag the first ``count`` cells of ``source`` with ``target`` too (no copy in a unified cache)."""
        import llama_cpp

        llama_cpp.llama_memory_seq_cp(self.mem, source, target, 0, count)

    def state_bytes(self, seq_id: int) -> int:
        """Bytes llama.cpp would write to save sequence ``seq_id`` (its KV cells and their metadata)."""
        import llama_cpp

        return int(llama_cpp.llama_state_seq_get_size(self.ctx, seq_id))

    def cells(self, seq_id: int) -> int:
        """KV cells sequence ``seq_id`` occupies now (its positions; 0 when it holds none)."""
        import llama_cpp

        high = llama_cpp.llama_memory_seq_pos_max(self.mem, seq_id)
        low = llama_cpp.llama_memory_seq_pos_min(self.mem, seq_id)
        return 0 if high < 0 else int(high - low + 1)

    def save_sequence(self, seq_id: int, path: Path, tokens: Sequence[int]) -> bool:
        """Write sequence ``seq_id``'s KV cells and ``tokens`` to ``path``; whether llama.cpp did."""
        import llama_cpp

        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        written = llama_cpp.llama_state_seq_save_file(
            self.ctx, str(path).encode("utf-8"), seq_id, array, len(tokens)
        )
        return int(written) > 0

    def load_sequence(self, seq_id: int, path: Path, capacity: int) -> list[int] | None:
        """Load a saved sequence into ``seq_id``: its tokens, or None (nothing loaded) if it does not load."""
        import llama_cpp

        array = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        read = llama_cpp.llama_state_seq_load_file(
            self.ctx, str(path).encode("utf-8"), seq_id, array, capacity, ctypes.byref(count)
        )
        if int(read) == 0:
            self.forget(seq_id)
            return None
        return list(array[: count.value])

    # -- the decode step -------------------------------------------------------------------------

    def decode(self, entries: Sequence[Entry]) -> tuple[int, float]:
        """Decode ``entries`` in one llama_decode: its status (0 done, 1 no KV room, else failed), seconds."""
        import llama_cpp

        batch = self.batch
        for i, (seq_id, token, pos, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = logits
        batch.n_tokens = len(entries)
        started = time.perf_counter()
        status = int(llama_cpp.llama_decode(self.ctx, batch))
        return status, time.perf_counter() - started

    def sample(self, sampler: Any, index: int) -> int:
        """The token ``sampler`` picks from the logits of row ``index`` of the last decode."""
        import llama_cpp

        return int(llama_cpp.llama_sampler_sample(sampler, self.ctx, index))

    def free(self) -> None:
        """Free the batch buffer and the context (the model is the caller's)."""
        import llama_cpp

        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)


def make_sampler(temperature: float, seed: int) -> Any:
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


def free_sampler(sampler: Any) -> None:
    """Free a sampler chain :func:`make_sampler` made."""
    import llama_cpp

    llama_cpp.llama_sampler_free(sampler)
