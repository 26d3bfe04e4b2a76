"""The benchmark process environment, set before anything imports `functions`.

The same settings as the tests (`tests/conftest.py`): moto credentials, region, the account
endpoint mode that moto's in-process DynamoDB streams need, the `test` stage. Benchmarks that
need more (the rules cache, private targets) set it here, before the first import.
"""

from __future__ import annotations

import os

BENCH_ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POSTBACKS_STAGE": "test",
    "POSTBACKS_LOCAL_MODE": "1",
    "POSTBACKS_RULES_CACHE_SECONDS": "5",
    "POSTBACKS_ALLOW_PRIVATE_TARGETS": "1",
}
UNSET = ("AWS_ENDPOINT_URL", "AWS_PROFILE")


def prepare() -> None:
    """Fix the environment for an in-process benchmark (idempotent)."""
    os.environ.update(BENCH_ENVIRONMENT)
    for name in UNSET:
        os.environ.pop(name, None)


def subprocess_environment(**extra: str) -> dict[str, str]:
    """The environment for a child process (the local stack, a fresh interpreter)."""
    environment = {key: value for key, value in os.environ.items() if key not in UNSET}
    environment.update(BENCH_ENVIRONMENT)
    environment.update(extra)
    return environment
