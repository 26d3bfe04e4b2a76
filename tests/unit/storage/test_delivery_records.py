"""The one conversion of a deliveries-table item into the domain `Delivery` and its `Attempt` log."""

from __future__ import annotations

from dataclasses import fields

import pytest

from functions.core.model import Attempt, Delivery, DeliveryState
from functions.storage.delivery_records import attempt_from_map, attempt_to_map, delivery_from_item
from functions.storage.models import AttemptMap, DeliveryModel

pytestmark = pytest.mark.unit

CREATED = "2026-11-24T10:00:00.000000Z"
UPDATED = "2026-11-24T11:00:00.000000Z"


def stored(item: DeliveryModel) -> DeliveryModel:
    """The item as a read returns it: serialised to DynamoDB's form and back."""
    return DeliveryModel.from_raw_data(item.serialize())


def minimal_item(**overrides: object) -> DeliveryModel:
    values: dict[str, object] = {
        "delivery_id": "dl_1",
        "postback_id": "pb_1",
        "affiliate_id": "aff-1",
        "conversion_id": "c-1",
        "conversion_status": "approved",
        "url": "https://tracker.example/cb?c=1",
        "target_host": "tracker.example",
        "state": "pending",
        "created_at": CREATED,
        "updated_at": CREATED,
        "expires_at": 1_800_000_000,
    }
    values.update(overrides)
    return DeliveryModel(**values)  # type: ignore[no-untyped-call]


def test_a_fresh_record_has_the_defaults_of_the_domain_type() -> None:
    delivery = delivery_from_item(stored(minimal_item()))

    assert delivery == Delivery(
        delivery_id="dl_1",
        postback_id="pb_1",
        affiliate_id="aff-1",
        conversion_id="c-1",
        conversion_status="approved",
        url="https://tracker.example/cb?c=1",
        target_host="tracker.example",
        state=DeliveryState.PENDING,
        created_at=CREATED,
        updated_at=CREATED,
        expires_at=1_800_000_000,
    )
    assert delivery.state is DeliveryState.PENDING
    assert delivery.attempts == () and delivery.last_status_code is None


def test_every_field_of_a_full_record_is_carried_over() -> None:
    item = minimal_item(
        previous_status="pending",
        offer_id="offer-7",
        state="dead_lettered",
        reason="http_404",
        is_test=True,
        attempts=[
            AttemptMap(number=1, at=CREATED, outcome="retryable", status_code=503, duration_ms=120),  # type: ignore[no-untyped-call]
            AttemptMap(number=2, at=UPDATED, outcome="terminal", status_code=404, response_excerpt="gone"),  # type: ignore[no-untyped-call]
        ],
        cycle_attempts=2,
        schedule_started_at=CREATED,
        next_attempt_at=UPDATED,
        lease_owner="worker-1",
        lease_expires_at=1_795_000_000.5,
        enqueued_at=CREATED,
        delivered_at=None,
        dead_lettered_at=UPDATED,
        dead_letter_partition="dead",
        redrive_count=3,
        redrive_token="m-1",
        updated_at=UPDATED,
    )
    delivery = delivery_from_item(stored(item))

    assert delivery.state is DeliveryState.DEAD_LETTERED
    assert delivery.previous_status == "pending" and delivery.offer_id == "offer-7"
    assert delivery.reason == "http_404" and delivery.is_test is True
    assert delivery.cycle_attempts == 2 and delivery.schedule_started_at == CREATED
    assert delivery.next_attempt_at == UPDATED
    assert delivery.lease_owner == "worker-1" and delivery.lease_expires_at == 1_795_000_000.5
    assert delivery.enqueued_at == CREATED and delivery.delivered_at is None
    assert delivery.dead_lettered_at == UPDATED and delivery.dead_letter_partition == "dead"
    assert delivery.redrive_count == 3 and delivery.redrive_token == "m-1"
    assert delivery.updated_at == UPDATED and delivery.expires_at == 1_800_000_000
    assert delivery.attempts == (
        Attempt(number=1, at=CREATED, outcome="retryable", status_code=503, duration_ms=120),
        Attempt(number=2, at=UPDATED, outcome="terminal", status_code=404, response_excerpt="gone"),
    )
    assert delivery.last_status_code == 404
    assert all(isinstance(a.number, int) and isinstance(a.status_code, int) for a in delivery.attempts)


def test_every_attribute_of_the_model_has_a_field_of_the_domain_type() -> None:
    attributes = set(DeliveryModel.get_attributes())
    assert attributes <= {f.name for f in fields(Delivery)}
    assert set(AttemptMap.get_attributes()) == {f.name for f in fields(Attempt)}


def test_an_attempt_survives_the_round_trip_through_the_record() -> None:
    attempt = Attempt(
        number=3,
        at=CREATED,
        outcome="delivered",
        duration_ms=45,
        status_code=200,
        resolved_address="203.0.113.7",
        retry_after="120",
        location="https://elsewhere.example/",
        response_excerpt="ok",
        next_attempt_at=UPDATED,
        test=True,
    )
    item = stored(minimal_item(attempts=[attempt_to_map(attempt)]))

    assert attempt_from_map(item.attempts[0]) == attempt


def test_unset_fields_and_a_false_test_flag_are_not_stored() -> None:
    attempt = Attempt(number=1, at=CREATED, outcome="retryable", error="timeout")

    assert attempt.logged() == {"number": 1, "at": CREATED, "outcome": "retryable", "error": "timeout"}
    assert attempt_to_map(attempt).as_dict() == attempt.logged()
    assert Attempt(number=1, at=CREATED, outcome="delivered", test=True).logged()["test"] is True


def test_the_last_status_code_skips_attempts_without_a_response() -> None:
    delivery = delivery_from_item(
        stored(
            minimal_item(
                attempts=[
                    AttemptMap(number=1, at=CREATED, outcome="retryable", status_code=500),  # type: ignore[no-untyped-call]
                    AttemptMap(number=2, at=UPDATED, outcome="retryable", error="timeout"),  # type: ignore[no-untyped-call]
                ]
            )
        )
    )

    assert delivery.last_status_code == 500
