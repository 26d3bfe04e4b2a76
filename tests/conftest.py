"""Test environment, set before anything imports the application (`tests/support/environment.py`),
and the tier marker of every test.

pynamodb reads table names at import and caches connections on model classes, and a boto3
client created before moto is imported escapes the mock: so the environment is fixed here, at
the top, for every tier.
"""

from __future__ import annotations

from tests.support.environment import use_test_environment

use_test_environment()

from pathlib import Path  # noqa: E402

import moto  # noqa: E402, F401  (imported before any client exists)
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# No timed tests: a property is judged by its examples, never by how long one took on a busy machine.
settings.register_profile("untimed", deadline=None)
settings.load_profile("untimed")

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
