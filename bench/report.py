"""The benchmark table: rows of (figure, value, target, met), printed and written as JSON."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    """One figure of one benchmark.

    `met` is None for a figure that has no target (context, e.g. the naive baseline), and for a
    figure that could not be measured (`error` says why).
    """

    benchmark: str
    figure: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    error: str = ""


@dataclass
class BenchmarkResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def result_to_json(result: BenchmarkResult) -> dict[str, Any]:
    """A result as JSON-ready data (what a benchmark's own interpreter hands back to `bench.run`)."""
    return json.loads(json.dumps(asdict(result), default=str))  # type: ignore[no-any-return]


def result_from_json(data: dict[str, Any]) -> BenchmarkResult:
    return BenchmarkResult(
        name=data["name"],
        rows=[Row(**row) for row in data["rows"]],
        details=data.get("details", {}),
        seconds=data.get("seconds", 0.0),
    )


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("requests", "records", "reads", "bytes", "count", "deliveries") or float(value).is_integer():
        text = f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.4g}"
    return f"{text} {unit}".strip()


def verdict(met: bool | None, error: str) -> str:
    if error:
        return "ERROR"
    if met is None:
        return "-"
    return "yes" if met else "NO"


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table, one line per row, columns padded to their widest cell."""
    header = ("benchmark", "figure", "value", "target", "met")
    lines = [
        (row.benchmark, row.figure, format_value(row.value, row.unit), row.target, verdict(row.met, row.error))
        for row in rows
    ]
    widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    out = [render(header), render(tuple("-" * width for width in widths))]
    out.extend(render(cells) for cells in lines)
    notes = [f"  [{row.benchmark}] {row.figure}: {row.error or row.note}" for row in rows if row.error or row.note]
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(notes)
    return "\n".join(out)


def to_document(results: Sequence[BenchmarkResult], started_at: datetime, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "started_at": started_at.astimezone(UTC).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "options": options,
        "rows": [asdict(row) for result in results for row in result.rows],
        "benchmarks": {
            result.name: {"seconds": round(result.seconds, 3), "details": result.details} for result in results
        },
    }


def write_results(document: dict[str, Any], directory: Path, started_at: datetime) -> tuple[Path, Path]:
    """Write `latest.json` and a timestamped copy; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, sort_keys=False, default=str) + "\n"
    stamped = directory / f"{started_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    latest = directory / "latest.json"
    for path in (stamped, latest):
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    return latest, stamped
