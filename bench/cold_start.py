"""Benchmark 4: cold start — import time of each handler module, and the deployment package.

Each handler module is imported in a fresh interpreter (`python -X importtime -c "import m"`),
as Lambda does on a cold start, the median of several runs, with `_HANDLER` set to the handler
string as the Lambda runtime sets it (a handler may load its own dependencies at init only in its
own Lambda). Lambda zips carry no `.pyc` while the runtime's standard library is compiled, so the
headline runs compile the zip's code — the project and every installed package — from source and
read the standard library's bytecode: `PYTHONDONTWRITEBYTECODE=1` with a throw-away
`PYTHONPYCACHEPREFIX` that holds only the standard library's bytecode. Measured alongside: the
same with bytecode for everything (as `make package` could ship it), everything from source
including the standard library (this benchmark's earlier method, which overstates a cold start),
and "ready for the first event": the handler plus the modules its first invocation imports lazily
(`FIRST_EVENT_IMPORTS`), so that deferring an import cannot hide its cost. The `-X importtime`
report names the imports that dominate. The package figures come from `dist/` when `make package`
has built it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
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
# The handler string Lambda is configured with (`_HANDLER` in the runtime's environment).
HANDLER_STRINGS = {
    "functions.evaluator.handler": "functions.evaluator.handler.on_conversion_change",
    "functions.sender.handler": "functions.sender.handler.on_delivery_message",
    "app": "app.app",
}
# What the first invocation imports that the handler module defers (bootstrap's lazy getters;
# `functions.storage.queues.sqs_client` imports boto3 when it builds the client).
FIRST_EVENT_IMPORTS = {
    "functions.evaluator.handler": (
        "functions.evaluator.service",
        "functions.storage.deliveries",
        "functions.storage.postbacks",
        "functions.storage.queues",
        "boto3",
    ),
    "functions.sender.handler": ("functions.sender.service", "boto3"),
    "app": ("functions.api.service", "functions.storage.postbacks"),
}
TARGET_MS = 300.0
IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")
FORBIDDEN_IN_PACKAGE = ("boto3/", "botocore/", "pytest/", "moto/", "_pytest/", "hypothesis/", "mypy/", "ruff/")


@dataclass(frozen=True)
class ImportReport:
    total_ms: float
    # Milliseconds spent in each top-level package's own modules (self times, summed).
    packages_ms: dict[str, float]
    # The handler plus what its first event imports (the sum of their outermost imports).
    first_event_ms: float = 0.0


def parse_importtime(stderr: str, module: str, first_event: Sequence[str] = ()) -> ImportReport:
    """The `-X importtime` report: cumulative time of `module`, and the self time of each top-level package.

    `first_event_ms` adds the outermost imports of `first_event` (a module the handler already
    imported does not appear again at the outermost level, so it is not counted twice).
    """
    total_us = 0
    outermost: dict[str, int] = {}
    packages: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match is None:
            continue
        own = int(match.group(1))
        cumulative = int(match.group(2))
        depth = len(match.group(3)) // 2
        name = match.group(4)
        if depth == 0:
            outermost[name] = cumulative
        if name == module and depth == 0:
            total_us = cumulative
        packages[name.split(".")[0]] += own / 1000.0
    first_event_us = total_us + sum(outermost.get(name, 0) for name in first_event if name != module)
    return ImportReport(total_us / 1000.0, dict(packages), first_event_us / 1000.0)


def keep_only_stdlib_bytecode(cache: Path, stdlib: Path) -> int:
    """Delete from a `PYTHONPYCACHEPREFIX` tree every `.pyc` but the standard library's; return the kept count."""
    stdlib_mirror = cache / stdlib.relative_to(stdlib.anchor)
    kept = 0
    for pyc in cache.rglob("*.pyc"):
        relative = pyc.relative_to(stdlib_mirror).parts if pyc.is_relative_to(stdlib_mirror) else None
        if relative is None or relative[0] in ("site-packages", "dist-packages"):
            pyc.unlink()
        else:
            kept += 1
    return kept


def measure_import(module: str, bytecode: str) -> ImportReport:
    """One fresh interpreter importing `module` (and its first event's imports).

    `bytecode`: "stdlib" (the zip's code from source, the standard library compiled, as in Lambda),
    "all" (everything compiled) or "none" (everything from source, the standard library too).
    """
    first_event = FIRST_EVENT_IMPORTS.get(module, ())
    statement = "; ".join(f"import {name}" for name in (module, *first_event))
    with tempfile.TemporaryDirectory(prefix="bench-pyc-") as cache:
        environment = subprocess_environment(PYTHONPYCACHEPREFIX=cache, _HANDLER=HANDLER_STRINGS.get(module, ""))
        # Inherited, it would silently turn the compiling run into one more run from source.
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        if bytecode != "none":
            # One run to compile, then the measured run reads the bytecode.
            subprocess.run([sys.executable, "-c", statement], cwd=ROOT, env=environment, check=True)
        if bytecode == "stdlib":
            keep_only_stdlib_bytecode(Path(cache), Path(sysconfig.get_paths()["stdlib"]))
        if bytecode != "all":
            environment["PYTHONDONTWRITEBYTECODE"] = "1"
        stderr = _run_importtime(["-X", "importtime", "-c", statement], ROOT, environment, f"import {module}")
    return parse_importtime(stderr, module, first_event)


