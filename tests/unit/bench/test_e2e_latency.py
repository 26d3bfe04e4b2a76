"""Benchmark 5's writers and summary: the schedule, latencies from write times and GET arrivals, misses,
duplicates, strays."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bench.e2e_latency import Writes, _cpu_seconds, _write_scheduled, summarise

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


class _BlockingStack:
    """put_conversion waits until `together` writes are in flight at once (a sequential writer never gets there)."""

    def __init__(self, together: int) -> None:
        self._barrier = threading.Barrier(together, timeout=10)
        self.written: list[str] = []
        self._lock = threading.Lock()

    def put_conversion(self, affiliate_id: str, status: str, *, conversion_id: str, **extra: str) -> str:
        with self._lock:
            first = len(self.written) < self._barrier.parties
            self.written.append(conversion_id)
        if first:
            self._barrier.wait()
        return conversion_id


def test_writes_overlap_so_a_slow_put_item_holds_up_no_other_write() -> None:
    stack = _BlockingStack(together=3)
    writes = _write_scheduled(stack, "aff", "run", count=12, rate=1_000_000.0)
    assert sorted(stack.written) == sorted(writes.written_at) and len(set(stack.written)) == 12
    assert len(writes.late) == 12 and all(late >= 0 for late in writes.late)


def test_a_failed_write_fails_the_run() -> None:
    class Failing:
        def put_conversion(self, *args: object, **kwargs: object) -> str:
            raise RuntimeError("moto is gone")

    with pytest.raises(RuntimeError, match="moto is gone"):
        _write_scheduled(Failing(), "aff", "run", count=5, rate=1_000_000.0)


def test_the_achieved_rate_spans_the_first_write_to_the_last() -> None:
    writes = Writes({"a": 100.0, "b": 100.5, "c": 102.0}, [0.0, 0.0, 0.0])
    assert writes.achieved_rate == pytest.approx(1.0)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux /proc")
def test_cpu_seconds_of_a_process_and_of_one_that_is_gone() -> None:
    spent = _cpu_seconds(os.getpid())
    assert spent is not None and spent > 0
    assert _cpu_seconds(2**22 + 12345) is None
