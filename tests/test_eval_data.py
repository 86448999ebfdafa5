"""`meditron-bot eval` without a model: question files, statistics, the progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from inference.errors import EvalDataError
from inference.evaluation.data import build_prompt, examples_path, read_questions, select
from inference.evaluation.report import ProgressBar
from inference.evaluation.stats import exact_binomial_two_sided, mcnemar, wilson_interval


def _write(path: Path, records: list[object]) -> Path:
    """A JSON-lines file of ``records`` (strings are written as raw lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _medmcqa(cop: int, **extra: object) -> dict[str, object]:
    """A MedMCQA-layout record whose correct option is ``cop``."""
    return {"question": "Which one?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop, **extra}


def test_medmcqa_cop_1_to_4_is_detected_and_mapped(tmp_path: Path) -> None:
    data = read_questions(_write(tmp_path / "dev.json", [_medmcqa(1), _medmcqa(4), _medmcqa(2)]))
    assert data.cop_numbering is not None and data.cop_numbering.startswith("1-4")
    assert [q.answer for q in data.questions] == [0, 3, 1]


def test_medmcqa_cop_0_to_3_is_detected_and_mapped(tmp_path: Path) -> None:
    data = read_questions(_write(tmp_path / "hf.jsonl", [_medmcqa(1), _medmcqa(0), _medmcqa(3)]))
    assert data.cop_numbering is not None and data.cop_numbering.startswith("0-3")
    assert [q.answer for q in data.questions] == [1, 0, 3]


def test_medmcqa_ambiguous_numbering_needs_cop_base(tmp_path: Path) -> None:
    path = _write(tmp_path / "few.jsonl", [_medmcqa(1), _medmcqa(2)])
    with pytest.raises(EvalDataError, match="--cop-base"):
        read_questions(path)
    assert [q.answer for q in read_questions(path, cop_base="1").questions] == [0, 1]
    assert [q.answer for q in read_questions(path, cop_base="0").questions] == [1, 2]
    mixed = _write(tmp_path / "mixed.jsonl", [_medmcqa(0), _medmcqa(4)])
    with pytest.raises(EvalDataError, match="both 0 and 4"):
        read_questions(mixed)


def test_bad_lines_are_reported_with_line_numbers_and_counted(tmp_path: Path) -> None:
    good_generic = {"question": "Q?", "choices": ["x", "y", "z"], "answer": "c", "subject": "S"}
    path = _write(
        tmp_path / "bad.jsonl",
        [
            _medmcqa(4),  # 1 good
            "{not json",  # 2
            "",  # 3 blank: ignored, not counted
            _medmcqa(-1),  # 4 the test split's "no answer"
            "[1, 2]",  # 5 not an object
            {"question": "Q?", "choices": ["x", "y"], "answer": 5},  # 6 answer out of range
            {"question": "   ", "choices": ["x", "y"], "answer": 0},  # 7 empty question
            {"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d"},  # 8 no cop
            {"text": "neither layout"},  # 9
            good_generic,  # 10 good
        ],
    )
    with path.open("ab") as handle:
        handle.write(b'{"question": "\xff"}\n')  # 11 not UTF-8
    data = read_questions(path)
    assert [q.line for q in data.questions] == [1, 10]
    assert data.questions[1].answer == 2 and data.questions[1].subject == "S"
    assert [b.line for b in data.bad_lines] == [2, 4, 5, 6, 7, 8, 9, 11]
    reasons = {b.line: b.reason for b in data.bad_lines}
    assert "not valid JSON" in reasons[2]
    assert "no answer key" in reasons[4]
    assert "cop" in reasons[8]
    assert "UTF-8" in reasons[11]
    assert data.layouts == {"medmcqa": 1, "generic": 1}


def test_a_file_without_usable_questions_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="line 1"):
        read_questions(_write(tmp_path / "none.jsonl", ["{oops"]))
    with pytest.raises(EvalDataError, match="not found"):
        read_questions(tmp_path / "missing.jsonl")


def test_shipped_examples_are_marked_and_readable() -> None:
    path = examples_path()
    data = read_questions(path)
    assert len(data.questions) >= 10 and not data.bad_lines
    for line in path.read_text(encoding="utf-8").splitlines():
        assert json.loads(line)["source"] == "meditron-bot examples, not a benchmark"


def test_prompt_is_the_harness_layout() -> None:
    question = read_questions(examples_path()).questions[0]
    prompt = build_prompt(question)
    assert prompt.startswith(f"Question: {question.question}\nChoices:\nA. {question.choices[0]}\nB. ")
    assert prompt.endswith(f"\nD. {question.choices[3]}\nAnswer:")


def test_shuffle_and_limit_are_reproducible() -> None:
    questions = read_questions(examples_path()).questions
    first = select(questions, limit=5, shuffle_seed=7)
    assert first == select(questions, limit=5, shuffle_seed=7)
    assert len(first) == 5 and first != list(questions[:5])
    assert select(questions, limit=None, shuffle_seed=None) == list(questions)


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_mcnemar_exact_and_chi_square() -> None:
    assert mcnemar(0, 0).exact_p == 1.0 and not mcnemar(0, 0).significant()
    assert mcnemar(3, 3).exact_p == 1.0
    assert exact_binomial_two_sided(0, 6) == pytest.approx(2 / 64)
    result = mcnemar(10, 2)
    assert result.exact_p == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert result.chi_square == pytest.approx(49 / 12)
    assert result.chi_square_p == pytest.approx(0.0433, abs=1e-4)
    assert result.significant()
    assert exact_binomial_two_sided(3000, 3100) == pytest.approx(0.2053, abs=2e-3)


def test_progress_bar_counts_questions_with_rate_and_eta() -> None:
    stream = io.StringIO()
    bar = ProgressBar(10, "eval m.gguf", stream=stream)
    for done in range(1, 11):
        bar.update(done)
    last = stream.getvalue().split("\r")[-1].strip()  # tqdm redraws its line in place
    assert last.startswith("eval m.gguf [####") and "10/10 100%" in last
    assert "q/s" in last and "ETA 00:00" in last
    bar.update(10)  # a closed bar ignores further updates
    assert stream.getvalue().split("\r")[-1].strip() == last
