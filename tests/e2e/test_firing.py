"""Firing semantics of docs/contract.md §2 over the wire: API -> conversions table -> stream -> evaluator ->
queue -> sender -> a real loopback receiver."""

from __future__ import annotations

import time

import pytest

from local.receiver import Receiver
from tests.e2e.harness import Stack

pytestmark = pytest.mark.e2e

GET_TIMEOUT = 20.0
QUIET_SECONDS = 1.0


def _settle(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    """Fire a sentinel postback of another affiliate and wait for it: changes written before it
    have been evaluated by then (one shard, in order); a short grace covers their sending."""
    sentinel_affiliate = f"{affiliate}-sentinel-{time.monotonic_ns()}"
    route = f"/sentinel/{sentinel_affiliate}"
    stack.create_postback(sentinel_affiliate, receiver.url(route))
    stack.put_conversion(sentinel_affiliate, "approved")
    receiver.wait_for(1, route=route, timeout=GET_TIMEOUT)
    time.sleep(QUIET_SECONDS)


def test_placeholders_are_filled_and_the_get_carries_our_user_agent(
    stack: Stack, receiver: Receiver, affiliate: str
) -> None:
    stack.create_postback(affiliate, receiver.url("/cb?click={affS1}&s={conversionStatus}&d={deliveryId}"))
    conversion = stack.put_conversion(affiliate, "approved", aff_s1="a b&c")
    [hit] = receiver.wait_for(1, route="/cb", timeout=GET_TIMEOUT)
    assert hit.query["click"] == "a b&c"
    assert hit.query["s"] == "approved"
    assert hit.query["d"].startswith("dl_")
    assert hit.headers["User-Agent"].startswith("postbacks/")
    assert conversion


def test_global_postback_fires_for_an_offer_created_after_it_but_not_an_excluded_one(
    stack: Stack, receiver: Receiver, affiliate: str
) -> None:
    stack.create_postback(affiliate, receiver.url("/global?offer={offerId}"), excluded_offer_ids=["offer-excluded"])
    stack.put_conversion(affiliate, "approved", offer_id="offer-excluded")
    stack.put_conversion(affiliate, "approved", offer_id=f"offer-born-later-{time.time_ns()}")
    receiver.wait_for(1, route="/global", timeout=GET_TIMEOUT)
    _settle(stack, receiver, affiliate)
    offers = [hit.query["offer"] for hit in receiver.requests("/global")]
    assert len(offers) == 1 and offers[0].startswith("offer-born-later-")


def test_global_and_offer_scoped_postbacks_of_an_affiliate_both_fire(
    stack: Stack, receiver: Receiver, affiliate: str
) -> None:
    stack.create_postback(affiliate, receiver.url("/global"))
    stack.create_postback(affiliate, receiver.url("/offer"), scope="offer", included_offer_ids=["offer-1"])
    stack.put_conversion(affiliate, "approved", offer_id="offer-1")
    stack.put_conversion(affiliate, "approved", offer_id="offer-2")
    receiver.wait_for(2, route="/global", timeout=GET_TIMEOUT)
    receiver.wait_for(1, route="/offer", timeout=GET_TIMEOUT)
    _settle(stack, receiver, affiliate)
    assert len(receiver.requests("/global")) == 2
    assert len(receiver.requests("/offer")) == 1


def test_multi_status_postback_fires_on_the_change_into_each_status_and_not_on_other_changes(
    stack: Stack, receiver: Receiver, affiliate: str
) -> None:
    stack.create_postback(
        affiliate,
        receiver.url("/multi?s={conversionStatus}&was={previousStatus}"),
        conversion_statuses=["pending", "approved"],
    )
    conversion = stack.put_conversion(affiliate, "pending")
    receiver.wait_for(1, route="/multi", timeout=GET_TIMEOUT)
    stack.dynamodb.update_item(  # a payout correction is not a status change
        TableName="conversions",
        Key={"conversion_id": {"S": conversion}},
        UpdateExpression="SET payout = :p",
        ExpressionAttributeValues={":p": {"N": "3.5"}},
    )
    stack.set_status(conversion, "approved")
    receiver.wait_for(2, route="/multi", timeout=GET_TIMEOUT)
    stack.set_status(conversion, "rejected")
    _settle(stack, receiver, affiliate)
    assert [(hit.query["s"], hit.query["was"]) for hit in receiver.requests("/multi")] == [
        ("pending", ""),
        ("approved", "pending"),
    ]


def test_status_flip_flop_fires_once(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    stack.create_postback(affiliate, receiver.url("/flip?d={deliveryId}"))
    conversion = stack.put_conversion(affiliate, "approved")
    receiver.wait_for(1, route="/flip", timeout=GET_TIMEOUT)
    stack.set_status(conversion, "pending")
    stack.set_status(conversion, "approved")
    _settle(stack, receiver, affiliate)
    assert len(receiver.requests("/flip")) == 1


def test_type_filter_fires_only_for_listed_conversion_types(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    stack.create_postback(affiliate, receiver.url("/typed?t={conversionType}"), conversion_types=["sale", "ftd"])
    stack.put_conversion(affiliate, "approved", conversion_type="lead")
    stack.put_conversion(affiliate, "approved", conversion_type="ftd")
    receiver.wait_for(1, route="/typed", timeout=GET_TIMEOUT)
    _settle(stack, receiver, affiliate)
    assert [hit.query["t"] for hit in receiver.requests("/typed")] == ["ftd"]


def test_disabled_postback_does_not_fire_until_enabled(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    postback = stack.create_postback(affiliate, receiver.url("/toggle?c={conversionId}"), enabled=False)
    quiet = stack.put_conversion(affiliate, "approved")
    _settle(stack, receiver, affiliate)
    assert receiver.requests("/toggle") == []
    response = stack.api("PATCH", f"/postbacks/{postback['id']}", {"enabled": True})
    assert response.status_code == 200, response.text
    loud = stack.put_conversion(affiliate, "approved")
    [hit] = receiver.wait_for(1, route="/toggle", timeout=GET_TIMEOUT)
    assert hit.query["c"] == loud != quiet


def test_edited_url_applies_to_later_changes(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    postback = stack.create_postback(affiliate, receiver.url("/before"))
    stack.put_conversion(affiliate, "approved")
    receiver.wait_for(1, route="/before", timeout=GET_TIMEOUT)
    response = stack.api("PATCH", f"/postbacks/{postback['id']}", {"url": receiver.url("/after")})
    assert response.status_code == 200, response.text
    stack.put_conversion(affiliate, "approved")
    receiver.wait_for(1, route="/after", timeout=GET_TIMEOUT)
    _settle(stack, receiver, affiliate)
    assert len(receiver.requests("/before")) == 1


def test_deleted_postback_never_fires_again(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    postback = stack.create_postback(affiliate, receiver.url("/deleted"))
    stack.put_conversion(affiliate, "approved")
    receiver.wait_for(1, route="/deleted", timeout=GET_TIMEOUT)
    assert stack.api("DELETE", f"/postbacks/{postback['id']}").status_code == 204
    stack.put_conversion(affiliate, "approved")
    _settle(stack, receiver, affiliate)
    assert len(receiver.requests("/deleted")) == 1
