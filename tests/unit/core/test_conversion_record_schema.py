"""docs/conversion-record.schema.json agrees with the evaluator's parser (functions/core/conversion.py).

Each sample is a conversion record in plain JSON, as the conversion service's owners read the
schema; it becomes a DynamoDB item the way `local.conversions` writes one (string → S, number → N,
array → L, null → NULL) and a stream record the evaluator parses. Valid samples validate and parse;
invalid ones are refused by both, the parser with the reason given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from functions.core.conversion import (
    NUMBER_ATTRIBUTES,
    REQUIRED_ATTRIBUTES,
    STRING_ATTRIBUTES,
    STRING_LIST_ATTRIBUTES,
    MalformedRecordError,
    parse_change,
)
from functions.core.model import CONVERSION_STATUSES
from local.conversions import to_item

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "docs" / "conversion-record.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)

MINIMAL: dict[str, Any] = {
    "conversion_id": "conv-1",
    "affiliate_id": "aff-1",
    "offer_id": "offer-7",
    "conversion_type": "sale",
    "status": "pending",
}


def _with(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL, **changes}


def _without(name: str) -> dict[str, Any]:
    return {key: value for key, value in MINIMAL.items() if key != name}


VALID: dict[str, dict[str, Any]] = {
    "minimal": MINIMAL,
    "the schema's example": SCHEMA["examples"][0],
    "status in capitals": _with(status="APPROVED"),
    "status with the enum prefix": _with(status="CONVERSION_STATUS_ON_HOLD"),
    "status in mixed case with spaces": _with(status="  Conversion_Status_not_allowed "),
    "every optional attribute": _with(
        cid="c-1",
        external_cid="e-1",
        external_id="x-1",
        aff_s1="a1",
        aff_s2="a2",
        aff_s3="",
        aff_s4="a4",
        aff_s5="a5",
        adv_s1="v1",
        adv_s2="v2",
        adv_s3="v3",
        adv_s4="v4",
        adv_s5="v5",
        currency="EUR",
        customer_id="cust-1",
        created_at="2026-11-24T10:00:00Z",
        status_changed_at="2026-11-24T10:05:00Z",
        click_time="2026-11-24T09:59:00Z",
        payout=12.5,
        revenue=20,
        sale_amount=-3.25,
        coupon_codes=["SPRING10", "VIP"],
    ),
    "nulls count as absent": _with(payout=None, aff_s1=None, coupon_codes=None, currency=None),
    "no coupon codes": _with(coupon_codes=[]),
    "unknown attributes of any type are ignored": _with(extra={"nested": [1, True]}, flag=True, score=3),
}

# Each invalid sample with the reason the parser gives.
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    **{
        f"no {name}": (_without(name), f"missing required attribute {name}")
        for name in ("conversion_id", "affiliate_id", "offer_id", "conversion_type", "status")
    },
    "affiliate_id null": (_with(affiliate_id=None), "missing required attribute affiliate_id"),
    "offer_id a number": (_with(offer_id=7), "attribute offer_id must be a string (S)"),
    "conversion_type empty": (_with(conversion_type=""), "required attribute conversion_type is empty"),
    "conversion_id blank": (_with(conversion_id="   "), "required attribute conversion_id is empty"),
    "status blank": (_with(status=" "), "required attribute status is empty"),
    "unknown status": (_with(status="shipped"), "unknown status 'shipped'"),
    "the enum prefix alone": (_with(status="CONVERSION_STATUS_"), "unknown status 'CONVERSION_STATUS_'"),
    "status a list": (_with(status=["approved"]), "attribute status must be a string (S)"),
    "payout a string": (_with(payout="12.5"), "attribute payout must be a number (N)"),
    "aff_s1 a number": (_with(aff_s1=5), "attribute aff_s1 must be a string (S)"),
    "currency a boolean": (_with(currency=True), "attribute currency must be a string (S)"),
    "created_at an object": (_with(created_at={"at": 1}), "attribute created_at must be a string (S)"),
    "coupon_codes a string": (
        _with(coupon_codes="SPRING10"),
        "attribute coupon_codes must be a list of strings (L of S)",
    ),
    "a coupon code a number": (_with(coupon_codes=["A", 1]), "attribute coupon_codes[1] must be a string (S)"),
}


def _parse(record: dict[str, Any]) -> Any:
    return parse_change(
        {
            "eventName": "INSERT",
            "dynamodb": {"NewImage": to_item(record), "ApproximateCreationDateTime": 1795000000},
        }
    )


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_names_every_attribute_the_parser_reads_with_its_type() -> None:
    properties = SCHEMA["properties"]
    assert set(SCHEMA["required"]) == set(REQUIRED_ATTRIBUTES)
    assert set(properties) == (
        set(REQUIRED_ATTRIBUTES) | STRING_ATTRIBUTES | NUMBER_ATTRIBUTES | STRING_LIST_ATTRIBUTES
    )
    for name in STRING_ATTRIBUTES:
        assert properties[name]["type"] == ["string", "null"], name
    for name in NUMBER_ATTRIBUTES:
        assert properties[name]["type"] == ["number", "null"], name
    for name in STRING_LIST_ATTRIBUTES:
        assert properties[name]["type"] == ["array", "null"] and properties[name]["items"] == {"type": "string"}


def test_the_status_pattern_accepts_exactly_the_contract_statuses() -> None:
    description = SCHEMA["properties"]["status"]["description"]
    assert all(status in description for status in CONVERSION_STATUSES)
    for status in CONVERSION_STATUSES:
        for spelling in (status, status.upper(), f"CONVERSION_STATUS_{status.upper()}", f" {status.title()} "):
            assert VALIDATOR.is_valid(_with(status=spelling)), spelling
            assert _parse(_with(status=spelling)) is not None


@pytest.mark.parametrize("name", sorted(VALID))
def test_a_valid_record_validates_and_parses(name: str) -> None:
    record = VALID[name]
    assert list(VALIDATOR.iter_errors(record)) == []
    change = _parse(record)
    assert change is not None
    assert change.conversion.conversion_id == record["conversion_id"]
    assert change.conversion.affiliate_id == record["affiliate_id"]


@pytest.mark.parametrize("name", sorted(INVALID))
def test_an_invalid_record_is_refused_by_the_schema_and_by_the_parser_with_its_reason(name: str) -> None:
    record, reason = INVALID[name]
    assert not VALIDATOR.is_valid(record)
    with pytest.raises(MalformedRecordError) as refused:
        _parse(record)
    assert refused.value.reason == reason
