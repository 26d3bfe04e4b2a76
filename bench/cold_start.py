"""Benchmark 4: cold start — import time of each handler from the deployment zip, and the zip itself.

The zip `make package` builds is unpacked as Lambda's task root, with the AWS SDK the Lambda
runtime provides standing beside it, and each handler module is imported in a fresh interpreter
(`python -S -X importtime`, so no development package is importable) with `_HANDLER` set to the
function's handler string as the runtime sets it (a handler may load its own dependencies at init
only in its own Lambda); the median of several runs. The zip carries the `.pyc` `make package`
compiles, as shipped. "Ready for its first event" adds the modules the first invocation imports
lazily (`FIRST_EVENT_IMPORTS`), so deferring an import cannot hide its cost. The `-X importtime`
report names the packages that dominate. The zip's size and contents: no boto3/botocore (the
runtime provides them) and no test-only packages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.environment import subprocess_environment
from bench.report import BenchmarkResult, Row
from bench.stats import median

ROOT = Path(__file__).resolve().parent.parent
# Each handler module and the handler string Lambda is configured with (`_HANDLER`).
HANDLERS = {
    "functions.evaluator.handler": "functions.evaluator.handler.on_conversion_change",
    "functions.sender.handler": "functions.sender.handler.on_delivery_message",
    "app": "app.app",
}
# What the first invocation imports that the handler module defers (the composition root's lazy
# getters; the SQS client is created from a botocore session when it is built).
FIRST_EVENT_IMPORTS = {
    "functions.evaluator.handler": (
        "functions.evaluator.service",
        "functions.storage.deliveries",
        "functions.storage.postbacks",
        "functions.storage.queues",
        "botocore.session",
    ),
    "functions.sender.handler": ("functions.sender.service", "botocore.session"),
    # The first request builds the repository (pynamodb, botocore) and verifies a token (PyJWT); a
    # first request with a body (create, patch, test fire) checks it with pydantic's request models.
    "app": ("functions.api.service", "functions.storage.postbacks", "jwt", "functions.api.body_shapes"),
}
TARGET_MS = 300.0
# The API's import against the evaluator's "ready for its first event" (bound by the AWS SDK it
# needs), measured in alternation in one run so that the machine's load moves both alike.
API_MODULE = "app"
REFERENCE_MODULE = "functions.evaluator.handler"
API_RATIO_TARGET = 1.0
API_QUIET_TARGET_MS = 200.0
# A load average under this (2 cores) counts as quiet for the absolute figure.
QUIET_LOAD = 4.0
# The handlers' observability: the EMF writer and the event lines (docs/observability.md), measured
# inside each handler's import (cumulative time of each, where it is first imported).
OBSERVABILITY_MODULES = ("functions.core.metrics", "functions.logs")
IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")
FORBIDDEN_IN_PACKAGE = ("boto3/", "botocore/", "pytest/", "moto/", "_pytest/", "hypothesis/", "mypy/", "ruff/")
# What the Lambda Python runtime provides beside the zip (the zip leaves the AWS SDK out).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")
FIGURE = "4 cold start"


@dataclass(frozen=True)
class ImportReport:
    total_ms: float
    # Milliseconds spent in each top-level package's own modules (self times, summed).
    packages_ms: dict[str, float]
    # The handler plus what its first event imports (the sum of their outermost imports).
    first_event_ms: float = 0.0
    # Self times per top-level package of the imports after the handler's own (its first event's).
    first_event_packages_ms: dict[str, float] = field(default_factory=dict)
    # Cumulative import time of `OBSERVABILITY_MODULES` (0 when the module imports neither).
    observability_ms: float = 0.0

    def import_packages_ms(self) -> dict[str, float]:
        """Self times per top-level package of importing the handler alone."""
        return {
            name: ms - self.first_event_packages_ms.get(name, 0.0)
            for name, ms in self.packages_ms.items()
            if ms - self.first_event_packages_ms.get(name, 0.0) > 0.0
        }


def parse_importtime(stderr: str, module: str, first_event: Sequence[str] = ()) -> ImportReport:
    """The `-X importtime` report: cumulative time of `module`, and the self time of each top-level package.

    `first_event_ms` adds the outermost imports of `first_event` (a module the handler already
    imported does not appear again at the outermost level, so it is not counted twice).
    """
    total_us = 0
    outermost: dict[str, int] = {}
    packages: dict[str, float] = defaultdict(float)
    after_module: dict[str, float] = defaultdict(float)
    module_seen = False
    observability_us = 0
    for line in stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match is None:
            continue
        own, cumulative, depth, name = int(match[1]), int(match[2]), len(match[3]) // 2, match[4]
        if name in OBSERVABILITY_MODULES:
            observability_us += cumulative
        if module_seen:
            after_module[name.split(".")[0]] += own / 1000.0
        if depth == 0:
            outermost[name] = cumulative
            if name == module:
                total_us = cumulative
                module_seen = True
        packages[name.split(".")[0]] += own / 1000.0
    first_event_us = total_us + sum(outermost.get(name, 0) for name in first_event if name != module)
    return ImportReport(
        total_us / 1000.0, dict(packages), first_event_us / 1000.0, dict(after_module), observability_us / 1000.0
    )


def unpack_as_lambda(package: Path, into: Path) -> tuple[Path, Path]:
    """The zip extracted as Lambda's task root, and a directory standing in for the runtime's SDK."""
    code = into / "task"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(code)
    runtime = into / "runtime"
    runtime.mkdir()
    site_packages = Path(sysconfig.get_paths()["purelib"])
    for name in RUNTIME_PACKAGES:
        if (site_packages / name).exists():
            (runtime / name).symlink_to(site_packages / name)
    return code, runtime


def measure_zip_import(module: str, code: Path, runtime: Path) -> ImportReport:
    """One fresh interpreter importing `module` (and its first event's imports) from the unpacked zip."""
    first_event = FIRST_EVENT_IMPORTS.get(module, ())
    statement = "import sys; sys.path[:0] = sys.argv[1:3]; " + "; ".join(
        f"import {name}" for name in (module, *first_event)
    )
    completed = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", statement, str(code), str(runtime)],
        cwd=code,
        env=subprocess_environment(_HANDLER=HANDLERS.get(module, ""), PYTHONDONTWRITEBYTECODE="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"import {module} from the zip failed: {completed.stderr.strip().splitlines()[-1:]}")
    return parse_importtime(completed.stderr, module, first_event)


def top_packages(reports: Sequence[ImportReport], count: int = 6, part: str = "all") -> list[tuple[str, float]]:
    """The packages with the largest median self time: of everything, the import alone, or the first event."""

    def of(report: ImportReport) -> dict[str, float]:
        if part == "import":
            return report.import_packages_ms()
        if part == "first_event":
            return report.first_event_packages_ms
        return report.packages_ms

    names = {name for report in reports for name in of(report)}
    medians = {name: median([of(report).get(name, 0.0) for report in reports]) for name in names}
    return sorted(medians.items(), key=lambda item: item[1], reverse=True)[:count]


def _listed(packages: Sequence[tuple[str, float]]) -> str:
    return ", ".join(f"{name} {ms:.0f}" for name, ms in packages)


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


def _load() -> float:
    """The machine's one-minute load average (0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def run(quick: bool = True) -> BenchmarkResult:
    runs = 7 if quick else 11
    package = find_package()
    if package is None:
        raise RuntimeError("no zip under dist/: run `make package` first (`make bench` does)")
    rows: list[Row] = []
    details: dict[str, object] = {"runs": runs, "package": package_contents(package)}
    reports: dict[str, list[ImportReport]] = {module: [] for module in HANDLERS}
    errors: dict[str, str] = {}
    loads = [_load()]
    with tempfile.TemporaryDirectory(prefix="bench-lambda-") as scratch:
        code, runtime = unpack_as_lambda(package, Path(scratch))
        # In alternation, one of each per round: a burst of load moves every module alike.
        for _ in range(runs):
            for module in HANDLERS:
                if module in errors:
                    continue
                try:
                    reports[module].append(measure_zip_import(module, code, runtime))
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    errors[module] = str(exc)
            loads.append(_load())
    load = median(loads)
    for module in HANDLERS:
        if module in errors:
            rows.append(Row(FIGURE, f"import {module}", None, "ms", f"<= {TARGET_MS:.0f} ms", error=errors[module]))
            continue
        measured = reports[module]
        import_ms = median([report.total_ms for report in measured])
        ready_ms = median([report.first_event_ms for report in measured])
        rows.append(
            Row(
                FIGURE,
                f"import {module} from the deployment zip (as shipped, .pyc included)",
                import_ms,
                "ms",
                f"<= {TARGET_MS:.0f} ms",
                import_ms <= TARGET_MS,
                note="runtime SDK beside the zip, no development packages; own time of the top packages (ms): "
                + _listed(top_packages(measured, part="import")),
            )
        )
        rows.append(
            Row(
                FIGURE,
                f"{module} ready for its first event",
                ready_ms,
                "ms",
                note="the first event adds (ms): " + _listed(top_packages(measured, part="first_event")),
            )
        )
        if any(report.observability_ms for report in measured):
            rows.append(
                Row(
                    FIGURE,
                    f"{module}: of which EMF metrics and event logs",
                    median([report.observability_ms for report in measured]),
                    "ms",
                    note="cumulative import of " + ", ".join(OBSERVABILITY_MODULES) + " within the figure above "
                    "(Powertools Metrics: docs/observability.md)",
                )
            )
        details[module] = {
            "handler_string": HANDLERS[module],
            "import_ms": [report.total_ms for report in measured],
            "first_event_ms": [report.first_event_ms for report in measured],
            "top_imports_ms": dict(top_packages(measured, part="import")),
            "top_first_event_imports_ms": dict(top_packages(measured, part="first_event")),
        }
    if API_MODULE not in errors and REFERENCE_MODULE not in errors:
        # Each round's API import over the same round's evaluator ready: pairs measured seconds apart.
        ratios = [
            api.total_ms / reference.first_event_ms
            for api, reference in zip(reports[API_MODULE], reports[REFERENCE_MODULE], strict=True)
        ]
        ratio = median(ratios)
        api_ms = median([report.total_ms for report in reports[API_MODULE]])
        rows.append(
            Row(
                FIGURE,
                "API import / evaluator ready",
                ratio,
                "x",
                f"<= {API_RATIO_TARGET:.1f}",
                ratio <= API_RATIO_TARGET,
                note=f"median of {runs} rounds, each: import app / {REFERENCE_MODULE} ready for its first event, "
                f"measured one after the other (range {min(ratios):.2f}-{max(ratios):.2f})",
            )
        )
        rows.append(
            Row(
                FIGURE,
                "import app (API), absolute",
                api_ms,
                "ms",
                f"<= {API_QUIET_TARGET_MS:.0f} ms on a quiet machine",
                api_ms <= API_QUIET_TARGET_MS if load < QUIET_LOAD else None,
                note=f"load average {load:.1f} on 2 cores during the run"
                + ("" if load < QUIET_LOAD else f" (not quiet: judged only below {QUIET_LOAD:.0f})"),
            )
        )
        details["api_ratio"] = {"ratios": ratios, "load_average": loads}
    forbidden = package_contents(package)["forbidden_packages_found"]
    rows.append(
        Row(
            FIGURE,
            f"deployment zip {package.name}",
            package.stat().st_size / 1e6,
            "MB",
            "no boto3/botocore/test packages",
            not forbidden,
            note=f"forbidden packages found: {forbidden or 'none'}",
        )
    )
    return BenchmarkResult("cold_start", rows, details)
