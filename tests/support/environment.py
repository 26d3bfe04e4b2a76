"""The process environment of the tests and the benchmarks, set before anything imports `functions`.

pynamodb reads table names at import and caches connections on model classes, and a boto3 client
created before moto is imported escapes the mock: so the environment is fixed first, for every
tier of the tests (`tests/conftest.py`) and every benchmark (`bench/environment.py`). moto's
credentials and region, the account endpoint mode that moto's in-process DynamoDB streams need,
the `test` stage; nothing pointing at a real endpoint or profile.
"""

from __future__ import annotations

import os

TEST_ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POSTBACKS_STAGE": "test",
    "POSTBACKS_LOCAL_MODE": "1",
}
UNSET = ("AWS_ENDPOINT_URL", "AWS_PROFILE")


def use_test_environment(**extra: str) -> None:
    """Set the test environment (and `extra`) in this process; idempotent."""
    os.environ.update(TEST_ENVIRONMENT)
    os.environ.update(extra)
    for name in UNSET:
        os.environ.pop(name, None)
