"""The memory guard: a configuration that cannot fit is refused before the model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.errors import MemoryBudgetError
from inference.memory import available_memory, check_memory, kv_bytes_per_cell, model_shape, plan_memory
from inference.synthetic import TINY


def test_kv_cache_estimate_follows_the_model_shape(tiny_model_path: Path) -> None:
    shape = model_shape(tiny_model_path)
    assert (shape.n_layer, shape.n_head_kv, shape.key_length) == (TINY.n_layer, TINY.n_head_kv, TINY.head_dim)
    per_cell = TINY.n_layer * TINY.n_head_kv * 2 * TINY.head_dim * 2  # K and V, F16
    assert kv_bytes_per_cell(shape) == per_cell
    small = plan_memory(tiny_model_path, n_ctx=1024, n_batch=64, max_sequences=1)
    large = plan_memory(tiny_model_path, n_ctx=4096, n_batch=64, max_sequences=1)
    assert small.model_bytes == tiny_model_path.stat().st_size
    assert large.kv_bytes - small.kv_bytes == 3072 * per_cell
    assert small.total < large.total


def test_a_configuration_that_fits_passes(tiny_model_path: Path) -> None:
    plan = check_memory(tiny_model_path, n_ctx=2048, n_batch=512, max_sequences=4)
    available = available_memory()
    assert available is not None
    assert plan.total < available


def test_a_kv_cache_larger_than_available_memory_is_refused(tiny_model_path: Path) -> None:
    available = available_memory()
    assert available is not None
    cells = 2 * available // kv_bytes_per_cell(model_shape(tiny_model_path))
    with pytest.raises(MemoryBudgetError) as caught:
        check_memory(tiny_model_path, n_ctx=cells, n_batch=512, max_sequences=4)
    error = caught.value
    assert error.needed_bytes > error.available_bytes
    assert error.path == tiny_model_path
    assert "N_CTX" in str(error)
    assert "GiB" in str(error)


def test_an_explicit_budget_is_respected(tiny_model_path: Path) -> None:
    plan = plan_memory(tiny_model_path, n_ctx=2048, n_batch=512, max_sequences=4)
    check_memory(tiny_model_path, n_ctx=2048, n_batch=512, max_sequences=4, available=plan.total)
    with pytest.raises(MemoryBudgetError):
        check_memory(tiny_model_path, n_ctx=2048, n_batch=512, max_sequences=4, available=plan.total - 1)
