"""A handler that always fails, for the local function runner's tests."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise RuntimeError(f"crashed on {len(event['Records'])} records")
