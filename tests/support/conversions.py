"""Postbacks (domain objects) and conversion records (plain dicts, docs/contract.md §3) for tests and benchmarks.

Stream records of these conversions are built with `tests.support.streams`.
"""

from __future__ import annotations

from typing import Any

from functions.core.model import Postback, Scope

# 2026-01-01T00:00:00Z, the default change time of tests.support.streams.
CHANGE_TIME = 1_767_225_600
BEFORE_CHANGES = "2025-12-31T23:00:00.000000Z"


def postback(
    postback_id: str = "pb_1",
    affiliate_id: str = "aff-1",
    *,
    scope: Scope = Scope.GLOBAL,
    included: tuple[str, ...] = (),
    excluded: tuple[str, ...] = (),
    types: tuple[str, ...] = ("sale",),
    statuses: tuple[str, ...] = ("approved",),
    url: str = "https://tracker.example/cb?click={affS1}&status={conversionStatus}&d={deliveryId}",
    enabled: bool = True,
    updated_at: str = BEFORE_CHANGES,
    created_at: str | None = None,
    last_success_at: str | None = None,
    consecutive_failures: int = 0,
) -> Postback:
    """A saved postback (version 1); created when last updated unless `created_at` says otherwise."""
    return Postback(
        id=postback_id,
        affiliate_id=affiliate_id,
        scope=scope,
        included_offer_ids=included,
        excluded_offer_ids=excluded,
        conversion_types=types,
        conversion_statuses=statuses,
        url=url,
        enabled=enabled,
        created_at=created_at or updated_at,
        updated_at=updated_at,
        version=1,
        last_success_at=last_success_at,
        consecutive_failures=consecutive_failures,
    )


def conversion(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "conversion_id": "c-1",
        "affiliate_id": "aff-1",
        "offer_id": "offer-1",
        "conversion_type": "sale",
        "status": "approved",
        "aff_s1": "click-1",
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}
