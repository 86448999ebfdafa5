"""Cold start: the instruction prefix's KV state is saved once, loaded at start, and never loaded stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inference.batch import BatchEngine
from inference.prefix_state import prefix_state_key, prefix_state_path
from inference.prompt import build_prompt, preamble_prompt
from tests.support.stack import Stack

QUESTION = "Fever and fast breathing in a 3 year old?"


def _engine(model: Path, n_ctx: int = 1024) -> BatchEngine:
    return BatchEngine(model, n_ctx=n_ctx, n_threads=2, max_sequences=2)


def test_saved_state_is_loaded_instead_of_evaluated(tiny_model_path: Path, tmp_path: Path) -> None:
    """A second engine loads the saved prefix (no token decoded for it) and answers exactly the same."""
    state = tmp_path / "kv" / "prefix.state"
    with _engine(tiny_model_path) as first:
        tokens = first.set_prefix(preamble_prompt(), state)
        assert first.prefix_source == "evaluated, saved" and state.is_file()
        assert first.stats.tokens == tokens
        expected = first.generate(build_prompt(QUESTION), max_tokens=12)
    with _engine(tiny_model_path) as second:
        assert second.set_prefix(preamble_prompt(), state) == tokens
        assert second.prefix_source == "loaded" and second.prefix_tokens == tokens
        assert second.stats.tokens == 0  # nothing evaluated for the prefix
        answer = second.generate(build_prompt(QUESTION), max_tokens=12)
    assert second.stats.prefix_tokens_saved == tokens
    assert answer.tokens == expected.tokens and answer.text == expected.text


@pytest.mark.parametrize("damage", ["truncated", "other prefix"])
def test_a_state_that_does_not_fit_is_evaluated_and_rewritten(
    tiny_model_path: Path, tmp_path: Path, damage: str
) -> None:
    """A truncated file, or one holding other tokens, is not used: the prefix is evaluated and saved."""
    state = tmp_path / "prefix.state"
    saved = preamble_prompt() if damage == "truncated" else "<start_of_turn>user\nSomething else.\n\n"
    with _engine(tiny_model_path) as engine:
        engine.set_prefix(saved, state)
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with _engine(tiny_model_path) as engine:
        tokens = engine.set_prefix(preamble_prompt(), state)
        assert engine.prefix_source == "evaluated, saved" and engine.stats.tokens == tokens
    with _engine(tiny_model_path) as engine:
        engine.set_prefix(preamble_prompt(), state)
        assert engine.prefix_source == "loaded"


def test_key_follows_model_prompt_version_and_context() -> None:
    """Each thing that makes a saved state valid is in its key."""
    base: dict[str, Any] = {
        "model_sha256": "a" * 64,
        "prompt_version": "1",
        "prefix": preamble_prompt(),
        "n_ctx": 4096,
        "max_sequences": 4,
    }
    changes = {
        "model_sha256": "b" * 64,
        "prompt_version": "2",
        "prefix": preamble_prompt() + " ",
        "n_ctx": 2048,
        "max_sequences": 8,
    }
    key = prefix_state_key(**base)
    assert prefix_state_key(**base) == key
    assert len({key, *(prefix_state_key(**{**base, name: value}) for name, value in changes.items())}) == 6
    assert prefix_state_path(Path("/data"), key) == Path(f"/data/kv/prefix-{key}.state")


async def test_restarted_worker_loads_the_state_another_context_evaluates(
    stack: Stack, worker_process: Any, eot_model_path: Path
) -> None:
    """Worker processes on one DATA_DIR: the first saves, a restart loads; another context or model
    evaluates (and saves its own state)."""

    async def source(**env: str) -> str:
        worker = await worker_process(**env)
        line = await worker.wait_for_line("prefix.ready")
        await worker.stop()
        return "loaded" if "loaded" in line else "evaluated, saved" if "evaluated, saved" in line else line

    assert await source(WORKER_NAME="w1") == "evaluated, saved"
    assert await source(WORKER_NAME="w2") == "loaded"
    assert await source(WORKER_NAME="w3", N_CTX="1024") == "evaluated, saved"
    assert await source(WORKER_NAME="w4", MODEL_PATH=str(eot_model_path)) == "evaluated, saved"
    assert await source(WORKER_NAME="w5", N_CTX="1024") == "loaded"
    assert len(list((stack.storage.data_dir / "kv").glob("prefix-*.state"))) == 3


def test_bench_cold_start_prints_the_figures(
    tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bench --cold-start --json``: warm, restarted on the state, restarted evaluating (not judged)."""
    from bot.cli import main

    code = main(["bench", "--model", str(tiny_model_path), "--cold-start", "--json", "--ctx", "1024"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["prefix_tokens"] > 200 and report["state_bytes"] > 0
    for key in ("warm_ttft_s", "restarted_ttft_s", "state_load_s", "evaluated_ttft_s", "prefix_evaluate_s"):
        assert report[key] > 0
    assert report["restarted_ttft_s"] > report["state_load_s"] and report["target"] == 1.2
    assert report["ratio"] > 0 and report["met"] == (report["ratio"] <= 1.2)  # the median of paired rounds
