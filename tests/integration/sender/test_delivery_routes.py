"""GET /postbacks/{id}/deliveries and POST /postbacks/{id}/test through Chalice's test client (moto, loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws

from functions import bootstrap
from functions.core.model import DeliveryState, delivery_id_for, format_timestamp
from functions.storage.models import AttemptMap, DeliveryModel, PostbackModel
from tests.support.api_client import ADMIN, AFF_A, AFF_B, body_of
from tests.support.api_client import Api as BaseApi

from .conftest import Receiver, Reply

pytestmark = pytest.mark.integration


class Api(BaseApi):
    def create(self, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
        body = {"scope": "global", "conversion_types": ["sale"], **fields}
        response = self.request("POST", "/postbacks", headers, body)
        assert response.status_code == 201, response.body
        created: dict[str, Any] = json.loads(response.body)
        return created


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    # The application as deployed: proves app.py registers these routes.
    from app import app

    monkeypatch.setenv("POSTBACKS_ALLOW_PRIVATE_TARGETS", "1")
    monkeypatch.setenv("POSTBACKS_TOTAL_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("POSTBACKS_READ_TIMEOUT_SECONDS", "0.5")
    with mock_aws():
        PostbackModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        DeliveryModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        bootstrap.reset()
        with Client(app) as test_client:
            yield Api(test_client)
        bootstrap.reset()


def create_postback(api: Api, url: str, headers: dict[str, str] = AFF_A, **overrides: Any) -> dict[str, Any]:
    return api.create(
        headers,
        url=url,
        excluded_offer_ids=[],
        conversion_statuses=["approved"],
        **overrides,
    )


def seed_delivery(postback_id: str, index: int, *, state: DeliveryState = DeliveryState.DELIVERED) -> str:
    delivery_id = delivery_id_for(postback_id, f"c-{index}", "approved")
    created = datetime(2026, 11, 24, 10, 0, tzinfo=UTC) + timedelta(minutes=index)
    DeliveryModel(
        delivery_id,
        postback_id=postback_id,
        affiliate_id="aff-a",
        conversion_id=f"c-{index}",
        conversion_status="approved",
        url=f"https://tracker.example.com/cb?n={index}",
        target_host="tracker.example.com",
        state=state.value,
        attempts=[
            AttemptMap(number=1, at=format_timestamp(created), outcome="delivered", status_code=200, duration_ms=12)
        ],
        created_at=format_timestamp(created),
        updated_at=format_timestamp(created),
        expires_at=int((created + timedelta(days=90)).timestamp()),
    ).save()
    return delivery_id


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver([Reply(200, body=b"ok")]).start()
    yield started
    started.stop()


def test_the_delivery_log_is_newest_first_and_paginated(api: Api) -> None:
    postback = create_postback(api, "https://tracker.example.com/cb?c={conversionId}")
    ids = [seed_delivery(postback["id"], i) for i in range(5)]
    path = f"/postbacks/{postback['id']}/deliveries"

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        response = api.request("GET", path + query, AFF_A)
        assert response.status_code == 200, response.body
        page = body_of(response)
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == [[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]


def test_a_delivery_log_item_has_the_contract_fields(api: Api) -> None:
    postback = create_postback(api, "https://tracker.example.com/cb?n=1")
    delivery_id = seed_delivery(postback["id"], 1)

    [item] = body_of(api.request("GET", f"/postbacks/{postback['id']}/deliveries", AFF_A))["items"]

    assert item["id"] == delivery_id
    assert item["conversion_id"] == "c-1"
    assert item["status"] == "approved"
    assert item["url"] == "https://tracker.example.com/cb?n=1"
    assert item["state"] == "delivered"
    assert item["reason"] is None
    assert item["next_attempt_at"] is None
    assert item["test"] is False
    [attempt] = item["attempts"]
    assert {"at", "status_code", "duration_ms", "error", "response_excerpt"} <= set(attempt)
    assert (attempt["status_code"], attempt["duration_ms"]) == (200, 12)


def test_another_affiliates_delivery_log_and_test_fire_are_not_found(api: Api) -> None:
    postback = create_postback(api, "https://tracker.example.com/cb")

    assert api.request("GET", f"/postbacks/{postback['id']}/deliveries", AFF_B).status_code == 404
    assert api.request("POST", f"/postbacks/{postback['id']}/test", AFF_B).status_code == 404
    assert api.request("GET", f"/postbacks/{postback['id']}/deliveries", ADMIN).status_code == 200
    assert api.request("GET", "/postbacks/pb_missing/deliveries", ADMIN).status_code == 404


def test_the_delivery_log_needs_a_token(api: Api) -> None:
    postback = create_postback(api, "https://tracker.example.com/cb")

    assert api.request("GET", f"/postbacks/{postback['id']}/deliveries", {}).status_code == 401


def test_a_bad_limit_or_a_foreign_cursor_is_a_400(api: Api) -> None:
    first = create_postback(api, "https://tracker.example.com/a")
    second = create_postback(api, "https://tracker.example.com/b")
    for i in range(3):
        seed_delivery(first["id"], i)
    cursor = body_of(api.request("GET", f"/postbacks/{first['id']}/deliveries?limit=1", AFF_A))["next_cursor"]
    assert cursor

    foreign = api.request("GET", f"/postbacks/{second['id']}/deliveries?cursor={cursor}", AFF_A)
    zero = api.request("GET", f"/postbacks/{first['id']}/deliveries?limit=0", AFF_A)

    assert foreign.status_code == 400
    assert {e["field"] for e in body_of(foreign)["errors"]} == {"cursor"}
    assert zero.status_code == 400
    assert {e["field"] for e in body_of(zero)["errors"]} == {"limit"}


def test_a_test_fire_hits_the_receiver_and_appears_in_the_log_as_a_test(api: Api, receiver: Receiver) -> None:
    postback = create_postback(api, receiver.url("/cb?click={affS1}&s={conversionStatus}&d={deliveryId}"))

    response = api.request("POST", f"/postbacks/{postback['id']}/test", AFF_A, {"aff_s1": "abc"})

    assert response.status_code == 200, response.body
    result = body_of(response)
    assert result["url"] == receiver.url(f"/cb?click=abc&s=approved&d={result['delivery_id']}")
    assert result["outcome"]["delivered"] is True
    assert result["outcome"]["status_code"] == 200
    assert result["outcome"]["classification"] == "delivered"
    assert result["outcome"]["error"] is None
    assert [hit.path for hit in receiver.hits] == [f"/cb?click=abc&s=approved&d={result['delivery_id']}"]
    [logged] = body_of(api.request("GET", f"/postbacks/{postback['id']}/deliveries", AFF_A))["items"]
    assert logged["id"] == result["delivery_id"]
    assert logged["test"] is True
    assert logged["state"] == "delivered"
    assert logged["conversion_id"].startswith("test-")
    assert len(logged["attempts"]) == 1


def test_a_test_fire_without_a_body_uses_the_sample_conversion(api: Api, receiver: Receiver) -> None:
    postback = create_postback(
        api, receiver.url("/cb?o={offerId}&t={conversionType}&p={payout}&a={affiliateId}"), conversion_types=["lead"]
    )

    result = body_of(api.request("POST", f"/postbacks/{postback['id']}/test", AFF_A))

    assert result["url"] == receiver.url("/cb?o=sample-offer&t=lead&p=12.5&a=aff-a")


def test_a_failed_test_fire_reports_the_outcome_and_is_logged_failed(api: Api) -> None:
    failing = Receiver([Reply(500, body=b"boom")]).start()
    try:
        postback = create_postback(api, failing.url())
        result = body_of(api.request("POST", f"/postbacks/{postback['id']}/test", ADMIN))
    finally:
        failing.stop()

    assert result["outcome"]["delivered"] is False
    assert result["outcome"]["status_code"] == 500
    assert result["outcome"]["classification"] == "retryable"
    assert len(failing.hits) == 1  # a test fire is never retried
    [logged] = body_of(api.request("GET", f"/postbacks/{postback['id']}/deliveries", ADMIN))["items"]
    assert (logged["state"], logged["test"]) == ("failed", True)
    assert logged["attempts"][0]["response_excerpt"] == "boom"


def test_a_disabled_postback_can_be_test_fired(api: Api, receiver: Receiver) -> None:
    postback = create_postback(api, receiver.url(), enabled=False)

    result = body_of(api.request("POST", f"/postbacks/{postback['id']}/test", AFF_A))

    assert result["outcome"]["delivered"] is True
    assert len(receiver.hits) == 1


def test_a_test_fire_goes_through_the_egress_guard(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    postback = create_postback(api, receiver.url())
    monkeypatch.setenv("POSTBACKS_ALLOW_PRIVATE_TARGETS", "0")
    bootstrap.reset()

    result = body_of(api.request("POST", f"/postbacks/{postback['id']}/test", AFF_A))

    assert result["outcome"]["error"] == "blocked_destination"
    assert result["outcome"]["classification"] == "blocked"
    assert receiver.hits == []


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"aff_s6": "x"}, {"aff_s6"}),
        ({"payout": "12"}, {"payout"}),
        ({"coupon_codes": "X"}, {"coupon_codes"}),
        ({"status": "won"}, {"status"}),
        ({"conversion_type": "Not A Type"}, {"conversion_type"}),
        ({"conversion_id": None, "aff_s1": 5}, {"conversion_id", "aff_s1"}),
        ([1, 2], {"body"}),
    ],
)
def test_a_bad_test_fire_body_is_a_400_naming_every_field(
    api: Api, receiver: Receiver, body: Any, fields: set[str]
) -> None:
    postback = create_postback(api, receiver.url())

    response = api.request("POST", f"/postbacks/{postback['id']}/test", AFF_A, body)

    assert response.status_code == 400, response.body
    assert {error["field"] for error in body_of(response)["errors"]} == fields
    assert receiver.hits == []


def test_a_test_fire_body_that_is_not_json_is_a_400(api: Api, receiver: Receiver) -> None:
    postback = create_postback(api, receiver.url())

    response = api.request("POST", f"/postbacks/{postback['id']}/test", AFF_A, b"{not json")

    assert response.status_code == 400
    assert json.loads(response.body)["status"] == 400
