"""One llama.cpp model in this process: load it safely, generate answers token by token.

The model file is checked before llama.cpp sees it (exists, GGUF header intact, tensor data within
the file, known architecture), so a missing, truncated or foreign file raises a clear
:class:`~inference.errors.ModelFileError` instead of a native failure.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from inference.errors import InferenceError, ModelCorruptError, PromptTooLongError
from inference.modelfile import validate_gguf

StopReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class GenerationResult:
    """The outcome of one :meth:`Engine.generate` call (times are ``time.time()`` values)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    stop_reason: StopReason
    started_at: float
    first_token_at: float | None
    finished_at: float
    tokens: tuple[int, ...] = ()
    """The generated token ids (without the end-of-generation token)."""


def _known_architectures() -> set[str]:
    """Architecture names llama.cpp knows (gguf-py mirrors llama.cpp's list)."""
    from gguf import MODEL_ARCH_NAMES

    return set(MODEL_ARCH_NAMES.values())


# ---------------------------------------------------------------------------------------------
# Engine


def default_threads() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


LLAMA_LOGGER = logging.getLogger("inference.llama_cpp")
"""llama.cpp's own log lines go here instead of stderr (errors at ERROR, the rest at DEBUG)."""

# ggml_log_level: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continuation of the previous line.
# (llama-cpp-python 0.3.36 maps these with an older numbering, which prints warnings to stderr.)
_LLAMA_LOG_LEVELS = {4: logging.ERROR}
_log_state: dict[str, Any] = {"callback": None, "level": logging.DEBUG, "first_error": ""}


def _forward_llama_log(level: int, text: bytes, _user_data: Any) -> None:
    """ctypes log callback: one llama.cpp log fragment to :data:`LLAMA_LOGGER`."""
    if level != 5:
        _log_state["level"] = _LLAMA_LOG_LEVELS.get(level, logging.DEBUG)
    message = text.decode("utf-8", errors="replace").rstrip("\n")
    if message and _log_state["level"] >= logging.ERROR and not _log_state["first_error"]:
        _log_state["first_error"] = message
    if message and LLAMA_LOGGER.isEnabledFor(_log_state["level"]):
        LLAMA_LOGGER.log(_log_state["level"], "%s", message)


def log_state_first_error() -> str:
    """The first error line llama.cpp logged since the last model load began (or "")."""
    return str(_log_state["first_error"])


def route_llama_logs() -> None:
    """Send llama.cpp's log output to :data:`LLAMA_LOGGER` rather than stderr (idempotent)."""
    import ctypes

    import llama_cpp

    if _log_state["callback"] is None:
        # The ctypes callback object must stay referenced for as long as llama.cpp may call it.
        _log_state["callback"] = llama_cpp.llama_log_callback(_forward_llama_log)
    llama_cpp.llama_log_set(_log_state["callback"], ctypes.c_void_p(0))


class ModelLease:
    """The loaded llama_model of an :class:`Engine`, lent to another context on the same weights.

    While a lease is held the engine keeps the model in memory, even once it is closed; call
    :meth:`release` (idempotent) after freeing the context that uses :attr:`model`.
    """

    def __init__(self, model: Any, release: Callable[[], None]) -> None:
        self.model = model
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        """Give the model back; the engine frees it if it is closed and this was the last lease."""
        release, self._release = self._release, None
        if release is not None:
            release()


