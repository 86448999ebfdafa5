"""``meditron-bot bench --cold-start``: a restarted worker on a saved prefix state against a warm one.

Restarted: a new engine on the same model loads the saved state, then answers a question; its
"first token" counts the state load too (a question was waiting when it restarted). Warm: the same
engine then answers the same question again, at once. Each round pairs the two, so a shared
machine's drift between rounds cancels out; the figures are the medians of the rounds, the ratio
the median of the pairs' ratios. For reference, a restart that evaluates the prefix again.
Target: restarted <= 1.2x warm.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

from inference.bench import BenchConfig, _prompts, ttft, worker_engine
from inference.prompt import preamble_prompt

TARGET = 1.2


@dataclass
class ColdStartReport:
    """Seconds of each path (medians of the rounds)."""

    model: str
    prefix_tokens: int = 0
    warm_ttft_s: float = 0.0
    restarted_ttft_s: float = 0.0
    """State load plus the first question's time to first token."""
    state_load_s: float = 0.0
    evaluated_ttft_s: float = 0.0
    """Without a saved state: prefix evaluation plus the first question's time to first token."""
    prefix_evaluate_s: float = 0.0
    state_bytes: int = 0
    ratio: float = 0.0
    """The median over rounds of restarted over warm time to first token (same engine, same round)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures, with the ratio and whether the target is met."""
        return {**asdict(self), "target": TARGET, "met": self.ratio <= TARGET}


def _restart(config: BenchConfig, state: Path | None, prompt: str) -> tuple[float, float, float, str]:
    """A new engine: prefix (from ``state`` or evaluated), one question, the same question again;
    (prefix s, first ttft s, warm ttft s, source)."""
    with worker_engine(config) as engine:
        started = time.perf_counter()
        engine.set_prefix(preamble_prompt(), state)
        prefix_s = time.perf_counter() - started
        first = ttft(engine.generate(prompt, max_tokens=1))
        return prefix_s, first, ttft(engine.generate(prompt, max_tokens=1)), engine.prefix_source


def measure_cold_start(config: BenchConfig, rounds: int = 3) -> ColdStartReport:
    """Restarted on a saved state (then warm, same engine), and restarted evaluating the prefix;
    medians of ``rounds`` each."""
    report = ColdStartReport(model=str(config.model))
    prompt = _prompts(1)[0]
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder) / "prefix.state"
        with worker_engine(config) as engine:
            report.prefix_tokens = engine.set_prefix(preamble_prompt(), state)
            report.state_bytes = state.stat().st_size
        restarted, loads, warm, ratios, evaluated, evaluations = [], [], [], [], [], []
        for _ in range(rounds):
            prefix_s, first_s, warm_s, source = _restart(config, state, prompt)
            if source != "loaded":
                raise RuntimeError(f"the saved state was not loaded ({source})")
            restarted.append(prefix_s + first_s)
            loads.append(prefix_s)
            warm.append(warm_s)
            ratios.append((prefix_s + first_s) / warm_s)
            prefix_s, first_s, _, _ = _restart(config, None, prompt)
            evaluated.append(prefix_s + first_s)
            evaluations.append(prefix_s)
    report.restarted_ttft_s, report.state_load_s = median(restarted), median(loads)
    report.warm_ttft_s, report.ratio = median(warm), median(ratios)
    report.evaluated_ttft_s, report.prefix_evaluate_s = median(evaluated), median(evaluations)
    return report


def format_cold_start(report: ColdStartReport) -> str:
    """The figures as lines of text."""
    verdict = "met" if report.ratio <= TARGET else "MISSED"
    return "\n".join(
        [
            f"model: {report.model}; instruction prefix {report.prefix_tokens} tokens, "
            f"saved state {report.state_bytes / 1e6:.1f} MB",
            f"warm worker, time to first token:                     {report.warm_ttft_s:.3f} s",
            f"restarted on the saved state (load + first token):    {report.restarted_ttft_s:.3f} s "
            f"(load {report.state_load_s:.3f} s)",
            f"restarted evaluating the prefix (eval + first token): {report.evaluated_ttft_s:.3f} s "
            f"(evaluate {report.prefix_evaluate_s:.3f} s)",
            f"target restarted <= {TARGET}x warm: {verdict} ({report.ratio:.2f}x)",
        ]
    )
