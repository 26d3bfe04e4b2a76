"""local.conversions without a server: the item it builds, the endpoint it accepts, its arguments."""

from __future__ import annotations

from decimal import Decimal

import pytest

from functions.core.conversion import parse_image
from local.conversions import ConversionToolError, check_record, endpoint_url, new_record, run, to_item


def test_a_plain_record_becomes_a_typed_item() -> None:
    item = to_item({"a": "x", "n": 12.5, "i": 3, "l": ["p", None], "z": None, "b": False, "m": {"k": 1}})
    assert item == {
        "a": {"S": "x"},
        "n": {"N": "12.5"},
        "i": {"N": "3"},
        "l": {"L": [{"S": "p"}, {"NULL": True}]},
        "z": {"NULL": True},
        "b": {"BOOL": False},
        "m": {"M": {"k": {"N": "1"}}},
    }
    with pytest.raises(ConversionToolError, match="not a finite number"):
        to_item({"payout": float("nan")})


def test_a_new_record_is_what_the_evaluator_parses() -> None:
    record = new_record(
        affiliate_id="aff-1",
        offer_id="o-1",
        conversion_type="sale",
        status="pending",
        extra={"payout": Decimal("1.5")},
        now="2026-11-24T10:00:00Z",
    )
    assert str(record["conversion_id"]).startswith("conv-")
    assert record["created_at"] == record["status_changed_at"] == "2026-11-24T10:00:00Z"
    conversion = parse_image(to_item(record))
    assert (conversion.affiliate_id, conversion.status, conversion.attributes["payout"]) == (
        "aff-1",
        "pending",
        Decimal("1.5"),
    )
    with pytest.raises(ConversionToolError, match=r"attribute payout must be a number \(N\)"):
        check_record({**record, "payout": "1.5"})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://127.0.0.1:5000"),
        ({"MOTO_PORT": "5123"}, "http://127.0.0.1:5123"),
        ({"AWS_ENDPOINT_URL": "http://localhost:4566", "MOTO_PORT": "5123"}, "http://localhost:4566"),
        ({"AWS_ENDPOINT_URL": "http://[::1]:5000"}, "http://[::1]:5000"),
    ],
)
def test_the_endpoint_is_the_local_stack(environ: dict[str, str], expected: str) -> None:
    assert endpoint_url(environ) == expected


@pytest.mark.parametrize(
    "url", ["https://dynamodb.us-east-1.amazonaws.com", "http://10.0.0.5:5000", "http://moto:5000"]
)
def test_an_endpoint_off_loopback_is_refused(url: str) -> None:
    with pytest.raises(ConversionToolError, match="not a loopback endpoint"):
        endpoint_url({"AWS_ENDPOINT_URL": url})


def test_nothing_is_sent_when_the_record_is_refused_or_the_endpoint_is_not_local() -> None:
    # Unit tests have no sockets: reaching the network would raise something else.
    with pytest.raises(
        ConversionToolError, match=r"would refuse this record \(required attribute affiliate_id is empty\)"
    ):
        run(["put", "--affiliate", " ", "--offer", "o", "--type", "sale", "--status", "pending"], {})
    with pytest.raises(ConversionToolError, match="not a loopback endpoint"):
        run(["approve", "c1"], {"AWS_ENDPOINT_URL": "https://dynamodb.us-east-1.amazonaws.com"})


def test_bad_arguments_exit_with_usage() -> None:
    with pytest.raises(SystemExit):
        run(["put", "--affiliate", "a"], {})
    with pytest.raises(SystemExit):
        run(["put", "--affiliate", "a", "--offer", "o", "--type", "t", "--status", "pending", "--set", "novalue"], {})
