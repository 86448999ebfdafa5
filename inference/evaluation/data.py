"""Multiple-choice question files (JSON lines): the MedMCQA field layout and a simple generic one.

- MedMCQA, as its authors distribute ``train.json`` / ``dev.json`` (one JSON object a line):
  ``question``, ``opa`` .. ``opd``, ``cop`` (the correct option), optional ``subject_name``, ``id``.
  The authors' files number ``cop`` 1-4; the Hugging Face copy numbers it 0-3. The numbering is
  detected over the whole file (a 0 means 0-3, a 4 means 1-4) and reported.
- Generic: ``question``, ``choices`` (a list of 2..10 texts), ``answer`` (0-based index or a letter
  "A".."J"), optional ``subject``, ``id``.

A line that is not a usable question is reported with its line number and counted, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from inference.errors import EvalDataError

MAX_CHOICES = 10
LETTERS = string.ascii_uppercase[:MAX_CHOICES]
MEDMCQA_OPTIONS = ("opa", "opb", "opc", "opd")
EXAMPLES_NAME = "examples"
"""``--data examples`` means the question file shipped with the package."""

CopBase = Literal["auto", "0", "1"]


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; ``answer`` is a 0-based index into ``choices``."""

    line: int
    qid: str
    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str | None
    layout: str


@dataclass(frozen=True)
class BadLine:
    """A line that was skipped, and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class QuestionFile:
    """The usable questions of a file, what was skipped, and what was detected."""

    path: Path
    sha256: str
    questions: tuple[Question, ...]
    bad_lines: tuple[BadLine, ...]
    layouts: dict[str, int] = field(default_factory=dict)
    cop_numbering: str | None = None
    """``"1-4"`` or ``"0-3"`` when the file has MedMCQA-layout lines, with how it was decided."""


@dataclass(frozen=True)
class _Raw:
    """A parsed line before MedMCQA's ``cop`` numbering is known (answer may still be 1-based)."""

    question: Question
    cop: int | None = None


class _BadLineError(ValueError):
    """The line is not a usable question (message: why)."""


def examples_path() -> Path:
    """The example question file shipped with meditron-bot (examples, not a benchmark)."""
    return Path(str(resources.files("inference.data").joinpath("eval_examples.jsonl")))


def resolve_data_path(name: str | Path) -> Path:
    """``examples`` means the shipped file; anything else is a path."""
    return examples_path() if str(name) == EXAMPLES_NAME else Path(name)


def _text(record: dict[str, Any], key: str) -> str:
    """A required text field (numbers are accepted as their text)."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _BadLineError(f"{key!r} is missing or not text")
    return str(value)


def _subject(record: dict[str, Any], *keys: str) -> str | None:
    """The first non-empty subject field."""
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _question_text(record: dict[str, Any]) -> str:
    """The question, which must not be blank."""
    text = _text(record, "question")
    if not text.strip():
        raise _BadLineError("'question' is empty")
    return text


def _medmcqa(record: dict[str, Any], line: int) -> _Raw:
    """A MedMCQA-layout line; the answer is filled in once the numbering is known."""
    choices = tuple(_text(record, key) for key in MEDMCQA_OPTIONS)
    cop = record.get("cop")
    if isinstance(cop, str) and cop.strip().lstrip("-").isdigit():
        cop = int(cop)
    if isinstance(cop, bool) or not isinstance(cop, int):
        raise _BadLineError("'cop' (the correct option) is missing or not a number")
    if not 0 <= cop <= len(choices):
        raise _BadLineError(f"'cop' is {cop}: no answer key (0-3 or 1-4 expected)")
    qid = str(record.get("id") or f"line {line}")
    subject = _subject(record, "subject_name", "subject")
    question = Question(line, qid, _question_text(record), choices, -1, subject, "medmcqa")
    return _Raw(question, cop)


def _generic_answer(value: Any, n_choices: int) -> int:
    """A 0-based answer index from an index or a letter."""
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS:
        index = LETTERS.index(value.strip().upper())
    elif isinstance(value, int) and not isinstance(value, bool):
        index = value
    else:
        raise _BadLineError("'answer' must be a 0-based index or a letter A..J")
    if not 0 <= index < n_choices:
        raise _BadLineError(f"'answer' {value!r} is not one of the {n_choices} choices")
    return index


def _generic(record: dict[str, Any], line: int) -> _Raw:
    """A generic-layout line."""
    raw = record.get("choices")
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_CHOICES:
        raise _BadLineError(f"'choices' must be a list of 2 to {MAX_CHOICES} texts")
    choices = tuple(_text({"choice": item}, "choice") for item in raw)
    answer = _generic_answer(record.get("answer"), len(choices))
    qid = str(record.get("id") or f"line {line}")
    subject = _subject(record, "subject", "subject_name")
    return _Raw(Question(line, qid, _question_text(record), choices, answer, subject, "generic"))


def parse_line(text: str, line: int) -> _Raw:
    """One JSON line in either layout; raise _BadLineError when unusable."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadLineError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise _BadLineError("not a JSON object")
    if "choices" in record:
        return _generic(record, line)
    if any(key in record for key in MEDMCQA_OPTIONS):
        return _medmcqa(record, line)
    raise _BadLineError("neither layout: no 'choices' list and no 'opa'..'opd' options")


