"""The evaluator's pure path (benchmark 2) gives exactly the results of a plain reference of its rules.

The product has one implementation of each rule, written for speed: `match_change` tests only the
postbacks its offer index selects, checks the firing conditions inline with the change's fields
read once, renders from the compiled template (`render_change`: only the values the template uses,
one test for whether any needs encoding) and takes the host from the parsed template;
`parse_image` reads plain stream images in one pass and hands anything else to its general checks.
The references below are the rules as
docs/contract.md §2 and §4 state them, written for clarity: every condition tested one by one,
every URL rendered from the whole catalogue by a regular expression and parsed again. They are
compared on the benchmark's own workload and on a grid of edge cases.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from bench.workload import RecordGenerator, postbacks_of
from functions.core import conversion as conversion_module
from functions.core.conversion import MalformedRecordError, parse_change, parse_image
from functions.core.matching import match_change
from functions.core.model import ConversionChange, Postback, Scope, delivery_id_for, parse_timestamp
from functions.core.placeholders import CATALOGUE, PLACEHOLDER_PATTERN, Source
from functions.core.rendering import ChangeValues, RenderError, render_change, render_change_url, template_host
from tests.support.conversions import CHANGE_TIME, conversion, postback
from tests.support.streams import StreamBuilder

pytestmark = pytest.mark.unit

_DOT_SEGMENTS = (".", "..")


def reference_fires(candidate: Postback, change: ConversionChange) -> bool:
    """docs/contract.md §2, one condition at a time."""
    converted = change.conversion
    if candidate.scope is Scope.OFFER:
        in_scope = converted.offer_id in candidate.included_offer_ids
    else:
        in_scope = converted.offer_id not in candidate.excluded_offer_ids
    return (
        candidate.enabled
        and candidate.affiliate_id == converted.affiliate_id
        and converted.status != change.previous_status
        and converted.status in candidate.conversion_statuses
        and converted.conversion_type in candidate.conversion_types
        and in_scope
        and change.changed_at >= parse_timestamp(candidate.created_at).timestamp()
    )


def reference_values(change: ConversionChange, postback_id: str, delivery_id: str) -> dict[str, str]:
    """Every catalogue placeholder's value, each computed on its own."""
    values = {p.name: ChangeValues(change)[p.name] for p in CATALOGUE}
    values.update({p.name: postback_id for p in CATALOGUE if p.source is Source.POSTBACK_ID})
    values.update({p.name: delivery_id for p in CATALOGUE if p.source is Source.DELIVERY_ID})
    return values


def reference_render(template: str, values: Mapping[str, str]) -> str:
    """docs/contract.md §4: every value percent-encoded whole; the result must keep the template's
    scheme, authority and path segments (a value may not make a segment `.` or `..`)."""
    rendered = PLACEHOLDER_PATTERN.sub(
        lambda match: quote(values.get(match.group(1), ""), safe="", errors="replace"), template
    )
    try:
        parts, empty = urlsplit(rendered), urlsplit(PLACEHOLDER_PATTERN.sub("", template))
    except ValueError as exc:
        raise RenderError(str(exc)) from exc
    if (parts.scheme, parts.netloc) != (empty.scheme, empty.netloc):
        raise RenderError("scheme or authority changed")
    segments, empty_segments = parts.path.split("/"), empty.path.split("/")
    if len(segments) != len(empty_segments):
        raise RenderError("path structure changed")
    for segment, empty_segment in zip(segments, empty_segments, strict=True):
        if unquote(segment) in _DOT_SEGMENTS and unquote(empty_segment) not in _DOT_SEGMENTS:
            raise RenderError("dot segment")
    return rendered


