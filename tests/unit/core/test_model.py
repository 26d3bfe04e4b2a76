from __future__ import annotations

import re

import pytest

from functions.core.model import (
    delivery_id_for,
    format_timestamp,
    new_postback_id,
    new_ulid,
    parse_timestamp,
    utc_now,
)

pytestmark = pytest.mark.unit


def test_delivery_id_is_the_same_for_the_same_postback_conversion_and_status() -> None:
    assert delivery_id_for("pb_1", "c-1", "approved") == delivery_id_for("pb_1", "c-1", "approved")


@pytest.mark.parametrize(
    "other", [("pb_2", "c-1", "approved"), ("pb_1", "c-2", "approved"), ("pb_1", "c-1", "rejected")]
)
def test_delivery_id_differs_when_any_part_of_the_key_differs(other: tuple[str, str, str]) -> None:
    assert delivery_id_for(*other) != delivery_id_for("pb_1", "c-1", "approved")


def test_delivery_id_cannot_be_forged_by_moving_the_separator() -> None:
    assert delivery_id_for("pb_1", "c-1x", "approved") != delivery_id_for("pb_1c", "-1x", "approved")


def test_delivery_id_is_url_safe() -> None:
    assert re.fullmatch(r"dl_[a-z2-7]{32}", delivery_id_for("pb_1", "c-1", "approved"))


def test_ulids_sort_by_creation_time() -> None:
    earlier = new_ulid(now_ms=1_700_000_000_000)
    later = new_ulid(now_ms=1_700_000_000_001)
    assert len(earlier) == 26
    assert earlier < later


def test_postback_ids_are_prefixed_and_unique() -> None:
    ids = {new_postback_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"pb_[0-9A-HJKMNP-TV-Z]{26}", value) for value in ids)


def test_timestamps_round_trip_and_sort_as_text() -> None:
    now = utc_now()
    text = format_timestamp(now)
    assert text.endswith("Z")
    assert parse_timestamp(text) == now
    assert format_timestamp(parse_timestamp("2026-11-24T10:00:00Z")) < text
