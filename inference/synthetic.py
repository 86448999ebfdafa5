"""Random-weight GGUF files of the gemma2 architecture, loadable by real llama.cpp.

Such a file has the exact shapes, tokenizer kind and special tokens of Gemma2, so it costs what the
real model costs to run (the honest benchmark model) and lets tests drive real llama.cpp without a
download. The weights are random: the text it generates is noise.

Layout notes (from llama.cpp ``src/models/gemma2.cpp`` and gguf-py's constants):

- tensors ``token_embd`` (also the tied output matrix), ``output_norm`` and per block ``attn_norm``,
  ``attn_q/k/v``, ``attn_output``, ``post_attention_norm``, ``ffn_norm``, ``ffn_gate/up/down``,
  ``post_ffw_norm``;
- llama.cpp's converter stores Gemma's RMS-norm weights as ``1 + w``: a neutral norm is 1.0;
- the tokenizer is SentencePiece ("llama" in GGUF terms) with byte fallback and no space prefix.
"""

from __future__ import annotations

import itertools
import os
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

FORMAT_VERSION = 1
"""Bumped whenever the bytes :func:`write_gemma2_gguf` writes change (part of cache names)."""

PAD_ID = 0
EOS_ID = 1
BOS_ID = 2
UNK_ID = 3
START_OF_TURN_ID = 106
END_OF_TURN_ID = 107
FIRST_BYTE_ID = 108
"""``<0x00>`` .. ``<0xFF>`` occupy ids 108..363; ordinary pieces follow."""

_WEIGHT_SCALE = 0.02
_EMBED_SCALE = 0.005
"""Token embeddings are smaller than other weights: with tied output weights, larger ones make
every token predict itself, and the noise would be one token repeated."""
_CHUNK_ELEMENTS = 1 << 24
_RMS_EPS = 1e-6
_SPACE = "\u2581"  # SentencePiece's "▁"

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

_COMMON_WORDS = (
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "that",
    "with",
    "on",
    "as",
    "are",
    "be",
    "it",
    "by",
    "this",
    "or",
    "from",
    "at",
    "not",
    "have",
    "was",
    "can",
    "an",
    "if",
    "your",
    "you",
    "should",
    "patient",
    "patients",
    "child",
    "children",
    "fever",
    "pain",
    "blood",
    "water",
    "dose",
    "doses",
    "mg",
    "kg",
    "day",
    "days",
    "hours",
    "give",
    "take",
    "treat",
    "treatment",
    "doctor",
    "clinic",
    "clinician",
    "referral",
    "refer",
    "hospital",
    "sign",
    "signs",
    "danger",
    "breathing",
    "cough",
    "diarrhoea",
    "diarrhea",
    "malaria",
    "test",
    "tests",
    "wound",
    "infection",
    "antibiotic",
    "antibiotics",
    "oral",
    "rehydration",
    "salts",
    "ors",
    "zinc",
    "paracetamol",
    "ibuprofen",
    "amoxicillin",
    "pregnant",
    "pregnancy",
    "woman",
    "women",
    "baby",
    "newborn",
    "weight",
    "age",
    "years",
    "old",
    "how",
    "what",
    "when",
    "where",
    "which",
    "who",
    "why",
    "do",
    "does",
    "much",
    "many",
    "more",
    "less",
    "than",
    "about",
    "after",
    "before",
    "per",
    "every",
    "needs",
    "need",
    "seek",
    "urgent",
    "emergency",
    "care",
    "health",
    "medical",
    "medicine",
    "question",
    "answer",
    "may",
    "might",
    "also",
    "other",
    "any",
    "all",
    "no",
    "yes",
    "symptoms",
    "symptom",
    "check",
    "assess",
    "monitor",
    "severe",
    "mild",
    "moderate",
)


