"""An evaluation from start to end: read the questions, score them with each model, summarise."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from inference.errors import QuestionTooLongError
from inference.evaluation.data import (
    LETTERS,
    CopBase,
    Question,
    QuestionFile,
    build_prompt,
    read_questions,
    select,
)
from inference.evaluation.results import EvalRun, ModelRun, QuestionResult
from inference.evaluation.scoring import Scorer
from inference.modelfile import file_sha256, validate_gguf

Progress = Callable[[int], None]
ProgressFactory = Callable[[int, str], Progress]
"""Given (total, label), returns a callback taking the number of questions done."""


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and how."""

    data: Path
    model: Path
    compare: Path | None = None
    limit: int | None = None
    shuffle_seed: int | None = None
    normalized: bool = False
    cop_base: CopBase = "auto"
    n_ctx: int = 2048
    n_batch: int = 512
    n_threads: int | None = None
    use_mmap: bool = True
    # --library: guideline passages (as the prompt quotes them) by question line, and the library
    # version; the model is then evaluated twice, without and with them, on the same questions.
    grounding: Mapping[int, str] | None = None
    library_version: str = ""


def letter_continuations(n_choices: int) -> list[str]:
    """``" A"``, ``" B"``, ... for ``n_choices`` choices."""
    return [f" {letter}" for letter in LETTERS[:n_choices]]


def text_continuations(question: Question) -> list[str]:
    """``" " + choice text`` for each choice (the length-normalised variant)."""
    return [f" {text}" for text in question.choices]


def score_question(
    scorer: Scorer, question: Question, *, normalized: bool, passages: str = ""
) -> QuestionResult:
    """Score one question: letters always, the full choice texts too when ``normalized``.

    ``passages`` (library passages, see inference.prompt.passages_block) come before the question.
    """
    n = len(question.choices)
    continuations = letter_continuations(n) + (text_continuations(question) if normalized else [])
    base = QuestionResult(question.line, question.qid, question.subject, question.answer, None)
    try:
        scores = scorer.loglikelihoods(f"{passages}{build_prompt(question)}", continuations)
    except QuestionTooLongError as exc:
        return replace(base, skipped=str(exc))
    letters = scores.logprobs[:n]
    predicted_norm = None
    if normalized:
        per_byte = [
            lp / len(text.encode("utf-8"))
            for lp, text in zip(scores.logprobs[n:], continuations[n:], strict=True)
        ]
        predicted_norm = int(np.argmax(per_byte))
    return QuestionResult(
        question.line,
        question.qid,
        question.subject,
        question.answer,
        int(np.argmax(letters)),
        tuple(letters),
        predicted_norm,
        None,
        scores.prompt_tokens,
        all(c == 1 for c in scores.token_counts[:n]),
    )


def evaluate_model(
    path: Path,
    questions: Sequence[Question],
    options: EvalOptions,
    progress: Progress | None = None,
    grounding: Mapping[int, str] | None = None,
) -> ModelRun:
    """Load ``path`` and score every question with it (with its passages from ``grounding``)."""
    sha256 = file_sha256(path)
    started = time.monotonic()
    with Scorer(
        path,
        n_ctx=options.n_ctx,
        n_batch=options.n_batch,
        n_threads=options.n_threads,
        use_mmap=options.use_mmap,
    ) as scorer:
        loaded = time.monotonic()
        results = []
        for done, question in enumerate(questions, start=1):
            passages = (grounding or {}).get(question.line, "")
            results.append(score_question(scorer, question, normalized=options.normalized, passages=passages))
            if progress is not None:
                progress(done)
        finished = time.monotonic()
        architecture = scorer.architecture
    label = f"{path} + library {options.library_version}" if grounding is not None else str(path)
    return ModelRun(
        label,
        sha256,
        path.stat().st_size,
        architecture,
        loaded - started,
        finished - loaded,
        tuple(results),
    )


def _settings(options: EvalOptions) -> dict[str, object]:
    """The knobs that shape the figures (recorded with the results)."""
    import llama_cpp

    return {
        "n_ctx": options.n_ctx,
        "n_batch": options.n_batch,
        "n_threads": options.n_threads,
        "use_mmap": options.use_mmap,
        "llama_cpp_python": str(llama_cpp.__version__),
    }


def run_eval(
    options: EvalOptions,
    *,
    data: QuestionFile | None = None,
    progress: ProgressFactory | None = None,
) -> EvalRun:
    """Evaluate ``options.model`` (and ``options.compare``, or the model with the library's passages)."""
    data = data or read_questions(options.data, cop_base=options.cop_base)
    questions = select(data.questions, limit=options.limit, shuffle_seed=options.shuffle_seed)
    paths = [options.model] + ([options.compare] if options.compare is not None else [])
    for path in paths:
        validate_gguf(path)  # a bad --compare file fails before the first model's long run
    models = []
    for path in paths:
        callback = progress(len(questions), path.name) if progress is not None else None
        models.append(evaluate_model(path, questions, options, callback))
    if options.grounding is not None:
        callback = (
            progress(len(questions), f"{options.model.name} + library") if progress is not None else None
        )
        models.append(evaluate_model(options.model, questions, options, callback, options.grounding))
    return EvalRun(
        data=data,
        selected=len(questions),
        limit=options.limit,
        shuffle_seed=options.shuffle_seed,
        normalized=options.normalized,
        settings=_settings(options),
        models=tuple(models),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
