"""The benchmark process environment, set before anything imports `functions`.

The tests' environment (`tests/support/environment.py`: moto credentials, region, the account
endpoint mode that moto's in-process DynamoDB streams need, the `test` stage), plus what the
benchmarks need: the rules cache at its default and loopback targets allowed.
"""

from __future__ import annotations

import os

from tests.support.environment import TEST_ENVIRONMENT, UNSET, use_test_environment

BENCH_SETTINGS = {
    "POSTBACKS_RULES_CACHE_SECONDS": "5",
    "POSTBACKS_ALLOW_PRIVATE_TARGETS": "1",
}


def prepare() -> None:
    """Fix the environment for an in-process benchmark (idempotent)."""
    use_test_environment(**BENCH_SETTINGS)


def subprocess_environment(**extra: str) -> dict[str, str]:
    """The environment for a child process (the local stack, a fresh interpreter)."""
    environment = {key: value for key, value in os.environ.items() if key not in UNSET}
    environment.update(TEST_ENVIRONMENT)
    environment.update(BENCH_SETTINGS)
    environment.update(extra)
    return environment
