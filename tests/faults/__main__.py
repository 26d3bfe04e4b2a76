"""`python -m tests.faults [--scenarios N] [--seed S] [--without FIX] [--only I] [--json PATH]` (`make faults`)."""

from __future__ import annotations

import argparse
import sys
import time

from tests.support.environment import use_test_environment

use_test_environment()

from tests.faults.campaign import DEFAULT_RATE, report_json, run_campaign  # noqa: E402
from tests.faults.fixes import FIXES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--scenarios", type=int, default=5000, help="how many scenarios (default 5000)")
    parser.add_argument("--seed", type=int, default=1, help="the seed: the same seed gives the same report")
    parser.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help=f"faults per call in a faulted scenario ({DEFAULT_RATE})"
    )
    parser.add_argument(
        "--without", action="append", default=[], choices=sorted(FIXES), help="turn a fix off (repeatable)"
    )
    parser.add_argument("--only", type=int, action="append", help="run only this scenario index (repeatable)")
    parser.add_argument("--json", help="also write the report as JSON to this path")
    args = parser.parse_args(argv)
    if args.scenarios < 1:
        parser.error("--scenarios must be at least 1")
    started = time.monotonic()
    report = run_campaign(args.seed, args.scenarios, args.rate, indices=args.only, without=tuple(args.without))
    print(report.render())
    print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(report_json(report))
    return 0 if report.lost == 0 and report.doubled == 0 and not report.silent_kinds() else 1


if __name__ == "__main__":
    sys.exit(main())
