"""``meditron-bot bench --paragraphs``: with DELIVERY=paragraphs, when each answer's first paragraph is out.

The bench's questions go to the worker's engine together (its sequences take them in turn, the
instructions reused), each answered to ``--answer-tokens`` (384 for issue 16's target). The first
paragraph is finished when :class:`~inference.paragraphs.Paragraphs` finds it in the text the
engine reports (the worker publishes it at that moment); it is timed from the question's start in
a sequence, against the whole answer's time. An answer without a finished paragraph has none to
send early: its first message is the whole answer (100%). Random weights seldom write a blank
line, so the figure means something only on a real model (``--model``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from inference.batch import Request
from inference.bench import QUESTIONS, BenchConfig, worker_engine
from inference.engine import GenerationResult
from inference.paragraphs import Paragraphs
from inference.prompt import build_prompt, preamble_prompt

TARGET = 0.35
"""Issue 16: the first paragraph at no more than 35% of the whole answer's time."""


class FirstParagraph:
    """An ``on_text`` callback: the wall time (``time.time``) the answer's first paragraph was finished."""

    def __init__(self) -> None:
        self.paragraphs = Paragraphs()
        self.at: float | None = None

    def __call__(self, text: str) -> None:
        if self.at is None and self.paragraphs.feed(text):
            self.at = time.time()


@dataclass
class ParagraphFigures:
    """One answer: seconds from its start to its first paragraph (None: there was none) and to its end."""

    tokens: int
    whole_s: float
    first_paragraph_s: float | None

    @property
    def share(self) -> float:
        """The first message's time over the whole answer's (1.0 without an early paragraph)."""
        if self.first_paragraph_s is None or not self.whole_s:
            return 1.0
        return self.first_paragraph_s / self.whole_s


@dataclass
class ParagraphReport:
    """Every answer's figures and their median share."""

    model: str
    answer_tokens: int
    answers: list[ParagraphFigures] = field(default_factory=list)

    @property
    def median_share(self) -> float:
        """The median of the answers' shares."""
        shares = sorted(answer.share for answer in self.answers)
        middle = len(shares) // 2
        return shares[middle] if len(shares) % 2 else (shares[middle - 1] + shares[middle]) / 2

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures with the target."""
        share = round(self.median_share, 3)
        return {**asdict(self), "median_share": share, "target": TARGET, "met": share <= TARGET}


def figures_of(result: GenerationResult, first: FirstParagraph) -> ParagraphFigures:
    """One answer's figures from its result and its callback."""
    paragraph = None if first.at is None else first.at - result.started_at
    return ParagraphFigures(result.completion_tokens, result.finished_at - result.started_at, paragraph)


def measure_paragraphs(config: BenchConfig) -> ParagraphReport:
    """The bench's questions answered together to ``config.answer_tokens``, first paragraphs timed."""
    report = ParagraphReport(model=str(config.model), answer_tokens=config.answer_tokens)
    with worker_engine(config) as engine:
        engine.set_prefix(preamble_prompt())
        engine.generate(build_prompt(QUESTIONS[0]), max_tokens=1)  # the cache's first use is not typical
        trackers = [FirstParagraph() for _ in QUESTIONS]
        requests = [
            Request(build_prompt(question), max_tokens=config.answer_tokens, on_text=tracker)
            for question, tracker in zip(QUESTIONS, trackers, strict=True)
        ]
        results = engine.generate_many(requests)
    report.answers = [figures_of(r, t) for r, t in zip(results, trackers, strict=True)]
    return report


def format_paragraphs(report: ParagraphReport) -> str:
    """The figures as lines of text."""
    lines = [f"model: {report.model}; DELIVERY=paragraphs, answers of up to {report.answer_tokens} tokens"]
    for index, answer in enumerate(report.answers, 1):
        first = (
            "no finished paragraph (one message)"
            if answer.first_paragraph_s is None
            else f"first paragraph at {answer.first_paragraph_s:.1f} s"
        )
        lines.append(
            f"  question {index}: {answer.tokens} tokens in {answer.whole_s:.1f} s; {first} "
            f"({100 * answer.share:.0f}%)"
        )
    verdict = "met" if report.median_share <= TARGET else "MISSED"
    lines.append(
        f"target first paragraph <= {100 * TARGET:.0f}% of the answer's time (median): "
        f"{verdict} ({100 * report.median_share:.0f}%)"
    )
    return "\n".join(lines)
