"""Small statistics shared by benchmarks: a mean with its standard error and 95% interval."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A measured mean over n items, with its standard error and normal 95% interval."""

    n: int
    mean: float
    stderr: float

    @property
    def ci_low(self) -> float:
        return self.mean - Z95 * self.stderr

    @property
    def ci_high(self) -> float:
        return self.mean + Z95 * self.stderr


def estimate_mean(values: Sequence[float]) -> Estimate:
    """Mean and standard error of the mean (sample std / sqrt(n), as lm-evaluation-harness reports)."""
    n = len(values)
    if n == 0:
        return Estimate(0, float("nan"), float("nan"))
    mean = sum(values) / n
    if n == 1:
        return Estimate(1, mean, float("nan"))
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return Estimate(n, mean, math.sqrt(var / n))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), computed stably."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod
