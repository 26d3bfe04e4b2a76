"""The API's Lambda imports `app` without the AWS SDK, pynamodb, PyJWT or built pydantic validators.

Its cold start is measured in benchmark 4 (docs/performance.md); this keeps what it loads from
growing back unnoticed: those load with the first request that needs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import json, sys
import app
from functions.api import schemas
built = [name for name, model in vars(schemas).items()
         if isinstance(model, type) and issubclass(model, schemas.Schema) and model is not schemas.Schema
         and model.__pydantic_complete__]
print(json.dumps({"modules": sorted(sys.modules), "built": built}))
"""


def _imported_by_app() -> dict[str, list[str]]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    loaded: dict[str, list[str]] = json.loads(completed.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_api_loads_no_aws_sdk_no_pynamodb_and_no_jwt() -> None:
    loaded = _imported_by_app()
    heavy = {"boto3", "botocore", "pynamodb", "jwt", "urllib3"}
    assert heavy.isdisjoint(loaded["modules"]), sorted(heavy & set(loaded["modules"]))


def test_no_request_or_response_schema_is_built_at_import() -> None:
    assert _imported_by_app()["built"] == []
