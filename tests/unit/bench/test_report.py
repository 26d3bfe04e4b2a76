"""The benchmark table and its JSON document."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.report import (
    BenchmarkResult,
    Row,
    format_table,
    format_value,
    result_from_json,
    result_to_json,
    to_document,
    write_results,
)

pytestmark = pytest.mark.unit


def test_table_shows_every_row_with_its_verdict() -> None:
    rows = [
        Row("requests", "total per 1,000 records", 412.0, "requests", "<= 450", True),
        Row("throughput", "records/s", 15_000.0, "records/s", ">= 20,000", False),
        Row("latency", "p99", None, "s", "<= 2", None, error="stack did not start"),
    ]
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["benchmark", "figure", "value", "target", "met"]
    assert "yes" in lines[2] and "NO" in lines[3] and "ERROR" in lines[4]
    assert "stack did not start" in text


def test_values_are_readable() -> None:
    assert format_value(1234.0, "requests") == "1,234 requests"
    assert format_value(0.0123, "s") == "0.0123 s"
    assert format_value(None, "s") == "n/a"


def test_results_are_written_as_latest_and_a_timestamped_copy(tmp_path: Path) -> None:
    started = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    result = BenchmarkResult("requests", [Row("requests", "total", 1.0, "requests")], {"k": 1}, 1.5)
    document = to_document([result], started, {"quick": True})
    latest, stamped = write_results(document, tmp_path, started)
    assert stamped.name == "20261126T100000Z.json"
    assert json.loads(latest.read_text()) == json.loads(stamped.read_text())
    assert json.loads(latest.read_text())["rows"][0]["figure"] == "total"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_result_survives_the_trip_between_interpreters() -> None:
    result = BenchmarkResult(
        "throughput",
        [Row("2 evaluator CPU", "records/s", 31_203.0, "records/s", ">= 25,000", True, note="7 runs")],
        {"rates": [1.5, 2.5], "seconds": {"a": 1}},
        seconds=3.5,
    )
    assert result_from_json(json.loads(json.dumps(result_to_json(result)))) == result


def test_each_benchmark_runs_in_an_interpreter_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto  # noqa: F401  (imported here: the benchmark's own interpreter must not have it)

    from bench.run import run_isolated

    monkeypatch.delenv("BENCH_SAMPLE_FAIL", raising=False)
    result = run_isolated("tests.support.bench_sample", quick=False)
    assert result.details["pid"] != os.getpid() and result.details["moto_imported"] is False
    assert result.rows == [Row("sample", "interpreter", float(result.details["pid"]), "pid", note="full")]
    assert sorted(result.details["odd"].strip("{}").split(", ")) == ["1", "2"]  # written as the file writes it


def test_a_benchmark_that_fails_in_its_interpreter_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.run import run_isolated

    monkeypatch.setenv("BENCH_SAMPLE_FAIL", "1")
    with pytest.raises(RuntimeError, match="exited with status 1"):
        run_isolated("tests.support.bench_sample", quick=True)
