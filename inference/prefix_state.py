"""The instruction prefix's KV state on disk (DATA_DIR/kv): saved once, loaded at start instead of evaluated.

A state file is named by a key of everything that makes its bytes valid: the model file's sha256,
the prompt version and the instruction text, the context settings (cells, sequences, the unified
full-size SWA cache) and the llama-cpp-python version. Any change gives another name, so a stale
state is never loaded; a file that does not load (truncated, or its tokens differ) is evaluated
again and rewritten.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

STATE_DIR = "kv"


def prefix_state_key(
    *, model_sha256: str, prompt_version: str, prefix: str, n_ctx: int, max_sequences: int
) -> str:
    """The hex key of a prefix state for this model, prompt and context."""
    import llama_cpp

    material = {
        "model_sha256": model_sha256,
        "prompt_version": prompt_version,
        "prefix_sha256": hashlib.sha256(prefix.encode("utf-8")).hexdigest(),
        "n_ctx": n_ctx,
        "n_seq_max": max_sequences + 1,
        "cache": "unified,swa_full,f16",
        "llama_cpp_python": llama_cpp.__version__,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode("ascii")).hexdigest()[:32]


def prefix_state_path(data_dir: Path, key: str) -> Path:
    """Where the state of ``key`` is kept."""
    return data_dir / STATE_DIR / f"prefix-{key}.state"
