"""Log-likelihood of answer continuations after a shared prompt, with llama.cpp's C API.

The prompt is decoded ONCE (sequence 0, logits kept only for its last token). The first token of every
continuation is scored from those logits; when every continuation is a single token (" A" .. " D" in
Gemma's vocabulary) that is the whole work. Longer continuations are scored by copying the prompt's
KV cells to one sequence per choice (a unified KV cache shares the cells, nothing is recomputed) and
decoding all continuations together in one batch, logits on for each of their tokens but the last.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.engine import default_threads, route_llama_logs
from inference.errors import InferenceError, ModelCorruptError, QuestionTooLongError
from inference.modelfile import validate_gguf

MAX_CONTINUATIONS = 20
"""Continuations scored after one prompt (10 letters and 10 choice texts): one sequence each."""

_Entry = tuple[int, int, int, bool]
"""A batch entry: token, position, sequence id, whether its logits are wanted."""


@dataclass(frozen=True)
class ChoiceScores:
    """Log-likelihoods of each continuation given the prompt, and how they were computed."""

    logprobs: tuple[float, ...]
    token_counts: tuple[int, ...]
    prompt_tokens: int
    single_token: bool
    """True when every continuation was one token: all scores came from the prompt's own logits."""

    @property
    def best(self) -> int:
        """Index of the most likely continuation (the first one on an exact tie)."""
        return int(np.argmax(self.logprobs))


