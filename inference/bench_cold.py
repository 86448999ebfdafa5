"""``meditron-bot bench --cold-start``: a restarted worker on a saved prefix state against a warm one.

Warm: a worker whose instruction prefix is in its KV cache answers a question (time to first
token). Restarted: a new engine on the same model loads the saved state, then answers the same
question; its "first token" counts the state load too (a question was waiting when it restarted).
For reference, a restart that evaluates the prefix again. Target: restarted <= 1.2x warm.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inference.bench import BenchConfig, _prompts, ttft, worker_engine
from inference.prompt import preamble_prompt

TARGET = 1.2


@dataclass
class ColdStartReport:
    """Seconds of each path (best of ``rounds``)."""

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

    @property
    def ratio(self) -> float:
        """Restarted over warm time to first token."""
        return self.restarted_ttft_s / self.warm_ttft_s if self.warm_ttft_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures, with the ratio and whether the target is met."""
        return {**asdict(self), "ratio": round(self.ratio, 3), "target": TARGET, "met": self.ratio <= TARGET}


def _restart(config: BenchConfig, state: Path | None, prompt: str) -> tuple[float, float, str]:
    """A new engine: prefix (from ``state`` or evaluated), then one question; (prefix s, ttft s, source)."""
    with worker_engine(config) as engine:
        started = time.perf_counter()
        engine.set_prefix(preamble_prompt(), state)
        prefix_s = time.perf_counter() - started
        return prefix_s, ttft(engine.generate(prompt, max_tokens=1)), engine.prefix_source


def measure_cold_start(config: BenchConfig, rounds: int = 3) -> ColdStartReport:
    """Warm, restarted on a saved state, and restarted evaluating the prefix; best of ``rounds`` each."""
    report = ColdStartReport(model=str(config.model))
    prompt = _prompts(1)[0]
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder) / "prefix.state"
        with worker_engine(config) as engine:
            report.prefix_tokens = engine.set_prefix(preamble_prompt(), state)
            report.state_bytes = state.stat().st_size
            engine.generate(prompt, max_tokens=1)  # the cache's first use is not "warm"
            report.warm_ttft_s = min(ttft(engine.generate(prompt, max_tokens=1)) for _ in range(rounds))
        loads, evaluations = [], []
        for _ in range(rounds):
            prefix_s, ttft_s, source = _restart(config, state, prompt)
            if source != "loaded":
                raise RuntimeError(f"the saved state was not loaded ({source})")
            loads.append((prefix_s + ttft_s, prefix_s))
            prefix_s, ttft_s, _ = _restart(config, None, prompt)
            evaluations.append((prefix_s + ttft_s, prefix_s))
    report.restarted_ttft_s, report.state_load_s = min(loads)
    report.evaluated_ttft_s, report.prefix_evaluate_s = min(evaluations)
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
