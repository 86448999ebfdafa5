"""Settings of a worker: which model file, how to run it, how to reach the queue."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.errors import HeartbeatConfigError
from inference.modelfile import DEFAULT_FILENAME, DEFAULT_REPO, DEFAULT_SHA256

MAX_HEARTBEAT_S = 10.0
"""The derived heartbeat is never slower than this (a long claim time still renews often)."""


def physical_cores() -> int:
    """Physical cores (llama.cpp runs best with one thread per core), at least 1."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            cores = {line for line in handle if line.startswith(("core id", "physical id"))}
        pairs = len(cores)
    except OSError:
        pairs = 0
    return max(1, min(pairs or (os.cpu_count() or 1), os.cpu_count() or 1))


class InferenceSettings(BaseSettings):
    """Model file and generation knobs (environment or ``.env``)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", protected_namespaces=())

    model_path: Path | None = Field(default=None, description="GGUF file; default: the pulled Meditron file")
    model_repo: str = DEFAULT_REPO
    model_file: str = DEFAULT_FILENAME
    model_sha256: str | None = DEFAULT_SHA256
    hf_endpoint: str = "https://huggingface.co"
    hf_token: SecretStr | None = None
    n_threads: int = Field(default_factory=physical_cores, ge=1)
    n_ctx: int = Field(default=4096, ge=512)
    n_batch: int = Field(default=512, ge=8)
    use_mmap: bool = False  # llama.cpp repacks Q4 weights for AVX2 anyway; mmap keeps the file resident too
    max_answer_tokens: int = Field(default=384, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    worker_name: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    max_sequences: int = Field(default=4, ge=1, le=64, description="questions answered at once (one batch)")
    prefix_reuse: bool = Field(default=True, description="evaluate the instruction prefix once, reuse its KV")
    kv_pool_mb: int = Field(default=256, ge=0, description="conversations' KV kept for follow-ups (0: off)")
    kv_pool_slots: int = Field(default=16, ge=0, le=128, description="conversations kept at most")
    memory_guard: bool = Field(default=True, description="refuse to start when model + KV cache do not fit")
    inference_url: str | None = Field(
        default=None, description="an OpenAI-compatible server to answer through (no model loaded)"
    )
    inference_api_key: SecretStr | None = Field(default=None, description="bearer key for INFERENCE_URL")
    inference_model: str | None = Field(default=None, description="model to ask INFERENCE_URL for")
    inference_timeout_s: float = Field(default=300.0, gt=0, description="seconds a server may stay silent")
    # Voice notes (the transcriber): a faster-whisper model name or a CTranslate2 model directory.
    whisper_model: str = Field(default="small", description="faster-whisper name (small, base...) or a path")
    whisper_threads: int = Field(default=1, ge=1, description="CPU threads of one transcription")
    whisper_beam_size: int = Field(default=1, ge=1, le=10)
    transcriber_name: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-asr")
    heartbeat_s: float | None = Field(
        default=None, gt=0, description="seconds between claim renewals; default: a quarter of the claim time"
    )

    def heartbeat_interval(self, claim_idle_ms: int) -> float:
        """Seconds between claim renewals: HEARTBEAT_S, or a quarter of QUEUE_CLAIM_IDLE_MS (at most 10).

        A heartbeat slower than a third of the claim time would let another worker take questions
        still being answered (after two late beats): such a configuration is refused.
        """
        claim_s = claim_idle_ms / 1000
        if self.heartbeat_s is None:
            return min(MAX_HEARTBEAT_S, claim_s / 4)
        if self.heartbeat_s > claim_s / 3:
            raise HeartbeatConfigError(
                f"HEARTBEAT_S={self.heartbeat_s:g} is too slow for QUEUE_CLAIM_IDLE_MS={claim_idle_ms}: "
                f"another worker would take questions still being answered; set HEARTBEAT_S to at most "
                f"{claim_s / 3:g} or leave it unset (it then follows the claim time)"
            )
        return self.heartbeat_s

    def resolved_model_path(self, data_dir: Path) -> Path:
        """MODEL_PATH, or the default file's place in the data directory."""
        return self.model_path or data_dir / "models" / self.model_file

    def expected_sha256(self) -> str | None:
        """The sha256 to check: the default file's when no MODEL_PATH is set."""
        return None if self.model_path else self.model_sha256
