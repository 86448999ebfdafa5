"""The engine on real llama.cpp with the tiny random-weight gemma2 file (no mocks)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import llama_cpp
import pytest
from gguf import GGUFWriter

from inference.engine import Engine, GenerationResult
from inference.errors import InferenceError, ModelCorruptError, ModelNotFoundError, PromptTooLongError
from inference.modelfile import validate_gguf
from inference.prompt import build_prompt
from inference.synthetic import FIRST_BYTE_ID, TINY, write_gemma2_gguf

QUESTIONS = [
    "What dose of paracetamol for a child of 12 kg with fever?",
    "Signs of severe dehydration in a baby?",
    "Combien de SRO pour un enfant avec diarrhée ?",
]


@pytest.fixture
def engine(tiny_model_path: Path) -> Iterator[Engine]:
    """A fresh engine on the tiny model (one thread: the tiny model gains nothing from more, and
    spinning worker threads make tests slow on a busy machine)."""
    with Engine(tiny_model_path, n_ctx=1024, n_threads=1) as loaded:
        yield loaded


def _stop_after(calls: int) -> Callable[[], bool]:
    """A should_stop callback that answers True from its ``calls``-th call on."""
    count = 0

    def should_stop() -> bool:
        nonlocal count
        count += 1
        return count >= calls

    return should_stop


def test_tiny_model_loads_and_generates(engine: Engine) -> None:
    prompt = build_prompt(QUESTIONS[0])
    result = engine.generate(prompt, max_tokens=12)
    assert isinstance(result, GenerationResult)
    assert isinstance(result.text, str)
    assert result.text
    assert result.prompt_tokens == engine.count_tokens(prompt)
    assert result.first_token_at is not None
    assert result.started_at <= result.first_token_at <= result.finished_at
    assert engine.n_ctx == 1024
    assert engine.architecture == "gemma2"


@pytest.mark.parametrize("max_tokens", [1, 7, 40])
def test_random_weights_stop_at_exactly_max_tokens(engine: Engine, max_tokens: int) -> None:
    result = engine.generate(build_prompt(QUESTIONS[1]), max_tokens=max_tokens)
    assert result.stop_reason == "length"
    assert result.completion_tokens == max_tokens


def test_lone_utf8_lead_bytes_forever_still_stop_at_the_budget(tmp_path: Path) -> None:
    lead_byte = FIRST_BYTE_ID + 0xE6  # <0xE6> starts a 3-byte UTF-8 character
    path = write_gemma2_gguf(tmp_path / "bytes.gguf", TINY, favour_token_id=lead_byte)
    with Engine(path, n_ctx=512) as engine:
        result = engine.generate(build_prompt("hi"), max_tokens=9)
    assert result.stop_reason == "length"
    assert result.completion_tokens == 9
    assert set(result.text) == {"\ufffd"}


def test_greedy_output_is_identical_and_survives_prefix_reuse(engine: Engine) -> None:
    prompts = [build_prompt(q) for q in QUESTIONS[:2]] + ["The patient"]
    first = [engine.generate(p, max_tokens=16).text for p in prompts]
    again = [engine.generate(p, max_tokens=16).text for p in prompts]  # other prompts between
    repeated = [engine.generate(p, max_tokens=16).text for p in reversed(prompts)][::-1]
    assert first == again == repeated
    assert len(set(first)) > 1  # the outputs depend on the prompt


def test_fresh_engine_gives_the_same_greedy_output(tiny_model_path: Path, engine: Engine) -> None:
    prompt = build_prompt(QUESTIONS[2], "fr")
    engine.generate(build_prompt(QUESTIONS[0]), max_tokens=5)  # leave a shared prefix cached
    warm = engine.generate(prompt, max_tokens=24)
    with Engine(tiny_model_path, n_ctx=1024) as cold_engine:  # default threads
        cold = cold_engine.generate(prompt, max_tokens=24)
    assert warm.text == cold.text


def test_shared_preamble_is_not_evaluated_again(engine: Engine) -> None:
    first = engine.generate(build_prompt(QUESTIONS[0]), max_tokens=2)
    context = engine._llama.ctx  # white-box: llama.cpp's own count of evaluated prompt tokens
    llama_cpp.llama_perf_context_reset(context)
    second = engine.generate(build_prompt(QUESTIONS[1]), max_tokens=2)
    evaluated = llama_cpp.llama_perf_context(context).n_p_eval
    assert first.prompt_tokens > 200
    assert 0 < evaluated < second.prompt_tokens / 4


def test_should_stop_cancels_between_tokens(engine: Engine) -> None:
    result = engine.generate(build_prompt(QUESTIONS[0]), max_tokens=50, should_stop=_stop_after(4))
    assert result.stop_reason == "cancelled"
    assert result.completion_tokens == 3  # one check before the prompt, then one per token


def test_should_stop_before_start_skips_the_prompt(engine: Engine) -> None:
    result = engine.generate(build_prompt(QUESTIONS[0]), max_tokens=50, should_stop=lambda: True)
    assert result.stop_reason == "cancelled"
    assert result.completion_tokens == 0
    assert result.first_token_at is None


def test_cancel_from_another_thread(engine: Engine) -> None:
    cancel = threading.Event()
    tokens_seen = 0

    def should_stop() -> bool:
        nonlocal tokens_seen
        tokens_seen += 1
        if tokens_seen == 6:
            cancel.set()
        return cancel.is_set()

    results: list[GenerationResult] = []
    worker = threading.Thread(
        target=lambda: results.append(
            engine.generate(build_prompt(QUESTIONS[1]), max_tokens=500, should_stop=should_stop)
        )
    )
    worker.start()
    worker.join(timeout=60)
    assert results
    assert results[0].stop_reason == "cancelled"
    assert results[0].completion_tokens == 5


def test_generation_stops_at_end_of_turn(eot_model_path: Path) -> None:
    with Engine(eot_model_path, n_ctx=512) as engine:
        result = engine.generate(build_prompt(QUESTIONS[0]), max_tokens=20)
    assert result.stop_reason == "stop"
    assert result.completion_tokens == 0
    assert result.text == ""


def test_prompt_that_does_not_fit_is_refused(engine: Engine) -> None:
    long_question = "patient " * 900
    with pytest.raises(PromptTooLongError, match="tokens") as too_long:
        engine.generate(build_prompt(long_question), max_tokens=100)
    assert too_long.value.limit == engine.n_ctx - 100
    prompt = build_prompt("short")
    with pytest.raises(PromptTooLongError, match="answer budget"):
        engine.generate(prompt, max_tokens=engine.n_ctx - engine.count_tokens(prompt) + 1)
    fits = engine.generate(prompt, max_tokens=4)
    assert fits.completion_tokens == 4


def test_zero_max_tokens_is_rejected(engine: Engine) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        engine.generate("hello", max_tokens=0)


def test_count_tokens_includes_bos_and_parses_control_tokens(engine: Engine) -> None:
    assert engine.count_tokens("") == 1
    assert engine.count_tokens("<end_of_turn>") == 2


def test_closed_engine_refuses_to_generate(tiny_model_path: Path) -> None:
    engine = Engine(tiny_model_path, n_ctx=256)
    engine.close()
    engine.close()  # idempotent
    assert engine.n_ctx == 256
    with pytest.raises(InferenceError, match="closed"):
        engine.generate("hello", max_tokens=2)


def test_corrupt_file_raises_model_corrupt_error(corrupt_model_path: Path) -> None:
    with pytest.raises(ModelCorruptError) as caught:
        Engine(corrupt_model_path)
    assert str(corrupt_model_path) in str(caught.value)
    assert caught.value.path == corrupt_model_path


def test_truncated_file_message_says_truncated(truncated_model_path: Path) -> None:
    with pytest.raises(ModelCorruptError, match="truncated"):
        validate_gguf(truncated_model_path)


@pytest.mark.parametrize("keep", [3, 24, 200, 5000])
def test_file_cut_inside_the_header_is_corrupt(tiny_model_path: Path, tmp_path: Path, keep: int) -> None:
    path = tmp_path / f"cut{keep}.gguf"
    path.write_bytes(tiny_model_path.read_bytes()[:keep])
    with pytest.raises(ModelCorruptError, match=re.escape(str(path))):
        Engine(path)


def test_missing_file_raises_model_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError, match=r"nope\.gguf"):
        Engine(missing)
    with pytest.raises(ModelNotFoundError):
        Engine(tmp_path)  # a directory


def _header_only_gguf(path: Path, arch: str) -> Path:
    """A well-formed GGUF with only an architecture name: no hyper-parameters, no tensors."""
    writer = GGUFWriter(path, arch)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path


def test_unknown_architecture_is_corrupt(tmp_path: Path) -> None:
    path = _header_only_gguf(tmp_path / "alien.gguf", "no-such-arch")
    with pytest.raises(ModelCorruptError, match="unknown model architecture 'no-such-arch'"):
        Engine(path)


def test_gguf_that_llama_cpp_rejects_is_corrupt_with_its_reason(tmp_path: Path) -> None:
    path = _header_only_gguf(tmp_path / "empty-gemma2.gguf", "gemma2")
    with pytest.raises(ModelCorruptError) as caught:
        Engine(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: llama.cpp could not load the model")
    assert "gemma2.context_length" in message  # llama.cpp's own reason, not a generic failure
