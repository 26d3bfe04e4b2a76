"""Test environment, set before anything imports the application.

pynamodb reads table names at import and caches connections on model classes, and a boto3
client created before moto is imported escapes the mock: so the environment is fixed here, at
the top, for every tier.
"""

from __future__ import annotations

import os

os.environ.update(
    {
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
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

from pathlib import Path

import moto  # noqa: F401  (imported before any client exists)
import pytest

_TIERS = ("unit", "integration", "e2e", "infrastructure")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries the marker of its tier (its top folder under tests/)."""
    root = Path(__file__).parent
    for item in items:
        try:
            tier = Path(item.path).relative_to(root).parts[0]
        except ValueError:
            continue
        if tier in _TIERS:
            item.add_marker(getattr(pytest.mark, tier))
