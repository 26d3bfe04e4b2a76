"""On-call command line tools (python -m functions.cli); see docs/cli.md and docs/runbook.md."""

from functions.cli.app import main

__all__ = ["main"]
