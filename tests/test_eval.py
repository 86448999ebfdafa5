"""`meditron-bot eval` on the tiny random-weight gemma2 model, with real llama.cpp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from bot.cli import main
from inference.evaluation.data import LETTERS, Question, build_prompt, examples_path, read_questions
from inference.evaluation.run import EvalOptions, letter_continuations, run_eval, text_continuations
from inference.evaluation.scoring import Scorer, log_softmax
from inference.modelfile import file_sha256

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def scorer(tiny_model_path: Path) -> Iterator[Scorer]:
    """The tiny model loaded for scoring (one thread: the test machine is shared)."""
    with Scorer(tiny_model_path, n_ctx=1024, n_threads=1) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def reference(tiny_model_path: Path) -> Iterator[llama_cpp.Llama]:
    """The same model through llama-cpp-python's high-level class, keeping the logits of every position."""
    llama = llama_cpp.Llama(
        str(tiny_model_path), n_ctx=1024, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False
    )
    yield llama
    llama.close()


def _separately(llama: llama_cpp.Llama, prompt: Sequence[int], continuation: Sequence[int]) -> float:
    """log P(continuation | prompt) from one fresh full evaluation of prompt + continuation."""
    llama.reset()
    llama.eval([*prompt, *continuation])
    rows = llama.scores[len(prompt) - 1 : len(prompt) - 1 + len(continuation)]
    return float(sum(log_softmax(row)[token] for row, token in zip(rows, continuation, strict=True)))


def _examples() -> tuple[Question, ...]:
    """The shipped example questions."""
    return read_questions(examples_path()).questions


@pytest.mark.parametrize("kind", ["letters", "choice texts"])
def test_shared_prompt_scoring_equals_separate_full_evaluations(
    scorer: Scorer, reference: llama_cpp.Llama, kind: str
) -> None:
    for question in _examples()[:6]:
        prompt = build_prompt(question)
        continuations = (
            letter_continuations(len(question.choices)) if kind == "letters" else text_continuations(question)
        )
        before = scorer.decoded_tokens
        shared = scorer.loglikelihoods(prompt, continuations)
        prompt_tokens = scorer.tokenize(prompt, bos=True)
        tokens = [scorer.continuation_tokens(prompt_tokens, prompt, c) for c in continuations]
        # The prompt went through llama_decode once; only continuation tokens after the first were added.
        assert scorer.decoded_tokens - before == len(prompt_tokens) + sum(len(t) - 1 for t in tokens)
        assert shared.single_token == (kind == "letters")
        separate = [_separately(reference, prompt_tokens, t) for t in tokens]
        np.testing.assert_allclose(shared.logprobs, separate, rtol=0, atol=2e-3)
        assert shared.best == int(np.argmax(separate))


def _generic_file(path: Path, questions: Sequence[Question], answers: Sequence[int]) -> Path:
    """The questions in the generic layout with the given answer indices (written as letters)."""
    with path.open("w", encoding="utf-8") as handle:
        for question, answer in zip(questions, answers, strict=True):
            record = {
                "question": question.question,
                "choices": list(question.choices),
                "answer": LETTERS[answer],
            }
            handle.write(json.dumps(record) + "\n")
    return path


def test_answer_key_of_the_models_own_choices_scores_100_and_shifted_0(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    questions = _examples()
    options = EvalOptions(data=examples_path(), model=tiny_model_path, n_ctx=1024, n_threads=1)
    first = run_eval(options).models[0]
    own = [r.predicted for r in first.results]
    assert all(p is not None for p in own)
    picks = [int(p) for p in own if p is not None]
    mine = _generic_file(tmp_path / "own.jsonl", questions, picks)
    shifted = _generic_file(
        tmp_path / "shifted.jsonl",
        questions,
        [(p + 1) % len(q.choices) for p, q in zip(picks, questions, strict=True)],
    )
    perfect = run_eval(EvalOptions(data=mine, model=tiny_model_path, n_ctx=1024, n_threads=1)).models[0]
    assert [r.correct for r in perfect.results] == [True] * len(questions)
    wrong = run_eval(EvalOptions(data=shifted, model=tiny_model_path, n_ctx=1024, n_threads=1)).models[0]
    assert not any(r.correct for r in wrong.results)


def test_normalized_scoring_and_too_long_questions_are_counted(tiny_model_path: Path, tmp_path: Path) -> None:
    long_question = {"question": "why " * 400, "choices": ["a", "b"], "answer": 0}
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps(long_question) + "\n" + examples_path().read_text(encoding="utf-8"), encoding="utf-8"
    )
    options = EvalOptions(data=path, model=tiny_model_path, n_ctx=256, n_threads=1, normalized=True, limit=4)
    model = run_eval(options).models[0]
    assert model.results[0].skipped is not None and "256" in model.results[0].skipped
    assert all(r.predicted is not None and r.predicted_norm is not None for r in model.results[1:])
    assert len(model.scored) == 3


def _env(tmp_path: Path) -> dict[str, str]:
    """Environment of a CLI run: a private data directory, one thread."""
    return {**os.environ, "DATA_DIR": str(tmp_path / "data"), "N_THREADS": "1", "PYTHONPATH": str(REPO)}


def test_cli_json_and_compare_with_itself(tiny_model_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "questions.jsonl"
    data.write_text(examples_path().read_text(encoding="utf-8") + "this line is broken\n", encoding="utf-8")
    results = tmp_path / "results.json"
    command = [sys.executable, "-m", "bot.cli", "eval", "--data", str(data), "--model", str(tiny_model_path)]
    command += ["--compare", str(tiny_model_path), "--limit", "8", "--json", "--output", str(results)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=100, env=_env(tmp_path), check=False
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["data"]["bad_lines"] == 1 and document["data"]["bad_line_details"][0]["line"] == 15
    assert f"{data}:15: skipped" in done.stderr
    assert "ETA" in done.stderr  # the progress bar
    first, second = document["models"]
    assert first["questions"] == second["questions"] == 8
    assert first["correct"] == second["correct"]
    assert first["sha256"] == file_sha256(tiny_model_path)
    comparison = document["comparison"]
    assert comparison["only_first_right"] == comparison["only_second_right"] == 0
    assert comparison["mcnemar"]["exact_p"] == 1.0 and not comparison["significant_at_0.05"]
    saved = json.loads(results.read_text(encoding="utf-8"))
    assert saved["models"][0]["sha256"] == first["sha256"]
    assert len(saved["models"][0]["predictions"]) == 8


def test_cli_table_and_errors(
    tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("N_THREADS", "1")
    args = ["eval", "--data", "examples", "--model", str(tiny_model_path), "--limit", "3", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tiny-gemma2.gguf" in out and "95% CI" in out and "1-4 (detected" in out
    assert list((tmp_path / "data" / "evals").glob("eval-*.json"))
    assert main(["eval", "--data", str(tmp_path / "nope.jsonl"), "--model", str(tiny_model_path)]) == 2
    assert "question file not found" in capsys.readouterr().err
    assert main(["eval", "--data", "examples", "--model", str(tmp_path / "missing.gguf")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_cli_library_evaluates_the_model_with_and_without_the_passages(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    """eval --library: the same model twice on the same questions, the second with the library's passages."""
    guidelines = REPO / "tests" / "support" / "library" / "guidelines.md"
    env = _env(tmp_path)
    added = subprocess.run(
        [sys.executable, "-m", "bot.cli", "library", "add", str(guidelines)],
        capture_output=True, text=True, timeout=100, env=env, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    command = [sys.executable, "-m", "bot.cli", "eval", "--data", "examples", "--model", str(tiny_model_path)]
    command += ["--library", "--limit", "4", "--json", "--no-progress", "--output", str(tmp_path / "r.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=200, env=env, check=False)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    plain, grounded = document["models"]
    assert plain["questions"] == grounded["questions"] == 4
    assert "+ library" in grounded["path"] and "+ library" not in plain["path"]
    assert document["comparison"] is not None and "mcnemar" in document["comparison"]
    assert grounded["prompt_tokens_mean"] > plain["prompt_tokens_mean"]  # passages went with the questions
    refused = subprocess.run(
        [*command[:7], "--compare", str(tiny_model_path), "--library"],
        capture_output=True, text=True, timeout=100, env=env, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "--library" in refused.stderr
