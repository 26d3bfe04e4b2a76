"""Firing semantics (docs/contract.md §2): which postbacks a change fires, and what each delivery sends."""

from __future__ import annotations

from typing import Any

import pytest

from functions.core.conversion import parse_change
from functions.core.matching import match_change
from functions.core.model import ConversionChange, Postback, Scope, delivery_id_for
from tests.support.conversions import CHANGE_TIME, conversion, postback
from tests.support.streams import StreamBuilder

pytestmark = pytest.mark.unit


def insert(**overrides: Any) -> ConversionChange:
    change = parse_change(StreamBuilder().insert(conversion(**overrides)))
    assert change is not None
    return change


def modify(old_status: str, new_status: str, at: float = CHANGE_TIME) -> ConversionChange:
    change = parse_change(StreamBuilder().modify(conversion(status=old_status), conversion(status=new_status), at=at))
    assert change is not None
    return change


def fires(postback: Postback, change: ConversionChange) -> bool:
    return bool(match_change(change, [postback]).deliveries)


def test_global_scope_fires_for_an_offer_never_seen_before() -> None:
    assert fires(postback(excluded=("offer-7",)), insert(offer_id="brand-new-offer"))


def test_global_scope_does_not_fire_for_an_excluded_offer() -> None:
    assert not fires(postback(excluded=("offer-7",)), insert(offer_id="offer-7"))


def test_offer_scope_fires_only_for_included_offers() -> None:
    scoped = postback(scope=Scope.OFFER, included=("offer-1", "offer-2"))
    assert fires(scoped, insert(offer_id="offer-2"))
    assert not fires(scoped, insert(offer_id="offer-3"))


def test_type_filter() -> None:
    assert fires(postback(types=("sale", "lead")), insert(conversion_type="lead"))
    assert not fires(postback(types=("sale",)), insert(conversion_type="lead"))


def test_several_statuses_fire_on_the_change_into_each_of_them() -> None:
    multi = postback(statuses=("approved", "rejected"))
    assert fires(multi, modify("pending", "approved"))
    assert fires(multi, modify("pending", "rejected"))
    assert not fires(multi, modify("approved", "pending"))


def test_a_change_that_keeps_the_status_fires_nothing() -> None:
    assert not fires(postback(), modify("approved", "approved"))


def test_insert_fires_as_a_change_from_no_status() -> None:
    assert fires(postback(), insert())


def test_disabled_postback_never_fires() -> None:
    assert not fires(postback(enabled=False), insert())


def test_other_affiliates_postback_never_fires() -> None:
    assert not fires(postback(affiliate_id="aff-2"), insert())


def test_change_written_before_the_postback_was_saved_does_not_fire() -> None:
    saved = postback(updated_at="2026-01-01T00:00:10.000000Z")
    assert not fires(saved, modify("pending", "approved", at=CHANGE_TIME + 9))
    assert fires(saved, modify("pending", "approved", at=CHANGE_TIME + 10))


def test_global_and_offer_scoped_postbacks_both_fire() -> None:
    both = [postback("pb_g"), postback("pb_o", scope=Scope.OFFER, included=("offer-1",))]
    result = match_change(insert(), both)
    assert [d.postback_id for d in result.deliveries] == ["pb_g", "pb_o"]


def test_match_renders_the_url_with_the_delivery_id() -> None:
    result = match_change(insert(aff_s1="a b&c"), [postback()])
    (delivery,) = result.deliveries
    expected_id = delivery_id_for("pb_1", "c-1", "approved")
    assert delivery.delivery_id == expected_id
    assert delivery.url == f"https://tracker.example/cb?click=a%20b%26c&status=approved&d={expected_id}"
    assert delivery.target_host == "tracker.example"
    assert (delivery.conversion_status, delivery.previous_status, delivery.offer_id) == ("approved", None, "offer-1")


def test_a_postback_that_cannot_render_is_reported_and_the_others_still_fire() -> None:
    broken = postback("pb_bad", url="https://{affS1}/cb")
    result = match_change(insert(aff_s1="evil.example"), [broken, postback("pb_ok")])
    assert [d.postback_id for d in result.deliveries] == ["pb_ok"]
    assert [f.postback_id for f in result.failures] == ["pb_bad"]
    assert result.failures[0].reason.startswith("render_failed")
