"""What an evaluation produced: one record per question and model, and the run around them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from inference.evaluation.data import QuestionFile


@dataclass(frozen=True)
class QuestionResult:
    """One model's scores on one question (``predicted`` is None when the question was skipped)."""

    line: int
    qid: str
    subject: str | None
    answer: int
    predicted: int | None
    logprobs: tuple[float, ...] = ()
    predicted_norm: int | None = None
    skipped: str | None = None
    prompt_tokens: int = 0
    single_token: bool = True

    @property
    def correct(self) -> bool:
        """Whether the letter scoring picked the answer."""
        return self.predicted == self.answer

    @property
    def correct_norm(self) -> bool:
        """Whether the length-normalised full-text scoring picked the answer."""
        return self.predicted_norm == self.answer


@dataclass(frozen=True)
class ModelRun:
    """One model file over the selected questions."""

    path: str
    sha256: str
    size_bytes: int
    architecture: str
    load_seconds: float
    score_seconds: float
    results: tuple[QuestionResult, ...]

    @property
    def scored(self) -> list[QuestionResult]:
        """The questions that were scored (not skipped)."""
        return [r for r in self.results if r.predicted is not None]

    @property
    def questions_per_second(self) -> float:
        """Scored questions per second of scoring time (model loading excluded)."""
        return len(self.scored) / self.score_seconds if self.score_seconds > 0 else 0.0


@dataclass(frozen=True)
class EvalRun:
    """A whole evaluation: the question file, the options, and one or two model runs."""

    data: QuestionFile
    selected: int
    limit: int | None
    shuffle_seed: int | None
    normalized: bool
    settings: dict[str, object]
    models: tuple[ModelRun, ...]
    created_at: str
    results_path: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


Metric = Callable[[QuestionResult], bool]


def accuracy_counts(results: Sequence[QuestionResult], metric: Metric) -> tuple[int, int]:
    """(right, scored) of ``results`` under ``metric``, skipped questions left out."""
    scored = [r for r in results if r.predicted is not None]
    return sum(1 for r in scored if metric(r)), len(scored)
