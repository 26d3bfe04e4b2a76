"""Pure statistics for the benchmarks: percentiles, medians, a Zipf sampler, ratios."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) with linear interpolation between closest ranks.

    The same definition as numpy's default ("linear"): rank = q/100 * (n - 1).
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    ordered = sorted(values)
    rank = q / 100.0 * (len(ordered) - 1)
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


class ZipfSampler:
    """Draws ranks 1..n with P(k) proportional to 1 / k**s (a bounded Zipf distribution).

    The randomness is injected so a workload is reproducible from its seed.
    """

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        if n < 1:
            raise ValueError("a Zipf distribution needs at least one rank")
        if s < 0:
            raise ValueError("the Zipf exponent must be >= 0")
        self.n = n
        self.s = s
        self._rng = rng
        weights = [1.0 / (k**s) for k in range(1, n + 1)]
        total = math.fsum(weights)
        self.probabilities: tuple[float, ...] = tuple(weight / total for weight in weights)
        self._cumulative = list(itertools.accumulate(self.probabilities))
        self._cumulative[-1] = 1.0

    def draw(self) -> int:
        """One rank in 1..n."""
        return bisect.bisect_left(self._cumulative, self._rng.random()) + 1


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, infinite when the denominator is zero and the numerator is not."""
    if denominator == 0:
        return math.inf if numerator else 1.0
    return numerator / denominator