@dataclass(frozen=True)
class Gemma2Shape:
    """Hyper-parameters of a gemma2 model (the numbers llama.cpp reads from the GGUF header)."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    n_ctx: int
    sliding_window: int
    attn_softcap: float = 50.0
    final_softcap: float = 30.0

    @property
    def label(self) -> str:
        """Short unique name of the shape, used in cache file names."""
        return (
            f"L{self.n_layer}-E{self.n_embd}-F{self.n_ff}-H{self.n_head}x{self.head_dim}"
            f"-KV{self.n_head_kv}-V{self.n_vocab}-C{self.n_ctx}-W{self.sliding_window}"
            f"-S{self.attn_softcap:g}x{self.final_softcap:g}"
        )


TINY = Gemma2Shape(
    n_layer=2,
    n_embd=256,
    n_ff=512,
    n_head=4,
    n_head_kv=2,
    head_dim=64,
    n_vocab=1024,
    n_ctx=2048,
    sliding_window=1024,
)
"""A few-MB model: widths are multiples of 256 so K-quants (Q4_K_M) apply to every matrix."""

GEMMA2_2B = Gemma2Shape(
    n_layer=26,
    n_embd=2304,
    n_ff=9216,
    n_head=8,
    n_head_kv=4,
    head_dim=256,
    n_vocab=256000,
    n_ctx=8192,
    sliding_window=4096,
)
"""The shapes of Gemma2-2B (and so of Meditron3-Gemma2-2B)."""


# ---------------------------------------------------------------------------------------------
# Vocabulary


def _special_tokens() -> list[tuple[str, int]]:
    """Gemma's reserved ids 0..107 as (text, gguf token type)."""
    from gguf import TokenType

    tokens = [
        ("<pad>", TokenType.CONTROL),
        ("<eos>", TokenType.CONTROL),
        ("<bos>", TokenType.CONTROL),
        ("<unk>", TokenType.UNKNOWN),
        ("<mask>", TokenType.USER_DEFINED),
        ("[@BOS@]", TokenType.USER_DEFINED),
    ]
    tokens += [(f"<unused{i}>", TokenType.UNUSED) for i in range(START_OF_TURN_ID - len(tokens))]
    tokens += [("<start_of_turn>", TokenType.CONTROL), ("<end_of_turn>", TokenType.CONTROL)]
    assert len(tokens) == FIRST_BYTE_ID
    return [(text, int(kind)) for text, kind in tokens]


def _ordinary_pieces() -> Iterator[str]:
    """Ordinary SentencePiece pieces, most useful first, endless enough for a 256000 vocabulary.

    Every multi-character piece's prefix is also a piece, so SentencePiece merges can reach it.
    """
    yield from ("\n", "\n\n", "\t", _SPACE, _SPACE * 2)
    singles = string.ascii_letters + string.digits + string.punctuation
    yield from singles
    yield from (_SPACE + c for c in singles)
    for word in _COMMON_WORDS:
        for end in range(2, len(word) + 1):
            yield word[:end]
            yield _SPACE + word[:end]
        yield _SPACE + word.capitalize()
    for length in itertools.count(2):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            piece = "".join(letters)
            yield piece
            yield _SPACE + piece


def _unique(pieces: Iterator[str], exclude: set[str]) -> Iterator[str]:
    """``pieces`` without repeats and without anything in ``exclude``."""
    seen = set(exclude)
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            yield piece


def build_vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of a Gemma-like SentencePiece vocabulary of ``n_vocab``."""
    from gguf import TokenType

    reserved = FIRST_BYTE_ID + 256
    if n_vocab <= reserved:
        raise ValueError(f"n_vocab must exceed {reserved} (special and byte tokens)")
    specials = _special_tokens()
    tokens = [text for text, _ in specials]
    types = [kind for _, kind in specials]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [int(TokenType.BYTE)] * 256
    tokens += itertools.islice(_unique(_ordinary_pieces(), exclude=set(tokens)), n_vocab - reserved)
    types += [int(TokenType.NORMAL)] * (n_vocab - reserved)
    scores = [0.0] * reserved + [-float(i) for i in range(n_vocab - reserved)]
    return tokens, scores, types


# ---------------------------------------------------------------------------------------------
# Tensors


@dataclass(frozen=True)
class _RandomTensor:
    """A tensor written in chunks straight to the file: ``normal * scale`` or a constant.

    It offers the two things ``GGUFWriter.write_tensor_data`` uses (``nbytes`` and ``tofile``),
    so a 2B-shaped model never needs more than one chunk in memory.
    """

    shape: tuple[int, ...]
    dtype: type[np.floating[Any]]
    seed: tuple[int, int]
    constant: float | None = None
    favour_row: int | None = None
    scale: float = _WEIGHT_SCALE

    @property
    def nbytes(self) -> int:
        """Size of the tensor data in bytes."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def tofile(self, fout: IO[bytes]) -> None:
        """Generate and write the data row-chunk by row-chunk."""
        rng = np.random.default_rng(list(self.seed))
        row = int(np.prod(self.shape[1:])) if len(self.shape) > 1 else self.shape[0]
        n_rows = self.shape[0] if len(self.shape) > 1 else 1
        rows_per_chunk = max(1, _CHUNK_ELEMENTS // row)
        for start in range(0, n_rows, rows_per_chunk):
            stop = min(n_rows, start + rows_per_chunk)
            fout.write(self._chunk(rng, start, stop, row).tobytes())

    def _chunk(self, rng: np.random.Generator, start: int, stop: int, row: int) -> np.ndarray[Any, Any]:
        """Rows ``start:stop`` of the tensor."""
        if self.constant is not None:
            return np.full((stop - start, row), self.constant, dtype=self.dtype)
        data = rng.standard_normal((stop - start, row), dtype=np.float32)
        data *= self.scale
        if self.favour_row is not None:
            # A shared positive direction in column 0, twice as strong for the favoured row: the
            # residual stream then points at it and the tied output matrix picks that token.
            data[:, 0] = 1.0
            if start <= self.favour_row < stop:
                data[self.favour_row - start, 0] = 2.0
        return data.astype(self.dtype, copy=False)


def _tensor_specs(
    shape: Gemma2Shape,
    seed: int,
    favour_token_id: int | None,
    qk_scale: float = _WEIGHT_SCALE,
    embed_scale: float = _EMBED_SCALE,
) -> list[tuple[str, _RandomTensor]]:
    """Every tensor of the model, in file order, with numpy (row-major) shapes."""
    f16, f32 = np.float16, np.float32
    q_dim, kv_dim = shape.n_head * shape.head_dim, shape.n_head_kv * shape.head_dim
    specs = [
        (
            "token_embd.weight",
            _RandomTensor(
                (shape.n_vocab, shape.n_embd), f16, (seed, 0), favour_row=favour_token_id, scale=embed_scale
            ),
        ),
        ("output_norm.weight", _RandomTensor((shape.n_embd,), f32, (seed, 1), constant=1.0)),
    ]
    matrices = {
        "attn_q": (q_dim, shape.n_embd),
        "attn_k": (kv_dim, shape.n_embd),
        "attn_v": (kv_dim, shape.n_embd),
        "attn_output": (shape.n_embd, q_dim),
        "ffn_gate": (shape.n_ff, shape.n_embd),
        "ffn_up": (shape.n_ff, shape.n_embd),
        "ffn_down": (shape.n_embd, shape.n_ff),
    }
    norms = ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm")
    for layer in range(shape.n_layer):
        for name in norms:
            specs.append(
                (f"blk.{layer}.{name}.weight", _RandomTensor((shape.n_embd,), f32, (seed, 2), constant=1.0))
            )
        for index, (name, dims) in enumerate(matrices.items()):
            scale = qk_scale if name in ("attn_q", "attn_k") else _WEIGHT_SCALE
            tensor = _RandomTensor(dims, f16, (seed, 100 + layer * 10 + index), scale=scale)
            specs.append((f"blk.{layer}.{name}.weight", tensor))
    return specs


# ---------------------------------------------------------------------------------------------
# Writing


def _add_metadata(writer: Any, shape: Gemma2Shape, name: str) -> None:
    """Hyper-parameters, as llama.cpp's gemma2 converter writes them."""
    from gguf import LlamaFileType

    writer.add_name(name)
    writer.add_context_length(shape.n_ctx)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_layer_norm_rms_eps(_RMS_EPS)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_file_type(int(LlamaFileType.MOSTLY_F16))
    writer.add_attn_logit_softcapping(shape.attn_softcap)
    writer.add_final_logit_softcapping(shape.final_softcap)
    writer.add_sliding_window(shape.sliding_window)


def _add_tokenizer(writer: Any, n_vocab: int) -> None:
    """A Gemma-like SentencePiece tokenizer with its special tokens and chat template."""
    tokens, scores, types = build_vocab(n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_pad_token_id(PAD_ID)
    writer.add_eot_token_id(END_OF_TURN_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    writer.add_chat_template(GEMMA_CHAT_TEMPLATE)


def write_gemma2_gguf(
    path: Path,
    shape: Gemma2Shape,
    *,
    seed: int = 0,
    favour_token_id: int | None = None,
    qk_scale: float = _WEIGHT_SCALE,
    embed_scale: float = _EMBED_SCALE,
) -> Path:
    """Write a random-weight F16 gemma2 GGUF of ``shape`` to ``path`` and return ``path``.

    Tensors are generated and written one chunk at a time (a 2B shape is about 5 GB on disk).
    ``favour_token_id`` (for tests) biases the tied embedding so greedy decoding emits that token
    at every step, e.g. ``END_OF_TURN_ID`` to exercise stopping at the end of a turn.
    A larger ``qk_scale`` (query and key weights) makes attention sharp, so the greedy output
    depends on the prompt instead of repeating one token (tests of prompt-dependent equality).
    """
    from gguf import GGUFWriter

    if favour_token_id is not None and not 0 <= favour_token_id < shape.n_vocab:
        raise ValueError(f"favour_token_id {favour_token_id} is outside the vocabulary")
    specs = _tensor_specs(shape, seed, favour_token_id, qk_scale, embed_scale)
    writer = GGUFWriter(path, "gemma2")
    try:
        _add_metadata(writer, shape, f"synthetic-gemma2-{shape.label}")
        _add_tokenizer(writer, shape.n_vocab)
        for name, tensor in specs:
            writer.add_tensor_info(name, tensor.shape, np.dtype(tensor.dtype), tensor.nbytes)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, tensor in specs:
            writer.write_tensor_data(cast("np.ndarray[Any, Any]", tensor))
    finally:
        writer.close()
    return path


# ---------------------------------------------------------------------------------------------
# Quantizing and the cached benchmark model


def quantize(src: Path, dst: Path, ftype: str = "Q4_K_M") -> Path:
    """Quantize the GGUF ``src`` to ``dst`` with llama.cpp (``ftype`` like "Q4_K_M", "Q8_0")."""
    import ctypes

    import llama_cpp

    from inference.engine import route_llama_logs

    route_llama_logs()
    ftype_value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}", None)
    if ftype_value is None:
        raise ValueError(f"unknown llama.cpp file type {ftype!r}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_value
    params.nthread = os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if status != 0:
        dst.unlink(missing_ok=True)
        raise RuntimeError(f"llama.cpp could not quantize {src} to {ftype} (status {status})")
    return dst


def bench_model_name(shape: Gemma2Shape, ftype: str) -> str:
    """Cache file name of the random-weight model of ``shape`` quantized to ``ftype``."""
    return f"synthetic-gemma2-{shape.label}-{ftype.upper()}-v{FORMAT_VERSION}.gguf"


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(final: Path) -> None:
    """Delete temporary files for ``final`` left by writers that no longer run (``*.<pid>.tmp``)."""
    for leftover in final.parent.glob(f"{final.stem}*.tmp"):
        pid = leftover.suffixes[-2].lstrip(".") if len(leftover.suffixes) >= 2 else ""
        if pid.isdigit() and not _pid_alive(int(pid)):
            leftover.unlink(missing_ok=True)


def ensure_bench_model(
    cache_dir: Path,
    shape: Gemma2Shape = GEMMA2_2B,
    ftype: str = "Q4_K_M",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Return a cached random-weight model of ``shape`` in ``ftype``, writing it once if needed.

    The F16 intermediate and the quantized file are written under temporary names; the final
    name appears only when the file is complete, and the intermediate is deleted.
    """
    report = progress or (lambda _message: None)
    final = cache_dir / bench_model_name(shape, ftype)
    if final.is_file():
        report(f"using cached benchmark model {final}")
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(final)
    suffix = f".{os.getpid()}.tmp"
    f16 = final.with_name(final.stem + "-F16" + suffix)
    partial = final.with_name(final.name + suffix)
    try:
        report(f"writing random F16 weights of shape {shape.label} to {f16}")
        write_gemma2_gguf(f16, shape)
        if ftype.upper() == "F16":
            f16.replace(partial)
        else:
            report(f"quantizing to {ftype.upper()} (this takes a few minutes)")
            quantize(f16, partial, ftype)
        partial.replace(final)
    finally:
        f16.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    report(f"benchmark model ready: {final}")
    return final