def _run_importtime(arguments: list[str], cwd: Path, environment: dict[str, str], what: str) -> str:
    """Run a fresh interpreter with `arguments`; its `-X importtime` report (stderr)."""
    completed = subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{what} failed: {completed.stderr.strip().splitlines()[-1:]}")
    return completed.stderr


# What the Lambda Python runtime provides beside the zip (the zip leaves the AWS SDK out).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")


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
    """One fresh interpreter importing `module` from the unpacked zip, as Lambda does.

    `-S` keeps the development environment's site-packages out, so only the zip's code (with the
    bytecode `make package` compiles into it) and the runtime's SDK are importable.
    """
    first_event = FIRST_EVENT_IMPORTS.get(module, ())
    statement = "import sys; sys.path[:0] = sys.argv[1:3]; " + "; ".join(
        f"import {name}" for name in (module, *first_event)
    )
    environment = subprocess_environment(_HANDLER=HANDLER_STRINGS.get(module, ""), PYTHONDONTWRITEBYTECODE="1")
    stderr = _run_importtime(
        ["-S", "-X", "importtime", "-c", statement, str(code), str(runtime)],
        code,
        environment,
        f"import {module} from the zip",
    )
    return parse_importtime(stderr, module, first_event)


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
    package = find_package()
    if package is not None:
        with tempfile.TemporaryDirectory(prefix="bench-lambda-") as scratch:
            code, runtime = unpack_as_lambda(package, Path(scratch))
            for label, module in HANDLER_MODULES:
                try:
                    shipped = [measure_zip_import(module, code, runtime) for _ in range(runs)]
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    rows.append(
                        Row(
                            "4 cold start",
                            f"import {module} from the zip",
                            None,
                            "ms",
                            f"<= {TARGET_MS:.0f} ms",
                            None,
                            error=str(exc),
                        )
                    )
                    continue
                shipped_ms = median([report.total_ms for report in shipped])
                rows.append(
                    Row(
                        "4 cold start",
                        f"import {module} from the deployment zip (as shipped, .pyc included)",
                        shipped_ms,
                        "ms",
                        f"<= {TARGET_MS:.0f} ms",
                        shipped_ms <= TARGET_MS,
                        note="runtime SDK beside the zip, no development packages; top packages (ms): "
                        + ", ".join(f"{name} {ms:.0f}" for name, ms in top_packages(shipped)),
                    )
                )
                rows.append(
                    Row(
                        "4 cold start",
                        f"{module} from the zip, ready for its first event",
                        median([report.first_event_ms for report in shipped]),
                        "ms",
                    )
                )
                details[f"{label}_from_zip_ms"] = [report.total_ms for report in shipped]
    for label, module in HANDLER_MODULES:
        try:
            cold = [measure_import(module, bytecode="stdlib") for _ in range(runs)]
            warm = [measure_import(module, bytecode="all") for _ in range(max(3, runs // 2))]
            source = [measure_import(module, bytecode="none") for _ in range(max(3, runs // 2))]
        except (RuntimeError, subprocess.SubprocessError) as exc:
            rows.append(
                Row("4 cold start", f"import {module}", None, "ms", f"<= {TARGET_MS:.0f} ms", None, error=str(exc))
            )
            continue
        cold_ms = median([report.total_ms for report in cold])
        warm_ms = median([report.total_ms for report in warm])
        source_ms = median([report.total_ms for report in source])
        first_event_ms = median([report.first_event_ms for report in cold])
        top = top_packages(cold)
        rows.append(
            Row(
                "4 cold start",
                f"import {module} (development environment, project code from source)",
                cold_ms,
                "ms",
                note="top packages by own time, handler and first-event imports (ms): "
                + ", ".join(f"{name} {ms:.0f}" for name, ms in top)
                + f"; everything from source, the standard library too: {source_ms:.0f} ms",
            )
        )
        rows.append(
            Row(
                "4 cold start",
                f"import {module} (development environment, with .pyc)",
                warm_ms,
                "ms",
            )
        )
        rows.append(
            Row(
                "4 cold start",
                f"{module} ready for its first event (development environment, project code from source)",
                first_event_ms,
                "ms",
                note="the handler plus what its first invocation imports: " + ", ".join(FIRST_EVENT_IMPORTS[module]),
            )
        )
        details[label] = {
            "module": module,
            "handler_string": HANDLER_STRINGS[module],
            "zip_code_from_source_ms": [report.total_ms for report in cold],
            "with_bytecode_ms": [report.total_ms for report in warm],
            "everything_from_source_ms": [report.total_ms for report in source],
            "first_event_ms": [report.first_event_ms for report in cold],
            "top_imports_ms": dict(top),
        }
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
