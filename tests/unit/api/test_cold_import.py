"""The API's Lambda imports `app` without the AWS SDK, pynamodb, PyJWT or pydantic.

Its cold start is measured in benchmark 4 (docs/performance.md); this keeps what it loads from
growing back unnoticed: those load with the first request that needs them — the storage stack
with the first one that reads or writes, PyJWT with the first token, pydantic and the request
models with the first body to check (create, patch, test fire). Routes that read no body answer
without pydantic, and a request model is built only when a request first uses it.
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
at_import = sorted(sys.modules)

from chalice.test import Client
from tests.support.api_client import ADMIN
statuses = {}
with Client(app.app) as client:
    for method, path, headers in [
        ("GET", "/health", {}),
        ("GET", "/postbacks", {}),
        ("GET", "/parameters", ADMIN),
        ("PUT", "/health", {}),
        ("OPTIONS", "/postbacks", {}),
    ]:
        statuses[f"{method} {path}"] = client.http.request(method, path, headers=headers).status_code
after_requests = sorted(sys.modules)

from functions.api import schemas
built = [name for name, model in vars(schemas).items()
         if isinstance(model, type) and issubclass(model, schemas.Schema) and model is not schemas.Schema
         and model.__pydantic_complete__]
print(json.dumps({"import": at_import, "requests": after_requests, "statuses": statuses, "built": built}))
"""
PYDANTIC = {"pydantic", "pydantic_core", "annotated_types", "typing_inspection", "functions.api.schemas"}


def _probe() -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    loaded: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return loaded


@pytest.fixture(scope="module")
def probe() -> dict[str, object]:
    return _probe()


def _loaded(modules: object, names: set[str]) -> list[str]:
    assert isinstance(modules, list)
    return sorted(module for module in modules if module in names or module.split(".")[0] in names)


def test_importing_the_api_loads_no_aws_sdk_no_pynamodb_no_jwt_and_no_pydantic(probe: dict[str, object]) -> None:
    heavy = {"boto3", "botocore", "pynamodb", "jwt", "urllib3"} | PYDANTIC
    assert _loaded(probe["import"], heavy) == []


def test_routes_without_a_body_answer_without_loading_pydantic(probe: dict[str, object]) -> None:
    assert probe["statuses"] == {
        "GET /health": 200,
        "GET /postbacks": 401,
        "GET /parameters": 200,
        "PUT /health": 405,
        "OPTIONS /postbacks": 204,
    }
    assert _loaded(probe["requests"], PYDANTIC) == []


def test_no_request_or_response_schema_is_built_before_a_request_uses_it(probe: dict[str, object]) -> None:
    assert probe["built"] == []
