from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from functions.core.conversion import MalformedRecordError, is_status_change, parse_change
from tests.support.conversions import conversion
from tests.support.streams import Raw, StreamBuilder

pytestmark = pytest.mark.unit


def test_insert_is_a_change_from_no_status() -> None:
    change = parse_change(StreamBuilder().insert(conversion()))
    assert change is not None
    assert change.previous_status is None
    assert change.conversion.status == "approved"
    assert is_status_change(change)


def test_modify_carries_the_previous_status() -> None:
    change = parse_change(StreamBuilder().modify(conversion(status="pending"), conversion(status="approved")))
    assert change is not None
    assert (change.previous_status, change.conversion.status) == ("pending", "approved")


def test_modify_with_the_same_status_is_not_a_status_change() -> None:
    change = parse_change(StreamBuilder().modify(conversion(payout=1), conversion(payout=2)))
    assert change is not None
    assert not is_status_change(change)


def test_remove_fires_nothing_and_is_not_malformed() -> None:
    assert parse_change(StreamBuilder().remove(conversion())) is None


@pytest.mark.parametrize("raw", ["APPROVED", "Approved", "CONVERSION_STATUS_APPROVED", "conversion_status_approved"])
def test_status_is_normalised(raw: str) -> None:
    change = parse_change(StreamBuilder().insert(conversion(status=raw)))
    assert change is not None and change.conversion.status == "approved"


def test_previous_status_is_normalised_so_a_case_change_is_not_a_status_change() -> None:
    change = parse_change(StreamBuilder().modify(conversion(status="CONVERSION_STATUS_APPROVED"), conversion()))
    assert change is not None and not is_status_change(change)


def test_optional_attributes_are_typed() -> None:
    change = parse_change(
        StreamBuilder().insert(
            conversion(aff_s1="abc", payout=Decimal("12.50"), coupon_codes=["X1", "X2"], unknown_thing={"a": 1})
        )
    )
    assert change is not None
    attributes = change.conversion.attributes
    assert attributes["aff_s1"] == "abc"
    assert attributes["payout"] == Decimal("12.50")
    assert attributes["coupon_codes"] == ["X1", "X2"]
    assert "unknown_thing" not in attributes


def test_change_time_is_the_stream_approximate_creation_time() -> None:
    change = parse_change(StreamBuilder().insert(conversion(), at=1_767_225_612))
    assert change is not None and change.changed_at == 1_767_225_612.0


@pytest.mark.parametrize(
    "raw",
    [datetime(2026, 1, 1, tzinfo=UTC), "2026-01-01T00:00:00Z", "1767225600"],
)
def test_change_time_is_accepted_as_datetime_or_text(raw: object) -> None:
    record = StreamBuilder().insert(conversion())
    record["dynamodb"]["ApproximateCreationDateTime"] = raw
    change = parse_change(record)
    assert change is not None and change.changed_at == 1_767_225_600.0


def _malformed_records() -> list[tuple[str, dict[str, Any]]]:
    stream = StreamBuilder()
    no_new_image = stream.insert(conversion())
    del no_new_image["dynamodb"]["NewImage"]
    no_old_image = stream.modify(conversion(status="pending"), conversion())
    del no_old_image["dynamodb"]["OldImage"]
    no_time = stream.insert(conversion())
    del no_time["dynamodb"]["ApproximateCreationDateTime"]
    unknown_event = stream.insert(conversion())
    unknown_event["eventName"] = "UPSERT"
    return [
        ("missing required attribute offer_id", stream.insert(conversion(offer_id=None))),
        ("attribute status must be a string (S)", stream.insert(conversion(status=Raw({"N": "1"})))),
        ("required attribute affiliate_id is empty", stream.insert(conversion(affiliate_id=" "))),
        ("unknown status 'paid'", stream.insert(conversion(status="paid"))),
        ("attribute payout must be a number (N)", stream.insert(conversion(payout="12.5"))),
        ("attribute payout is not a valid number: 'abc'", stream.insert(conversion(payout=Raw({"N": "abc"})))),
        ("attribute coupon_codes must be a list of strings (L of S)", stream.insert(conversion(coupon_codes="X"))),
        ("attribute coupon_codes[1] must be a string (S)", stream.insert(conversion(coupon_codes=["X", 3]))),
        ("attribute aff_s1 must be a string (S)", stream.insert(conversion(aff_s1=5))),
        ("missing NewImage on INSERT", no_new_image),
        ("missing OldImage on MODIFY (stream view type must be NEW_AND_OLD_IMAGES)", no_old_image),
        ("missing ApproximateCreationDateTime", no_time),
        ("unknown eventName 'UPSERT'", unknown_event),
    ]


@pytest.mark.parametrize(("reason", "record"), _malformed_records(), ids=lambda value: str(value)[:40])
def test_malformed_records_name_the_reason(reason: str, record: dict[str, Any]) -> None:
    with pytest.raises(MalformedRecordError) as caught:
        parse_change(record)
    assert caught.value.reason == reason


def test_null_optional_attribute_counts_as_absent() -> None:
    change = parse_change(StreamBuilder().insert(conversion(aff_s1=None) | {"aff_s2": None}))
    assert change is not None and "aff_s2" not in change.conversion.attributes
