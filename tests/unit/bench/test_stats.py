"""The benchmark's statistics: percentiles and the Zipf sampler."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from bench.stats import ZipfSampler, median, percentile, ratio

pytestmark = pytest.mark.unit


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 95) == pytest.approx(38.5)


def test_percentile_ignores_input_order() -> None:
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0


def test_median_of_a_single_value_is_that_value() -> None:
    assert median([7.0]) == 7.0


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_percentile_outside_zero_to_hundred_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_zipf_probabilities_sum_to_one_and_decrease_with_rank() -> None:
    sampler = ZipfSampler(1000, 1.1, random.Random(1))
    assert math.fsum(sampler.probabilities) == pytest.approx(1.0)
    assert all(a > b for a, b in zip(sampler.probabilities, sampler.probabilities[1:], strict=False))
    assert sampler.probabilities[0] / sampler.probabilities[1] == pytest.approx(2**1.1)


def test_zipf_draws_stay_within_the_ranks() -> None:
    sampler = ZipfSampler(5, 1.1, random.Random(2))
    assert {sampler.draw() for _ in range(2000)} <= {1, 2, 3, 4, 5}


def test_zipf_draw_frequencies_follow_the_probabilities() -> None:
    sampler = ZipfSampler(100, 1.1, random.Random(3))
    draws = Counter(sampler.draw() for _ in range(50_000))
    assert draws[1] / 50_000 == pytest.approx(sampler.probabilities[0], rel=0.05)
    assert draws[1] > draws[2] > draws[10]


def test_zipf_is_reproducible_from_the_seed() -> None:
    first = ZipfSampler(1000, 1.1, random.Random(42))
    second = ZipfSampler(1000, 1.1, random.Random(42))
    assert [first.draw() for _ in range(100)] == [second.draw() for _ in range(100)]


def test_zipf_with_exponent_zero_is_uniform() -> None:
    sampler = ZipfSampler(4, 0.0, random.Random(4))
    assert sampler.probabilities == pytest.approx((0.25, 0.25, 0.25, 0.25))


def test_zipf_needs_a_rank() -> None:
    with pytest.raises(ValueError):
        ZipfSampler(0, 1.1, random.Random(7))


def test_ratio_by_zero_is_infinite_unless_both_are_zero() -> None:
    assert ratio(6, 3) == 2
    assert ratio(1, 0) == math.inf
    assert ratio(0, 0) == 1.0