def _cop_base(values: Counter[int], forced: CopBase, path: Path) -> tuple[int, str]:
    """The first number of MedMCQA's ``cop`` scale (0 or 1) and how it was decided."""
    if forced != "auto":
        base = int(forced)
        return base, f"{base}-{base + 3} (as told by --cop-base)"
    if 0 in values and 4 in values:
        raise EvalDataError(path, f"{path}: 'cop' takes both 0 and 4: cannot tell 0-3 from 1-4")
    if 4 in values:
        return 1, "1-4 (detected: a 4 occurs; the MedMCQA authors' numbering)"
    if 0 in values:
        return 0, "0-3 (detected: a 0 occurs; the Hugging Face numbering)"
    raise EvalDataError(
        path, f"{path}: 'cop' is only ever 1-3, so 0-3 and 1-4 cannot be told apart; pass --cop-base 0 or 1"
    )


def _settle(raws: Sequence[_Raw], forced: CopBase, path: Path) -> tuple[list[Question], list[BadLine], str]:
    """Apply the MedMCQA numbering: 0-based answers, out-of-range ``cop`` values become bad lines."""
    cops = Counter(raw.cop for raw in raws if raw.cop is not None)
    if not cops:
        return [raw.question for raw in raws], [], ""
    base, note = _cop_base(cops, forced, path)
    questions, bad = [], []
    for raw in raws:
        if raw.cop is None:
            questions.append(raw.question)
        elif 0 <= raw.cop - base < len(MEDMCQA_OPTIONS):
            questions.append(replace(raw.question, answer=raw.cop - base))
        else:
            bad.append(BadLine(raw.question.line, f"'cop' is {raw.cop}, outside {note.split()[0]}"))
    return questions, bad, note


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, or EvalDataError."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EvalDataError(path, f"{path}: question file not found") from None
    except OSError as exc:
        raise EvalDataError(path, f"{path}: cannot read the question file ({exc.strerror})") from None


def _parse_all(data: bytes) -> tuple[list[_Raw], list[BadLine]]:
    """Every non-blank line parsed or reported."""
    raws: list[_Raw] = []
    bad: list[BadLine] = []
    for number, raw_line in enumerate(data.splitlines(), start=1):
        try:
            text = raw_line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            bad.append(BadLine(number, "not UTF-8 text"))
            continue
        if not text.strip():
            continue
        try:
            raws.append(parse_line(text, number))
        except _BadLineError as exc:
            bad.append(BadLine(number, str(exc)))
    return raws, bad


def read_questions(path: Path, *, cop_base: CopBase = "auto") -> QuestionFile:
    """Read a JSON-lines question file; raise EvalDataError if it holds no usable question."""
    data = _read_bytes(path)
    raws, bad = _parse_all(data)
    questions, bad_cop, note = _settle(raws, cop_base, path)
    bad = sorted(bad + bad_cop, key=lambda b: b.line)
    if not questions:
        first = f"; line {bad[0].line}: {bad[0].reason}" if bad else " (the file is empty)"
        raise EvalDataError(path, f"{path}: no usable question{first}")
    layouts = dict(Counter(q.layout for q in questions))
    return QuestionFile(
        path, hashlib.sha256(data).hexdigest(), tuple(questions), tuple(bad), layouts, note or None
    )


def select(questions: Sequence[Question], *, limit: int | None, shuffle_seed: int | None) -> list[Question]:
    """The questions to evaluate: shuffled with ``shuffle_seed`` if given, then the first ``limit``."""
    chosen = list(questions)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(chosen)  # noqa: S311 - a reproducible sample, not a secret
    return chosen[:limit] if limit is not None else chosen


def build_prompt(question: Question) -> str:
    """``Question: ...\\nChoices:\\nA. ...\\n...\\nAnswer:`` (the MedMCQA prompt of the common harnesses)."""
    lines = [f"Question: {question.question}", "Choices:"]
    lines += [f"{letter}. {text}" for letter, text in zip(LETTERS, question.choices, strict=False)]
    return "\n".join([*lines, "Answer:"])
