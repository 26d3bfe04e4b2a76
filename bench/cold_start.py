"""Benchmark 4: cold start — import time of each handler module, and the deployment package.

Each handler module is imported in a fresh interpreter (`python -X importtime -c "import m"`),
as Lambda does on a cold start, the median of several runs. Lambda zips carry no `.pyc`, so the
runs use `PYTHONDONTWRITEBYTECODE=1` with a throw-away `PYTHONPYCACHEPREFIX` per run: every run
compiles from source, like a cold start from a zip without bytecode (the figure with bytecode,
as `make package` could ship it, is measured too). The `-X importtime` report names the imports
that dominate. The package figures come from `dist/` when `make package` has built it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.environment import subprocess_environment
from bench.report import BenchmarkResult, Row
from bench.stats import median

ROOT = Path(__file__).resolve().parent.parent
HANDLER_MODULES = (
    ("evaluator", "functions.evaluator.handler"),
    ("sender", "functions.sender.handler"),
    ("api", "app"),
)
TARGET_MS = 300.0
IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")
FORBIDDEN_IN_PACKAGE = ("boto3/", "botocore/", "pytest/", "moto/", "_pytest/", "hypothesis/", "mypy/", "ruff/")


@dataclass(frozen=True)
class ImportReport:
    total_ms: float
    # Top-level packages by cumulative microseconds (their first, outermost import).
    packages_ms: dict[str, float]


def parse_importtime(stderr: str, module: str) -> ImportReport:
    """The `-X importtime` report: cumulative time of `module` and of each top-level package."""
    total_us = 0
    packages: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match is None:
            continue
        cumulative = int(match.group(2))
        depth = len(match.group(3)) // 2
        name = match.group(4)
        if name == module and depth == 0:
            total_us = cumulative
        top = name.split(".")[0]
        if "." not in name:
            packages[top] = max(packages[top], cumulative / 1000.0)
    return ImportReport(total_us / 1000.0, dict(packages))


def measure_import(module: str, bytecode: bool) -> ImportReport:
    with tempfile.TemporaryDirectory(prefix="bench-pyc-") as cache:
        environment = subprocess_environment(PYTHONPYCACHEPREFIX=cache)
        if bytecode:
            # One run to compile, then the measured run reads the bytecode.
            subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, env=environment, check=True)
        else:
            environment["PYTHONDONTWRITEBYTECODE"] = "1"
        completed = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"import {module} failed: {completed.stderr.strip().splitlines()[-1:]}")
    return parse_importtime(completed.stderr, module)


def top_packages(reports: Sequence[ImportReport], count: int = 6) -> list[tuple[str, float]]:
    names = {name for report in reports for name in report.packages_ms}
    medians = {name: median([report.packages_ms.get(name, 0.0) for report in reports]) for name in names}
    return sorted(medians.items(), key=lambda item: item[1], reverse=True)[:count]


def package_contents(zip_path: Path) -> dict[str, object]:
    sizes: dict[str, int] = defaultdict(int)
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        for info in archive.infolist():
            sizes[info.filename.split("/")[0]] += info.compress_size
    forbidden = sorted({prefix for prefix in FORBIDDEN_IN_PACKAGE for name in names if name.startswith(prefix)})
    return {
        "path": str(zip_path.relative_to(ROOT)),
        "bytes": zip_path.stat().st_size,
        "files": len(names),
        "largest_entries_bytes": dict(sorted(sizes.items(), key=lambda item: item[1], reverse=True)[:10]),
        "forbidden_packages_found": forbidden,
    }


def find_package() -> Path | None:
    candidates = sorted((ROOT / "dist").glob("**/*.zip"), key=lambda path: path.stat().st_mtime, reverse=True)
    return candidates[0] if candidates else None


def run(quick: bool = True) -> BenchmarkResult:
    runs = 5 if quick else 9
    rows: list[Row] = []
    details: dict[str, object] = {"runs": runs}
    for label, module in HANDLER_MODULES:
        try:
            cold = [measure_import(module, bytecode=False) for _ in range(runs)]
            warm = [measure_import(module, bytecode=True) for _ in range(max(3, runs // 2))]
        except (RuntimeError, subprocess.SubprocessError) as exc:
            rows.append(
                Row("4 cold start", f"import {module}", None, "ms", f"<= {TARGET_MS:.0f} ms", None, error=str(exc))
            )
            continue
        cold_ms = median([report.total_ms for report in cold])
        warm_ms = median([report.total_ms for report in warm])
        top = top_packages(cold)
        rows.append(
            Row(
                "4 cold start",
                f"import {module} (from source)",
                cold_ms,
                "ms",
                f"<= {TARGET_MS:.0f} ms",
                cold_ms <= TARGET_MS,
                note="top imports (ms): " + ", ".join(f"{name} {ms:.0f}" for name, ms in top),
            )
        )
        rows.append(
            Row(
                "4 cold start",
                f"import {module} (with .pyc)",
                warm_ms,
                "ms",
                f"<= {TARGET_MS:.0f} ms",
                warm_ms <= TARGET_MS,
            )
        )
        details[label] = {
            "module": module,
            "from_source_ms": [report.total_ms for report in cold],
            "with_bytecode_ms": [report.total_ms for report in warm],
            "top_imports_ms": dict(top),
        }
    package = find_package()
    if package is None:
        rows.append(
            Row(
                "4 cold start",
                "deployment zip",
                None,
                "MB",
                "no boto3/botocore/test packages",
                None,
                note="no zip under dist/: run `make package` first to measure it",
            )
        )
    else:
        contents = package_contents(package)
        forbidden = contents["forbidden_packages_found"]
        size_mb = float(package.stat().st_size) / 1e6
        rows.append(
            Row(
                "4 cold start",
                f"deployment zip {package.name}",
                size_mb,
                "MB",
                "no boto3/botocore/test packages",
                not forbidden,
                note=f"largest entries: {contents['largest_entries_bytes']}; forbidden found: {forbidden}",
            )
        )
        details["package"] = contents
    details["measured_at"] = time.time()
    return BenchmarkResult("cold_start", rows, details)
