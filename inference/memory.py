"""The memory guard: refuse, before loading, a model + KV cache that would not fit in memory.

The estimate is what llama.cpp allocates for a :class:`~inference.batch.BatchEngine`: the model file
(mapped or read, its pages end up resident either way), the F16 KV cache of ``n_ctx`` cells for
every layer (Gemma2's sliding-window layers get a full-size cache too), the compute buffers of one
``n_batch`` step, one row of logits per sequence, and a fixed allowance for the process itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference.errors import MemoryBudgetError
from inference.modelfile import read_header

KV_BYTES_PER_VALUE = 2
"""The KV cache holds F16 values."""
PROCESS_OVERHEAD = 160 * 2**20
"""Python, the libraries and llama.cpp's small buffers (measured: about 120 MiB)."""
DEFAULT_VOCAB = 262_144
_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs to know of a model, from its GGUF header."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    key_length: int
    value_length: int
    n_vocab: int = DEFAULT_VOCAB


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes a configuration needs, by part."""

    model_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int = PROCESS_OVERHEAD

    @property
    def total(self) -> int:
        """Everything together."""
        return self.model_bytes + self.kv_bytes + self.compute_bytes + self.overhead_bytes


def _int(metadata: dict[str, object], key: str, default: int) -> int:
    """An integer metadata value, or ``default`` when absent or not an integer."""
    value = metadata.get(key, default)
    return value if isinstance(value, int) and value > 0 else default


def model_shape(path: Path) -> ModelShape:
    """The shape of the model in ``path`` (validated first)."""
    header = read_header(path)
    meta, arch = header.fields, header.architecture
    n_embd = _int(meta, f"{arch}.embedding_length", 4096)
    n_head = _int(meta, f"{arch}.attention.head_count", 32)
    head_dim = n_embd // n_head
    return ModelShape(
        n_layer=_int(meta, f"{arch}.block_count", 32),
        n_embd=n_embd,
        n_ff=_int(meta, f"{arch}.feed_forward_length", 4 * n_embd),
        n_head=n_head,
        n_head_kv=_int(meta, f"{arch}.attention.head_count_kv", n_head),
        key_length=_int(meta, f"{arch}.attention.key_length", head_dim),
        value_length=_int(meta, f"{arch}.attention.value_length", head_dim),
        n_vocab=_int(meta, f"{arch}.vocab_size", DEFAULT_VOCAB),
    )


def kv_bytes_per_cell(shape: ModelShape) -> int:
    """KV cache bytes of one token in every layer."""
    per_layer = shape.n_head_kv * (shape.key_length + shape.value_length) * KV_BYTES_PER_VALUE
    return shape.n_layer * per_layer


def plan_memory(path: Path, *, n_ctx: int, n_batch: int, max_sequences: int) -> MemoryPlan:
    """Bytes ``path`` needs with a KV cache of ``n_ctx`` cells and ``max_sequences`` sequences."""
    shape = model_shape(path)
    scores = n_batch * min(n_ctx, 4096 + n_batch) * shape.n_head * 4  # attention scores of one step
    activations = n_batch * (3 * shape.n_ff + 8 * shape.n_embd) * 4
    logits = max_sequences * shape.n_vocab * 4
    return MemoryPlan(
        model_bytes=path.stat().st_size,
        kv_bytes=n_ctx * kv_bytes_per_cell(shape),
        compute_bytes=scores + activations + logits,
    )


def _meminfo_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None when unknown)."""
    try:
        for line in _MEMINFO.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """What the cgroup (v2) memory limit still allows, in bytes (None when unlimited or unknown)."""
    try:
        limit = (_CGROUP / "memory.max").read_text(encoding="ascii").strip()
        if limit == "max":
            return None
        return int(limit) - int((_CGROUP / "memory.current").read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes this process can still use: MemAvailable, or less under a container limit."""
    known = [value for value in (_meminfo_available(), _cgroup_available()) if value is not None]
    return min(known) if known else None


def check_memory(
    path: Path, *, n_ctx: int, n_batch: int, max_sequences: int, available: int | None = None
) -> MemoryPlan:
    """The plan for this configuration; MemoryBudgetError when it needs more than is available.

    ``available`` defaults to :func:`available_memory`; when that is unknown nothing is refused.
    """
    plan = plan_memory(path, n_ctx=n_ctx, n_batch=n_batch, max_sequences=max_sequences)
    budget = available_memory() if available is None else available
    if budget is not None and plan.total > budget:
        raise MemoryBudgetError(path, plan.total, budget)
    return plan