def reference_match(
    change: ConversionChange, postbacks: list[Postback]
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(delivery ID, URL, host) of every postback the change fires, and the IDs of those that cannot render."""
    planned, failed = [], []
    for candidate in postbacks:
        if not reference_fires(candidate, change):
            continue
        converted = change.conversion
        delivery_id = delivery_id_for(candidate.id, converted.conversion_id, converted.status)
        try:
            url = reference_render(candidate.url, reference_values(change, candidate.id, delivery_id))
        except RenderError:
            failed.append(candidate.id)
            continue
        host = urlsplit(url).hostname
        if not host:
            failed.append(candidate.id)
            continue
        planned.append((delivery_id, url, host))
    return planned, failed


def matched(change: ConversionChange, postbacks: list[Postback]) -> tuple[list[tuple[str, str, str]], list[str]]:
    result = match_change(change, postbacks)
    return (
        [(d.delivery_id, d.url, d.target_host) for d in result.deliveries],
        [f.postback_id for f in result.failures],
    )


def _workload(count: int) -> Iterator[tuple[ConversionChange, list[Postback]]]:
    generator = RecordGenerator(random.Random(11), affiliates=50)
    for generated in generator.batch(count, time.time()):
        change = parse_change(generated.record)
        assert change is not None
        yield change, postbacks_of(generated.affiliate_rank)


def test_match_change_equals_the_reference_on_the_benchmark_workload() -> None:
    fired = 0
    for change, postbacks in _workload(600):
        got = matched(change, postbacks)
        assert got == reference_match(change, postbacks)
        assert got[1] == []
        fired += len(got[0])
    assert fired > 100  # the workload did exercise rendering


_TEMPLATES = (
    "https://t.example/cb?c={affS1}&d={deliveryId}&p={postbackId}&s={conversionStatus}&x={payout}",
    "https://t.example/{affS1}/x?c={couponCode}#{conversionTimestamp}",
    "https://t.example/a/{affS1}/b",
    "https://t.example/plain",
    "https://t.example:8443/cb?unknown={nope}&prev={previousStatus}",
    "https://{affS1}/cb",
    "https://t.example/a%20b?lit=%s%25&c={affS1}%%{payout}&s={conversionStatus}%d",
)


def _grid_postbacks() -> list[Postback]:
    postbacks = []
    choices = itertools.product(
        (True, False),
        ("aff-1", "aff-2"),
        ((Scope.GLOBAL, (), ("offer-7",)), (Scope.OFFER, ("offer-1",), ())),
        (("sale",), ("lead", "sale")),
        (("approved",), ("rejected", "pending")),
        ("2025-12-31T23:00:00.000000Z", "2026-01-01T00:00:10.000000Z"),
    )
    for number, (enabled, affiliate, (scope, included, excluded), types, statuses, updated_at) in enumerate(choices):
        postbacks.append(
            postback(
                f"pb_{number}",
                affiliate,
                scope=scope,
                included=included,
                excluded=excluded,
                types=types,
                statuses=statuses,
                url=_TEMPLATES[number % len(_TEMPLATES)],
                enabled=enabled,
                updated_at=updated_at,
            )
        )
    return postbacks


def _grid_changes() -> Iterator[ConversionChange]:
    stream = StreamBuilder()
    for offer, kind, status, aff_s1, at in itertools.product(
        ("offer-1", "offer-7", "brand-new"),
        ("insert", "modify"),
        ("approved", "pending", "rejected"),
        ("click 1&x=y", "..", "evil.example", ""),
        (CHANGE_TIME, CHANGE_TIME + 10),
    ):
        new = conversion(offer_id=offer, status=status, aff_s1=aff_s1 or None, payout=Decimal("12.50"))
        if kind == "insert":
            record = stream.insert(new, at=at)
        else:
            record = stream.modify(conversion(offer_id=offer, status="pending"), new, at=at)
        change = parse_change(record)
        assert change is not None
        yield change


def test_match_change_equals_the_reference_on_a_grid_of_edge_cases() -> None:
    postbacks = _grid_postbacks()
    outcomes = {"fired": 0, "failed": 0}
    for change in _grid_changes():
        got = matched(change, postbacks)
        assert got == reference_match(change, postbacks)
        outcomes["fired"] += len(got[0])
        outcomes["failed"] += len(got[1])
    assert outcomes["fired"] > 100 and outcomes["failed"] > 10


@pytest.mark.parametrize("template", _TEMPLATES)
@pytest.mark.parametrize("aff_s1", ["../x y", "..", ".", "%2e%2e", "a/b", "é&#?", "", "evil.example"])
def test_render_change_url_equals_the_reference(template: str, aff_s1: str) -> None:
    change = parse_change(StreamBuilder().insert(conversion(aff_s1=aff_s1, coupon_codes=["Q"])))
    assert change is not None
    try:
        expected: str | None = reference_render(template, reference_values(change, "pb_1", "dl_1"))
    except RenderError:
        expected = None
    if expected is None:
        with pytest.raises(RenderError):
            render_change_url(template, ChangeValues(change), "pb_1", "dl_1")
        with pytest.raises(RenderError):
            render_change(template, change, "pb_1", "dl_1")
    else:
        assert render_change_url(template, ChangeValues(change), "pb_1", "dl_1") == expected
        assert render_change(template, change, "pb_1", "dl_1") == (expected, template_host(template))


def _deep_proxy(image: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({name: MappingProxyType(dict(value)) for name, value in image.items()})


def test_parsing_plain_dicts_equals_parsing_other_mappings() -> None:
    generator = RecordGenerator(random.Random(5), affiliates=20)
    for generated in generator.batch(200, time.time()):
        image = generated.record["dynamodb"]["NewImage"]
        assert parse_image(image) == parse_image(_deep_proxy(image))


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
def test_mistyped_attributes_are_refused_with_the_same_reason_from_any_mapping(
    attribute: str, value: Any, message: str
) -> None:
    image = {name: {"S": text} for name, text in conversion().items()}
    image[attribute] = value
    for candidate in (image, MappingProxyType(image)):
        with pytest.raises(MalformedRecordError) as raised:
            parse_image(candidate)
        assert raised.value.reason == message


def test_null_optional_attributes_are_skipped_from_any_mapping() -> None:
    image: dict[str, Any] = {name: {"S": text} for name, text in conversion().items()}
    image["cid"] = {"NULL": True}
    image["payout"] = {"NULL": True}
    assert "cid" not in parse_image(image).attributes
    assert parse_image(image) == parse_image(MappingProxyType(image)) == parse_image(_deep_proxy(image))


# Attribute values a stream image may hold, plain or not: each attribute of a generated image is
# one of these (or absent), so the one-pass read meets every way of handing over to the general one.
_ODD_VALUES: tuple[Any, ...] = (
    {"S": "text"},
    {"S": "APPROVED"},
    {"S": "Conversion_Status_Rejected"},
    {"S": "no-such-status"},
    {"S": ""},
    {"S": "  "},
    {"N": "12.50"},
    {"N": "1E+2"},
    {"N": "NaN"},
    {"N": "-Infinity"},
    {"N": " sNaN12"},
    {"N": "inf"},
    {"N": " -1_000.5e-3 "},
    {"N": "twelve"},
    {"N": 3},
    {"L": [{"S": "Q1"}, {"S": "Q2"}]},
    {"L": [{"N": "1"}]},
    {"L": []},
    {"NULL": True},
    {"S": "text", "NULL": True},
    {"S": "text", "N": "1"},
    {"S": 7},
    {"BOOL": True},
    MappingProxyType({"S": "proxied"}),
    "plain",
    None,
)
_IMAGE_NAMES = ("conversion_id", "affiliate_id", "offer_id", "conversion_type", "status", "cid", "payout",
                "coupon_codes", "created_at", "unknown_attribute")  # fmt: skip


def _parsed_or_reason(image: Any, parse: Any) -> Any:
    try:
        return parse(image)
    except MalformedRecordError as exc:
        return exc.reason


def test_the_one_pass_read_of_an_image_gives_what_the_general_checks_give() -> None:
    rng = random.Random(17)
    plain = {"S": "ok"}
    kinds = {"read": 0, "refused": 0}
    for _ in range(4000):
        image: dict[str, Any] = {}
        for name in rng.sample(_IMAGE_NAMES, len(_IMAGE_NAMES)):  # any order
            if rng.random() < 0.1:
                continue
            # Mostly plain values (so that whole images are read in one pass), some odd ones.
            value = rng.choice(_ODD_VALUES) if rng.random() < 0.15 else plain
            if name == "status" and value is plain:
                value = {"S": rng.choice(("approved", "PENDING", "conversion_status_refunded"))}
            elif name == "payout" and value is plain:
                value = {"N": rng.choice(("4.95", "100", "0.00"))}
            elif name == "coupon_codes" and value is plain:
                value = {"L": [{"S": "SPRING"}]}
            image[name] = value
        expected = _parsed_or_reason(image, conversion_module._parse_image)
        assert _parsed_or_reason(image, parse_image) == expected
        kinds["refused" if isinstance(expected, str) else "read"] += 1
    assert kinds["read"] > 500 and kinds["refused"] > 500


def _fired(change: ConversionChange, postbacks: Any) -> list[str]:
    return [delivery.postback_id for delivery in match_change(change, postbacks).deliveries]


def test_the_offer_index_follows_the_postbacks_given() -> None:
    change = parse_change(StreamBuilder().insert(conversion(offer_id="offer-1")))
    assert change is not None
    scoped = postback("pb_scoped", scope=Scope.OFFER, included=("offer-1", "offer-1", "offer-2"))
    first, second = postback("pb_global_1"), postback("pb_global_2", excluded=("offer-1",))
    other_offer = postback("pb_other", scope=Scope.OFFER, included=("offer-3",))
    postbacks = [first, scoped, second, other_offer]
    assert _fired(change, postbacks) == ["pb_global_1", "pb_scoped"]  # in the order given, each once
    # The same list changed in place, the same postbacks in another sequence, a postback given twice.
    postbacks.insert(0, postback("pb_new"))
    assert _fired(change, postbacks) == ["pb_new", "pb_global_1", "pb_scoped"]
    postbacks[2] = replace(scoped, enabled=False)
    assert _fired(change, postbacks) == ["pb_new", "pb_global_1"]
    assert _fired(change, (first, scoped, second)) == ["pb_global_1", "pb_scoped"]
    assert _fired(change, (scoped, first, scoped)) == ["pb_scoped", "pb_global_1", "pb_scoped"]
    assert _fired(change, iter([scoped, first])) == ["pb_scoped", "pb_global_1"]
    assert _fired(change, ()) == []


def test_the_offer_indexes_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.core import matching

    monkeypatch.setattr(matching, "_INDEXES", {})
    monkeypatch.setattr(matching, "_MAX_INDEXES", 3)
    change = parse_change(StreamBuilder().insert(conversion()))
    assert change is not None
    for number in range(10):
        assert _fired(change, [postback(f"pb_{number}")]) == [f"pb_{number}"]
        assert len(matching._INDEXES) <= 3


# OldImage values a stream record may hold: its status plain (in spellings seen before or not), odd
# or absent; the image itself another mapping type, or not a mapping at all.
_OLD_STATUSES: tuple[Any, ...] = (
    {"S": "pending"},
    {"S": "PENDING"},
    {"S": "  Conversion_Status_On_Hold "},
    {"S": ""},
    {"S": "made-up"},
    {"S": 7},
    {"N": "1"},
    {"NULL": True},
    {"S": "pending", "NULL": True},
    MappingProxyType({"S": "approved"}),
    "pending",
    None,
)


def _reference_change(record: Mapping[str, Any]) -> Any:
    """`parse_change` through the general checks alone (`_parse_image`, `_previous_status`)."""
    try:
        if record["eventName"] == "REMOVE":
            return None
        stream = record["dynamodb"]
        conversion = conversion_module._parse_image(stream["NewImage"])
        previous = None
        if record["eventName"] == "MODIFY":
            if "OldImage" not in stream:
                raise MalformedRecordError("missing OldImage on MODIFY (stream view type must be NEW_AND_OLD_IMAGES)")
            previous = conversion_module._previous_status(stream["OldImage"])
        return ConversionChange(conversion, previous, float(stream["ApproximateCreationDateTime"]))
    except MalformedRecordError as exc:
        return exc.reason


def test_parse_change_gives_what_the_general_checks_give() -> None:
    rng = random.Random(23)
    generator = RecordGenerator(random.Random(29), affiliates=20)
    kinds = {"change": 0, "refused": 0, "plain_previous": 0}
    for number, generated in enumerate(generator.batch(3000, 1_767_225_600.0)):
        record = generated.record
        stream = dict(record["dynamodb"])
        image = dict(stream["NewImage"])
        if rng.random() < 0.2:  # an odd value in the new image
            image[rng.choice(_IMAGE_NAMES)] = rng.choice(_ODD_VALUES)
        stream["NewImage"] = image if rng.random() < 0.9 else MappingProxyType(image)
        choice = rng.random()
        if choice < 0.1:
            stream.pop("OldImage", None)
        elif choice < 0.15:
            stream["OldImage"] = rng.choice(("plain", None, MappingProxyType(dict(image))))
        elif choice < 0.5:
            old = dict(stream.get("OldImage") or image)
            status = rng.choice(_OLD_STATUSES)
            if status is None:
                old.pop("status", None)
            elif isinstance(status, dict) and status.get("S") == "made-up":
                old["status"] = {"S": f"made-up-{number}"}  # a spelling never seen
            else:
                old["status"] = status
            stream["OldImage"] = old
        event_name = rng.choice(("INSERT", "MODIFY", "MODIFY", "MODIFY", "REMOVE"))
        changed = {**record, "eventName": event_name, "dynamodb": stream}
        expected = _reference_change(changed)
        assert _parsed_or_reason(changed, parse_change) == expected
        if isinstance(expected, ConversionChange):
            kinds["change"] += 1
            kinds["plain_previous"] += expected.previous_status is not None
        elif isinstance(expected, str):
            kinds["refused"] += 1
    assert kinds["change"] > 1000 and kinds["refused"] > 200 and kinds["plain_previous"] > 500
