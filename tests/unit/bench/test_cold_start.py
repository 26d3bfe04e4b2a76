"""Benchmark 4's pure helpers: the `-X importtime` report and the standard-library-only bytecode cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cold_start import keep_only_stdlib_bytecode, parse_importtime

pytestmark = pytest.mark.unit

REPORT = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 | site
import time:      2000 |       2000 |     botocore.utils
import time:       500 |       2500 |   botocore.client
import time:       300 |       3000 | pynamodb
import time:       400 |       3600 | functions.sender.handler
import time:       700 |        900 |   urllib3
import time:       200 |       1100 | functions.sender.service
import time:      1500 |       1500 | boto3
"""


def test_the_handler_total_and_each_package_own_time() -> None:
    report = parse_importtime(REPORT, "functions.sender.handler")
    assert report.total_ms == pytest.approx(3.6)
    assert report.packages_ms["botocore"] == pytest.approx(2.5)  # self times of all its modules
    assert report.packages_ms["functions"] == pytest.approx(0.6)


def test_ready_for_the_first_event_adds_the_deferred_imports_once() -> None:
    report = parse_importtime(REPORT, "functions.sender.handler", ("functions.sender.service", "boto3", "pynamodb"))
    # pynamodb is counted in the report only where it is outermost: 3.6 + 1.1 + 1.5 + 3.0
    assert report.first_event_ms == pytest.approx(9.2)


def test_only_the_standard_library_bytecode_is_kept(tmp_path: Path) -> None:
    stdlib = Path("/opt/python/lib/python3.11")
    mirror = tmp_path / "opt/python/lib/python3.11"
    kept = [mirror / "typing.cpython-311.pyc", mirror / "email/utils.cpython-311.pyc"]
    dropped = [
        mirror / "site-packages/botocore/client.cpython-311.pyc",
        tmp_path / "work/project/functions/settings.cpython-311.pyc",
    ]
    for path in kept + dropped:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert keep_only_stdlib_bytecode(tmp_path, stdlib) == 2
    assert all(path.exists() for path in kept)
    assert not any(path.exists() for path in dropped)