class Engine:
    """A loaded GGUF model with one context; ``generate`` is blocking and serialised.

    Other contexts may share the weights through :meth:`lease_model`: the model is freed only once
    the engine is closed and every lease is released, whatever the order.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        use_mmap: bool = True,
        seed: int = 0,
    ) -> None:
        """Validate and load ``model_path``; raise a ModelFileError subclass if unusable."""
        self.model_path = Path(model_path)
        self.architecture = validate_gguf(self.model_path)
        self._lock = threading.Lock()
        self.n_threads = n_threads or default_threads()
        self._closed = False
        self._leases = 0
        self._llama: Any = self._load(n_ctx, self.n_threads, n_batch, use_mmap, seed)

    def _load(self, n_ctx: int, n_threads: int, n_batch: int, use_mmap: bool, seed: int) -> Any:
        """Construct the llama_cpp.Llama object, turning its failure into ModelCorruptError."""
        import llama_cpp

        route_llama_logs()
        _log_state["first_error"] = ""
        try:
            llama = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_ubatch=n_batch,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                use_mmap=use_mmap,
                seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            if "context" in str(exc):  # the model loaded; its context (KV cache) did not
                raise InferenceError(
                    f"{self.model_path}: llama.cpp could not create a {n_ctx}-token context: "
                    f"{_log_state['first_error'] or exc}"
                ) from exc
            raise ModelCorruptError(self.model_path, self._load_failure(exc)) from exc
        self._n_ctx = int(llama.n_ctx())
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._is_eog = llama_cpp.llama_vocab_is_eog
        return llama

    def _load_failure(self, exc: Exception) -> str:
        """The message for a model llama.cpp refused, with llama.cpp's own (first) error line."""
        reason = _log_state["first_error"] or str(exc)
        message = f"{self.model_path}: llama.cpp could not load the model: {reason}"
        if self.architecture not in _known_architectures():
            message += f" (unknown model architecture {self.architecture!r})"
        return message

    @property
    def n_ctx(self) -> int:
        """Context window of the loaded context, in tokens."""
        return self._n_ctx

    @property
    def model_loaded(self) -> bool:
        """Whether the weights are still in memory (after :meth:`close`, until the last lease goes)."""
        return self._llama is not None

    def lease_model(self) -> ModelLease:
        """Lend the loaded llama_model to another context (see ``BatchEngine.sharing``).

        The model stays loaded until the lease is released, even if the engine is closed meanwhile.
        Raises InferenceError if the engine is closed.
        """
        with self._lock:
            model = self._model().model
            self._leases += 1
        return ModelLease(model, self._end_lease)

    def _end_lease(self) -> None:
        """One lease fewer; free the model if it was the last one of a closed engine."""
        with self._lock:
            self._leases -= 1
            self._free_if_unused()

    def _free_if_unused(self) -> None:
        """Free the Llama object once the engine is closed and no lease holds its model (lock held)."""
        if self._closed and self._leases == 0 and self._llama is not None:
            self._llama.close()
            self._llama = None

    def _model(self) -> Any:
        """The Llama object; raises if the engine was closed."""
        if self._closed or self._llama is None:
            raise InferenceError(f"{self.model_path}: engine is closed")
        return self._llama

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` as ``generate`` feeds it: ``<bos>`` first, control tokens parsed."""
        return list(self._model().tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def count_tokens(self, text: str) -> int:
        """How many context tokens ``text`` takes as a prompt (including ``<bos>``)."""
        return len(self.tokenize(text))

    def _check_fits(self, prompt_tokens: int, max_tokens: int) -> None:
        """Refuse a generation whose prompt plus budget would not fit the context."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        limit = self.n_ctx - max_tokens
        if prompt_tokens > limit:
            raise PromptTooLongError(prompt_tokens, limit)

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float = 0.0,
        should_stop: Callable[[], bool] | None = None,
        fresh: bool = False,
    ) -> GenerationResult:
        """Generate a completion of ``prompt``; greedy (deterministic) when temperature is 0.

        Stops at an end-of-generation token (``<end_of_turn>``, ``<eos>``): "stop"; after
        ``max_tokens`` tokens whatever their bytes: "length"; when ``should_stop()`` (checked
        before the prompt is evaluated and after every token) returns True: "cancelled".
        The KV state of the longest common prefix with the previous call is reused, unless
        ``fresh`` (then the whole prompt is evaluated, as a new chat completion would).
        """
        started_at = time.time()
        with self._lock:
            tokens = self.tokenize(prompt)
            self._check_fits(len(tokens), max_tokens)
            if should_stop is not None and should_stop():
                return GenerationResult("", len(tokens), 0, "cancelled", started_at, None, time.time())
            if fresh:
                self._model().reset()
            return self._run(tokens, max_tokens, temperature, should_stop, started_at)

    def _run(
        self,
        tokens: list[int],
        max_tokens: int,
        temperature: float,
        should_stop: Callable[[], bool] | None,
        started_at: float,
    ) -> GenerationResult:
        """The token loop of :meth:`generate` (the lock is held)."""
        llama = self._model()
        generated: list[int] = []
        first_token_at: float | None = None
        reason: StopReason = "length"
        stream = llama.generate(tokens, temp=temperature, repeat_penalty=1.0, reset=True)
        try:
            for token in stream:
                first_token_at = first_token_at or time.time()
                if self._is_eog(self._vocab, token):
                    reason = "stop"
                    break
                generated.append(token)
                if len(generated) >= max_tokens:
                    break
                if should_stop is not None and should_stop():
                    reason = "cancelled"
                    break
        finally:
            stream.close()
        text = llama.detokenize(generated).decode("utf-8", errors="replace")
        return GenerationResult(
            text,
            len(tokens),
            len(generated),
            reason,
            started_at,
            first_token_at,
            time.time(),
            tuple(generated),
        )

    def close(self) -> None:
        """Close the engine (it cannot be used afterwards) and free its model and context.

        While a :meth:`lease_model` lease is held (a batched context on these weights), the model
        is freed only when the last lease is released.
        """
        with self._lock:
            self._closed = True
            self._free_if_unused()

    def __enter__(self) -> Engine:
        """Use as a context manager that closes the engine."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the engine."""
        self.close()
