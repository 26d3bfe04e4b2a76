"""The benchmark table and its JSON document."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.report import BenchmarkResult, Row, format_table, format_value, to_document, write_results

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
