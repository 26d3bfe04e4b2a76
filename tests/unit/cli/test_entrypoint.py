"""`python -m functions.cli` as an engineer runs it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from functions.cli import main

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def test_module_help_lists_the_commands_and_exits_zero() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT")}
    result = subprocess.run(
        [sys.executable, "-m", "functions.cli", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "dlq" in result.stdout and "recover" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "--help"],
        ["dlq", "stats", "--help"],
        ["dlq", "list", "--help"],
        ["dlq", "show", "--help"],
        ["dlq", "redrive", "--help"],
        ["dlq", "purge", "--help"],
        ["recover", "--help"],
    ],
)
def test_every_command_has_help(argv: list[str]) -> None:
    out = io.StringIO()
    assert main(argv, stdout=out, stderr=io.StringIO()) == 0
    assert "usage:" in out.getvalue()


def test_bad_arguments_exit_2_with_a_message() -> None:
    err = io.StringIO()
    assert main(["dlq", "redrive", "--rate", "fast"], stdout=io.StringIO(), stderr=err) == 2
    assert "not a rate" in err.getvalue()
    assert main(["dlq", "nonsense"], stdout=io.StringIO(), stderr=io.StringIO()) == 2
