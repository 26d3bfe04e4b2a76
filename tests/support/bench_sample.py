"""A benchmark module for `bench.run`'s own tests: reports which interpreter ran it."""

from __future__ import annotations

import os
import sys

from bench.report import BenchmarkResult, Row


def run(quick: bool = True) -> BenchmarkResult:
    if os.environ.get("BENCH_SAMPLE_FAIL") == "1":
        raise RuntimeError("the sample benchmark failed on purpose")
    imported_moto = "moto" in sys.modules
    row = Row("sample", "interpreter", float(os.getpid()), "pid", note="quick" if quick else "full")
    return BenchmarkResult("sample", [row], {"pid": os.getpid(), "moto_imported": imported_moto, "odd": {1, 2}})
