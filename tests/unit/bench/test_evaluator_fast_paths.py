"""The evaluator's optimised pure path (benchmark 2) gives exactly the results of the reference path.

Reference: every postback tested with `postback_fires`, every URL rendered from the whole
`conversion_values` catalogue with `render_url(with_ids(...))`, the host parsed from the rendered
URL; images parsed as generic mappings. Checked on the benchmark's own workload and on edge cases.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import pytest

from bench.workload import RecordGenerator, postbacks_of
from functions.core.conversion import MalformedRecordError, parse_change, parse_image
from functions.core.matching import match_change, plan_delivery, postback_fires
from functions.core.model import ConversionChange, Postback, delivery_id_for
from functions.core.placeholders import CATALOGUE
from functions.core.rendering import (
    ChangeValues,
    RenderError,
    conversion_values,
    render_change_url,
    render_url,
    with_ids,
)
from tests.support.conversions import CHANGE_TIME, postback
from tests.support.streams import StreamBuilder

pytestmark = pytest.mark.unit


def _changes(count: int) -> Iterator[tuple[ConversionChange, list[Postback]]]:
    generator = RecordGenerator(random.Random(11), affiliates=50)
    for generated in generator.batch(count, time.time()):
        change = parse_change(generated.record)
        assert change is not None
        yield change, postbacks_of(generated.affiliate_rank)


def _reference(change: ConversionChange, postbacks: list[Postback]) -> list[tuple[str, str, str]]:
    values = conversion_values(change)
    planned = []
    for candidate in postbacks:
        if postback_fires(candidate, change):
            conversion = change.conversion
            delivery_id = delivery_id_for(candidate.id, conversion.conversion_id, conversion.status)
            url = render_url(candidate.url, with_ids(values, candidate.id, delivery_id))
            planned.append((delivery_id, url, urlsplit(url).hostname or ""))
    return planned


def _deep_proxy(image: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({name: MappingProxyType(dict(value)) for name, value in image.items()})


def test_match_change_equals_the_reference_on_the_benchmark_workload() -> None:
    fired = 0
    for change, postbacks in _changes(600):
        result = match_change(change, postbacks)
        got = [(d.delivery_id, d.url, d.target_host) for d in result.deliveries]
        assert got == _reference(change, postbacks)
        assert result.failures == ()
        fired += len(got)
    assert fired > 100  # the workload did exercise rendering


def test_parsing_plain_dicts_equals_parsing_other_mappings() -> None:
    generator = RecordGenerator(random.Random(5), affiliates=20)
    for generated in generator.batch(200, time.time()):
        image = generated.record["dynamodb"]["NewImage"]
        assert parse_image(image) == parse_image(_deep_proxy(image))


def test_change_values_compute_each_catalogue_value_like_conversion_values() -> None:
    change = parse_change(
        StreamBuilder().insert(
            {
                "conversion_id": "c-1",
                "affiliate_id": "aff-1",
                "offer_id": "offer-1",
                "conversion_type": "sale",
                "status": "APPROVED",
                "aff_s1": "a b&c=d",
                "payout": Decimal("12.50"),
                "coupon_codes": ["SPRING", "X"],
                "created_at": "2026-11-24T10:00:00Z",
            }
        )
    )
    assert change is not None
    lazy = ChangeValues(change)
    expected = conversion_values(change)
    for name in expected:
        assert lazy[name] == expected[name]
    assert lazy["notAPlaceholder"] == ""
    assert lazy["deliveryId"] == ""  # IDs are the caller's, never the change's


@pytest.mark.parametrize(
    "template",
    [
        "https://t.example/cb?c={affS1}&d={deliveryId}&p={postbackId}&s={conversionStatus}&x={payout}",
        "https://t.example/{affS1}/x?c={couponCode}#{conversionTimestamp}",
        "https://t.example/plain",
        "https://t.example:8443/cb?unknown={nope}",
    ],
)
def test_render_change_url_equals_render_url_with_every_value(template: str) -> None:
    change = parse_change(StreamBuilder().insert({**_conversion(), "aff_s1": "../x y", "coupon_codes": ["Q"]}))
    assert change is not None
    expected = render_url(template, with_ids(conversion_values(change), "pb_1", "dl_1"))
    assert render_change_url(template, ChangeValues(change), "pb_1", "dl_1") == expected


def test_a_value_that_would_move_the_path_is_refused_on_both_paths() -> None:
    change = parse_change(StreamBuilder().insert({**_conversion(), "aff_s1": ".."}))
    assert change is not None
    template = "https://t.example/a/{affS1}/b"
    with pytest.raises(RenderError):
        render_url(template, with_ids(conversion_values(change), "pb_1", "dl_1"))
    with pytest.raises(RenderError):
        render_change_url(template, ChangeValues(change), "pb_1", "dl_1")
    result = match_change(change, [postback(url=template)])
    assert result.deliveries == () and len(result.failures) == 1


def test_plan_delivery_gives_the_same_delivery_with_or_without_precomputed_values() -> None:
    change = parse_change(StreamBuilder().insert(_conversion()))
    assert change is not None
    candidate = postback()
    assert plan_delivery(candidate, change) == plan_delivery(candidate, change, conversion_values(change))


def test_status_unchanged_fires_nothing_and_later_edits_are_not_retroactive() -> None:
    same = parse_change(StreamBuilder().modify(_conversion(), {**_conversion(), "payout": Decimal("2")}))
    assert same is not None
    assert match_change(same, [postback()]).deliveries == ()
    change = parse_change(StreamBuilder().insert(_conversion(), at=CHANGE_TIME))
    assert change is not None
    assert match_change(change, [postback(updated_at="2026-01-01T00:00:01.000000Z")]).deliveries == ()
    assert len(match_change(change, [postback(updated_at="2026-01-01T00:00:00.000000Z")]).deliveries) == 1


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("cid", {"N": "1"}, "attribute cid must be a string (S)"),
        ("cid", "plain", "attribute cid must be a string (S)"),
        ("payout", {"S": "1"}, "attribute payout must be a number (N)"),
        ("coupon_codes", {"L": [{"N": "1"}]}, "attribute coupon_codes[0] must be a string (S)"),
        ("status", {"NULL": True}, "missing required attribute status"),
    ],
)
def test_mistyped_attributes_are_refused_with_the_same_reason_on_both_paths(
    attribute: str, value: Any, message: str
) -> None:
    image = {name: {"S": text} for name, text in _conversion().items()}
    image[attribute] = value
    for candidate in (image, _proxy_top(image)):
        with pytest.raises(MalformedRecordError) as raised:
            parse_image(candidate)
        assert raised.value.reason == message


def test_null_optional_attributes_are_skipped() -> None:
    image: dict[str, Any] = {name: {"S": text} for name, text in _conversion().items()}
    image["cid"] = {"NULL": True}
    image["payout"] = {"NULL": True}
    assert "cid" not in parse_image(image).attributes
    assert parse_image(image) == parse_image(_proxy_top(image))


def _proxy_top(image: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(image)


def _conversion() -> dict[str, Any]:
    return {
        "conversion_id": "c-1",
        "affiliate_id": "aff-1",
        "offer_id": "offer-1",
        "conversion_type": "sale",
        "status": "approved",
        "aff_s1": "click-1",
    }


def test_the_catalogue_has_values_for_every_change_placeholder() -> None:
    change = parse_change(StreamBuilder().insert(_conversion()))
    assert change is not None
    names = {p.name for p in CATALOGUE} - {"postbackId", "deliveryId"}
    assert set(conversion_values(change)) == names
