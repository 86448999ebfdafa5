"""Errors raised by the inference package; each carries what it is about."""

from __future__ import annotations

from pathlib import Path


class InferenceError(Exception):
    """Base class of every error the inference package raises on purpose."""


class HeartbeatConfigError(InferenceError):
    """The worker's heartbeat cannot keep its claims with the configured claim time."""


class ModelFileError(InferenceError):
    """Something is wrong with a model file; ``path`` says which."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


class ModelNotFoundError(ModelFileError):
    """The model file does not exist or cannot be read."""


class ModelCorruptError(ModelFileError):
    """The file is not a GGUF llama.cpp can load (truncated, wrong format, unknown architecture)."""


class ModelChecksumError(ModelFileError):
    """The file's sha256 differs from the one expected."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(
            path, f"{path}: sha256 is {actual}, expected {expected}; the file is damaged or another file"
        )
        self.expected = expected
        self.actual = actual


class DownloadError(InferenceError):
    """A model download failed; ``url`` says which."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url


class MemoryBudgetError(InferenceError):
    """The configured model and KV cache would not fit in available memory."""

    def __init__(self, path: Path, needed_bytes: int, available_bytes: int) -> None:
        super().__init__(
            f"{path}: needs about {needed_bytes / 2**30:.1f} GiB with this configuration, "
            f"only {available_bytes / 2**30:.1f} GiB is available; lower N_CTX or MAX_SEQUENCES"
        )
        self.path = path
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes


class PromptTooLongError(InferenceError):
    """The prompt and the answer budget do not fit in the context window."""

    def __init__(self, prompt_tokens: int, limit: int) -> None:
        super().__init__(f"prompt is {prompt_tokens} tokens; at most {limit} fit with this answer budget")
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class DecodeError(InferenceError):
    """``llama_decode`` failed for a batch; the sequences it held were freed. ``status`` is its code."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message or f"llama_decode failed with status {status}")
        self.status = status


class ContextFullError(DecodeError):
    """No KV cell was free even for a one-token batch, and no other sequence could make room."""

    def __init__(self) -> None:
        super().__init__(1, "the KV cache is full: no room for this sequence even one token at a time")


class EvalDataError(InferenceError):
    """An evaluation question file is missing, unreadable or holds no usable question; ``path`` says which."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


class QuestionTooLongError(InferenceError):
    """An evaluation question's prompt and continuations do not fit the scoring context."""
