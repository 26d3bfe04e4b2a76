"""Benchmark 4's `-X importtime` report parser."""

from __future__ import annotations

import pytest

from bench.cold_start import parse_importtime

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
