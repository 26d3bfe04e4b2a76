"""`python -m bench.run` (`make bench`): run every benchmark, print one table, write JSON.

Results go to `bench/results/latest.json` and a timestamped copy. `--quick` (the default) keeps
the whole run within a few minutes on a shared 2-core machine; `--full` runs more records and
more repetitions. `--only NAME` runs a subset. The exit status is non-zero when a benchmark could
not run (its row says why); a missed target is a finding, reported in the table, not an error.

Each benchmark runs in an interpreter of its own, as each function runs in a container of its own:
one that ran after benchmark 1 in the same process (moto in-process for 100 s) measured the
evaluator's pure path at 35,401 records/s against 43,989-48,943 alone, minutes apart on a quiet
machine. The model benchmarks (`scaling`, `cost`) run here, on the others' results.
"""

from __future__ import annotations

from bench import environment

environment.prepare()

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.report import (  # noqa: E402
    BenchmarkResult,
    Row,
    format_table,
    result_from_json,
    result_to_json,
    to_document,
    write_results,
)

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = (
    "evaluator_requests",
    "throughput",
    "sender_concurrency",
    "noisy_neighbour",
    "descriptors",
    "write_units",
    "cold_start",
    "e2e_latency",
    "scaling",
    "cost",
)


def _runner(module: str) -> Callable[[bool], BenchmarkResult]:
    run: Callable[[bool], BenchmarkResult] = importlib.import_module(module).run
    return run


def run_isolated(module: str, quick: bool) -> BenchmarkResult:
    """`module.run(quick)` in a fresh interpreter (`--child`); its output goes to this process's."""
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        output = Path(directory) / "result.json"
        command = [sys.executable, "-m", "bench.run", "--child", module, "--child-output", str(output)]
        completed = subprocess.run([*command, "--quick" if quick else "--full"], check=False)
        if completed.returncode != 0 or not output.exists():
            raise RuntimeError(f"its interpreter exited with status {completed.returncode} (traceback above)")
        return result_from_json(json.loads(output.read_text(encoding="utf-8")))


def _child(module: str, output: Path, quick: bool) -> int:
    result = _runner(module)(quick)
    output.write_text(json.dumps(result_to_json(result)), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True, help="bounded run (default)")
    mode.add_argument("--full", dest="quick", action="store_false", help="more records and repetitions")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only these (repeatable)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory for the JSON results")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a module to run in this interpreter
    parser.add_argument("--child-output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child_output is None:
            parser.error("--child needs --child-output")
        return _child(args.child, args.child_output, args.quick)
    selected = args.only or list(BENCHMARKS)
    started_at = datetime.now(UTC)
    results: dict[str, BenchmarkResult] = {}
    failed = False
    for name in BENCHMARKS:
        if name not in selected:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            if name == "cost":
                from bench import cost

                if "evaluator_requests" not in results or "sender_concurrency" not in results:
                    raise RuntimeError("the cost model needs evaluator_requests and sender_concurrency in the same run")
                result = cost.run(results["evaluator_requests"], results["sender_concurrency"])
            elif name == "scaling":
                from bench import scaling

                # Driven by this run's measurements; missing ones come from the newest results file.
                result = scaling.run({done: outcome.details for done, outcome in results.items()})
            else:
                result = run_isolated(f"bench.{name}", args.quick)
        except Exception as exc:
            traceback.print_exc()
            failed = True
            result = BenchmarkResult(name, [Row(name, "benchmark", None, "", error=f"{type(exc).__name__}: {exc}")])
        result.seconds = time.perf_counter() - started
        print(f"  {name}: {result.seconds:.1f} s", file=sys.stderr, flush=True)
        results[name] = result
    ordered = list(results.values())
    print(format_table([row for result in ordered for row in result.rows]))
    if "cost" in results and "table" in results["cost"].details:
        print("\ncost per million conversions:")
        print(results["cost"].details["table"])
    document = to_document(ordered, started_at, {"quick": args.quick, "only": selected})
    latest, stamped = write_results(document, args.results, started_at)
    print(f"\nwritten: {latest} and {stamped}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
