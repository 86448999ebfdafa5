"""Accuracy intervals and paired comparison: Wilson score interval, McNemar's test (exact and chi-square)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

Z_95 = 1.959963984540054
"""The 97.5th percentile of the standard normal distribution."""


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for ``correct`` successes in ``total`` trials (95 % by default)."""
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired outcomes: ``only_first`` right only for the first model, etc."""

    only_first: int
    only_second: int
    exact_p: float
    """Two-sided exact binomial p-value (always valid; the one the verdict uses)."""
    chi_square: float
    """Statistic with continuity correction, (|b - c| - 1)^2 / (b + c); 0 when b + c = 0."""
    chi_square_p: float

    @property
    def discordant(self) -> int:
        """Questions on which exactly one model is right."""
        return self.only_first + self.only_second

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether the exact test rejects "both models are equally accurate" at level ``alpha``."""
        return self.exact_p < alpha


def exact_binomial_two_sided(b: int, c: int) -> float:
    """P of a split at least as uneven as b:c when each discordant pair is a fair coin."""
    n = b + c
    if n == 0:
        return 1.0
    term = tail = 1  # C(n, 0); each next binomial coefficient from the previous one, exactly
    for k in range(min(b, c)):
        term = term * (n - k) // (k + 1)
        tail += term
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def mcnemar(only_first: int, only_second: int) -> McNemarResult:
    """McNemar's test from the two discordant counts."""
    if only_first < 0 or only_second < 0:
        raise ValueError("counts must not be negative")
    n = only_first + only_second
    chi = (abs(only_first - only_second) - 1) ** 2 / n if n else 0.0
    chi = chi if abs(only_first - only_second) > 1 else 0.0
    chi_p = math.erfc(math.sqrt(chi / 2))
    return McNemarResult(
        only_first, only_second, exact_binomial_two_sided(only_first, only_second), chi, chi_p
    )
