from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from chalice.app import Chalice, DynamoDBEventConfig

from functions import settings
from functions.evaluator.handler import evaluator

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def test_handler_is_deployed_from_its_own_module_on_the_conversions_stream() -> None:
    app = Chalice(app_name="evaluator-registration")
    app.register_blueprint(evaluator)
    (source,) = [s for s in app.event_sources if isinstance(s, DynamoDBEventConfig)]
    assert source.handler_string == "functions.evaluator.handler.on_conversion_change"
    assert source.stream_arn == settings.CONVERSIONS_STREAM_ARN
    assert (source.batch_size, source.starting_position) == (100, "TRIM_HORIZON")


def test_handler_import_chain_excludes_the_api_and_creates_no_client() -> None:
    probe = (
        "import sys, functions.evaluator.handler as h; "
        "bad = sorted(m for m in sys.modules if m == 'app' or m.startswith(('functions.api', 'pydantic', 'jwt'))); "
        "assert not bad, bad; "
        "import functions.bootstrap as b; assert b.conversion_evaluator.cache_info().currsize == 0"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
