"""Model-file fixtures: a tiny random-weight gemma2 GGUF and broken copies of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.synthetic import END_OF_TURN_ID, TINY, Gemma2Shape, write_gemma2_gguf

SLOWER = Gemma2Shape(
    n_layer=4, n_embd=512, n_ff=1024, n_head=8, n_head_kv=4, head_dim=64,
    n_vocab=1024, n_ctx=4096, sliding_window=1024,
)  # fmt: skip
"""About eight times TINY's work per token: answers that last seconds on any CPU."""


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few-MB F16 gemma2 GGUF with random weights and a Gemma-like tokenizer (written once)."""
    return write_gemma2_gguf(tmp_path_factory.mktemp("models") / "tiny-gemma2.gguf", TINY)


@pytest.fixture(scope="session")
def slower_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gemma2 GGUF with random weights, wider and deeper than the tiny one (written once)."""
    return write_gemma2_gguf(tmp_path_factory.mktemp("models") / "slower-gemma2.gguf", SLOWER)


@pytest.fixture(scope="session")
def chatty_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny gemma2 GGUF with sharp attention: its greedy output depends on the prompt (not one token
    repeated), so equality of cached and recomputed follow-ups means something."""
    return write_gemma2_gguf(
        tmp_path_factory.mktemp("models") / "tiny-gemma2-chatty.gguf", TINY, qk_scale=0.2
    )


@pytest.fixture(scope="session")
def eot_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny gemma2 GGUF whose weights make greedy decoding emit ``<end_of_turn>`` at once."""
    path = tmp_path_factory.mktemp("models") / "tiny-gemma2-eot.gguf"
    return write_gemma2_gguf(path, TINY, favour_token_id=END_OF_TURN_ID)


@pytest.fixture
def truncated_model_path(tiny_model_path: Path, tmp_path: Path) -> Path:
    """The tiny model cut off in the middle of its tensor data."""
    data = tiny_model_path.read_bytes()
    path = tmp_path / "truncated.gguf"
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


@pytest.fixture
def garbage_model_path(tmp_path: Path) -> Path:
    """A file that is not GGUF at all."""
    path = tmp_path / "garbage.gguf"
    path.write_bytes(b"<html>404 Not Found</html>\n" * 100)
    return path


@pytest.fixture(params=["truncated", "garbage"])
def corrupt_model_path(request: pytest.FixtureRequest) -> Path:
    """A truncated copy of the tiny model, then a non-GGUF file."""
    return Path(request.getfixturevalue(f"{request.param}_model_path"))