def log_softmax(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Log-probabilities from raw logits, in float64."""
    values = logits.astype(np.float64)
    top = float(values.max())
    result: np.ndarray[Any, np.dtype[np.float64]] = values - (top + np.log(np.exp(values - top).sum()))
    return result


def _chunks(entries: Sequence[_Entry], size: int) -> Iterator[Sequence[_Entry]]:
    """``entries`` in consecutive pieces of at most ``size``."""
    for start in range(0, len(entries), size):
        yield entries[start : start + size]


class Scorer:
    """A GGUF model loaded for scoring: one context, one KV cache shared by the prompt and continuations."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 2048,
        n_batch: int = 512,
        n_threads: int | None = None,
        use_mmap: bool = True,
    ) -> None:
        """Validate and load ``model_path``; raise a ModelFileError subclass if unusable."""
        import llama_cpp

        self.model_path = Path(model_path)
        self.architecture = validate_gguf(self.model_path)
        self._api: Any = llama_cpp
        route_llama_logs()
        llama_cpp.llama_backend_init()
        self._model: Any = self._load_model(use_mmap)
        self._vocab: Any = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_batch = n_batch
        self._ctx: Any = self._new_context(n_ctx, n_batch, n_threads or default_threads())
        self.n_ctx = int(llama_cpp.llama_n_ctx(self._ctx))
        self._memory: Any = llama_cpp.llama_get_memory(self._ctx)
        self._batch: Any = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.decoded_tokens = 0
        """Tokens sent to llama_decode so far (the prompt counts once per question)."""

    def _load_model(self, use_mmap: bool) -> Any:
        """The llama_model pointer, or ModelCorruptError."""
        params = self._api.llama_model_default_params()
        params.use_mmap = use_mmap
        model = self._api.llama_model_load_from_file(str(self.model_path).encode(), params)
        if not model:
            raise ModelCorruptError(
                self.model_path,
                f"{self.model_path}: llama.cpp could not load the model (architecture {self.architecture!r})",
            )
        return model

    def _new_context(self, n_ctx: int, n_batch: int, n_threads: int) -> Any:
        """A context with one unified KV cache for the prompt and a sequence per choice."""
        params = self._api.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = 1 + MAX_CONTINUATIONS
        params.kv_unified = True  # sequences share the cells: copying the prompt costs nothing
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        ctx = self._api.llama_init_from_model(self._model, params)
        if not ctx:
            self._api.llama_model_free(self._model)
            self._model = None
            raise InferenceError(f"{self.model_path}: llama.cpp could not create a {n_ctx}-token context")
        return ctx

    def tokenize(self, text: str, *, bos: bool) -> list[int]:
        """Tokens of ``text`` (control-token text is taken literally), with ``<bos>`` first if asked."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buffer = (self._api.llama_token * capacity)()
            count = int(self._api.llama_tokenize(self._vocab, data, len(data), buffer, capacity, bos, False))
            if count >= 0:
                return list(buffer[:count])
            capacity = -count

    def continuation_tokens(self, prompt_tokens: Sequence[int], prompt: str, continuation: str) -> list[int]:
        """Tokens of ``continuation`` after ``prompt``, split as tokenizing the joined text splits them."""
        whole = self.tokenize(prompt + continuation, bos=True)
        if len(whole) > len(prompt_tokens) and whole[: len(prompt_tokens)] == list(prompt_tokens):
            return whole[len(prompt_tokens) :]
        return self.tokenize(continuation, bos=False)  # the boundary merged: score the text as is

    def _decode(self, entries: Sequence[_Entry]) -> None:
        """Decode one batch of entries; raise InferenceError when llama.cpp refuses."""
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (token, pos, seq, wants_logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = wants_logits
        status = int(self._api.llama_decode(self._ctx, batch))
        self.decoded_tokens += len(entries)
        if status != 0:
            raise InferenceError(f"{self.model_path}: llama_decode failed (status {status})")

    def _logprobs_at(self, index: int) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Log-probabilities of the next token at batch entry ``index`` of the last decode."""
        pointer = self._api.llama_get_logits_ith(self._ctx, index)
        return log_softmax(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)))

    def _decode_prompt(self, tokens: Sequence[int]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Clear the cache, decode ``tokens`` as sequence 0; log-probabilities after the last one."""
        self._api.llama_memory_clear(self._memory, True)
        entries = [(token, pos, 0, pos == len(tokens) - 1) for pos, token in enumerate(tokens)]
        last: Sequence[_Entry] = ()
        for last in _chunks(entries, self.n_batch):
            self._decode(last)
        return self._logprobs_at(len(last) - 1)

    def _check_fits(self, n_prompt: int, continuations: Sequence[Sequence[int]]) -> None:
        """Refuse a question whose prompt and continuations would not fit the KV cache."""
        needed = n_prompt + sum(len(tokens) - 1 for tokens in continuations)
        if needed > self.n_ctx:
            raise QuestionTooLongError(
                f"prompt and choices need {needed} tokens, the scoring context has {self.n_ctx}"
            )

    def _score_rest(self, n_prompt: int, continuations: Sequence[Sequence[int]], scores: list[float]) -> None:
        """Add the log-probabilities of every continuation token after the first (sequence copies)."""
        entries: list[_Entry] = []
        targets: list[tuple[int, int]] = []  # (choice, next token) for each entry
        for choice, tokens in enumerate(continuations):
            if len(tokens) > 1:
                self._api.llama_memory_seq_cp(self._memory, 0, choice + 1, -1, -1)
            for step, token in enumerate(tokens[:-1]):
                entries.append((token, n_prompt + step, choice + 1, True))
                targets.append((choice, tokens[step + 1]))
        done = 0
        for chunk in _chunks(entries, self.n_batch):
            self._decode(chunk)
            for index in range(len(chunk)):
                choice, target = targets[done + index]
                scores[choice] += float(self._logprobs_at(index)[target])
            done += len(chunk)
        for choice in range(len(continuations)):
            self._api.llama_memory_seq_rm(self._memory, choice + 1, -1, -1)

    def loglikelihoods(self, prompt: str, continuations: Sequence[str]) -> ChoiceScores:
        """log P(continuation | prompt) for each continuation, decoding the prompt once."""
        if not 1 <= len(continuations) <= MAX_CONTINUATIONS:
            raise ValueError(f"between 1 and {MAX_CONTINUATIONS} continuations, not {len(continuations)}")
        prompt_tokens = self.tokenize(prompt, bos=True)
        tokens = [self.continuation_tokens(prompt_tokens, prompt, text) for text in continuations]
        if any(not t for t in tokens):
            raise ValueError("a continuation has no tokens")
        self._check_fits(len(prompt_tokens), tokens)
        first = self._decode_prompt(prompt_tokens)
        scores = [float(first[t[0]]) for t in tokens]
        single = all(len(t) == 1 for t in tokens)
        if not single:
            self._score_rest(len(prompt_tokens), tokens, scores)
        return ChoiceScores(tuple(scores), tuple(len(t) for t in tokens), len(prompt_tokens), single)

    def close(self) -> None:
        """Free the batch, context and model (idempotent)."""
        if self._batch is not None:
            self._api.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            self._api.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            self._api.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> Scorer:
        """Use as a context manager that frees the model."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Free the model."""
        self.close()
