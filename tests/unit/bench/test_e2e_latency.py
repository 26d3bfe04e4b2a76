"""Benchmark 5's summary: latencies from write times and GET arrivals, misses, duplicates, strays."""

from __future__ import annotations

import pytest

from bench.e2e_latency import summarise

pytestmark = pytest.mark.unit


def test_each_conversion_is_measured_from_its_write_to_its_first_get() -> None:
    written = {"a": 10.0, "b": 11.0, "c": 12.0}
    summary = summarise(written, [("b", 11.5), ("a", 10.25), ("a", 10.2), ("c", 14.0)])
    assert summary.sent == 3 and summary.received == 3 and summary.missing == 0
    assert summary.latencies == pytest.approx((0.2, 0.5, 2.0))  # in write order, first GET of "a"
    assert summary.duplicates == 1 and summary.unexpected == 0
    assert summary.percentile(50) == pytest.approx(0.5)


def test_missing_and_unexpected_gets_are_counted_apart() -> None:
    summary = summarise({"a": 1.0, "b": 2.0}, [("a", 1.5), ("zzz", 1.7)])
    assert summary.received == 1 and summary.missing == 1
    assert summary.unexpected == 1 and summary.duplicates == 0
    assert summary.latencies == pytest.approx((0.5,))


def test_nothing_received_has_no_percentiles() -> None:
    summary = summarise({"a": 1.0}, [])
    assert summary.percentile(99) is None and summary.missing == 1
