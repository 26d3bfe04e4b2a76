"""docs/contract.md §2: a delete or a disable cancels the postback's pending deliveries at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.core.model import DeliveryState, delivery_id_for, format_timestamp, utc_now
from functions.storage.models import DeliveryModel
from tests.support.api_client import ADMIN, AFF_A, Api

pytestmark = pytest.mark.integration


def seed(postback_id: str, conversion_id: str, state: DeliveryState, *, lease_expires_in: float | None = None) -> str:
    now = utc_now()
    delivery_id = delivery_id_for(postback_id, conversion_id, "approved")
    DeliveryModel(
        delivery_id,
        postback_id=postback_id,
        affiliate_id="aff-a",
        conversion_id=conversion_id,
        conversion_status="approved",
        url="https://tracker.example.com/cb",
        target_host="tracker.example.com",
        state=state.value,
        lease_owner=None if lease_expires_in is None else "worker-1",
        lease_expires_at=None if lease_expires_in is None else now.timestamp() + lease_expires_in,
        next_attempt_at=format_timestamp(now + timedelta(minutes=10)) if state is DeliveryState.RETRYING else None,
        created_at=format_timestamp(now),
        updated_at=format_timestamp(now),
        expires_at=int((now + timedelta(days=90)).timestamp()),
    ).save()
    return delivery_id


def states(*delivery_ids: str) -> list[tuple[str, str | None]]:
    items = {item.delivery_id: item for item in DeliveryModel.batch_get(list(delivery_ids))}
    return [(items[i].state, items[i].reason) for i in delivery_ids]


def test_disabling_a_postback_cancels_its_waiting_deliveries_and_leaves_the_rest(client: Api) -> None:
    postback = client.create(AFF_A)
    pending = seed(postback["id"], "c-1", DeliveryState.PENDING)
    retrying = seed(postback["id"], "c-2", DeliveryState.RETRYING)
    delivered = seed(postback["id"], "c-3", DeliveryState.DELIVERED)
    sending_now = seed(postback["id"], "c-4", DeliveryState.IN_FLIGHT, lease_expires_in=30)
    abandoned = seed(postback["id"], "c-5", DeliveryState.IN_FLIGHT, lease_expires_in=-30)

    response = client.request("PATCH", f"/postbacks/{postback['id']}", AFF_A, {"enabled": False})

    assert response.status_code == 200
    assert states(pending, retrying, delivered, sending_now, abandoned) == [
        ("cancelled", "postback_disabled"),
        ("cancelled", "postback_disabled"),
        ("delivered", None),
        ("in_flight", None),  # its sender checks the postback again before the GET
        ("cancelled", "postback_disabled"),
    ]


def test_deleting_a_postback_cancels_its_waiting_deliveries(client: Api) -> None:
    postback = client.create(ADMIN, affiliate_id="aff-a")
    pending = seed(postback["id"], "c-1", DeliveryState.PENDING)

    assert client.request("DELETE", f"/postbacks/{postback['id']}", ADMIN).status_code == 204

    assert states(pending) == [("cancelled", "postback_deleted")]


def test_an_edit_that_keeps_the_postback_enabled_cancels_nothing(client: Api) -> None:
    postback = client.create(AFF_A)
    pending = seed(postback["id"], "c-1", DeliveryState.PENDING)

    response = client.request("PATCH", f"/postbacks/{postback['id']}", AFF_A, {"conversion_types": ["lead"]})

    assert response.status_code == 200
    assert states(pending) == [("pending", None)]


def test_other_postbacks_deliveries_are_untouched(client: Api) -> None:
    stopped = client.create(AFF_A)
    running = client.create(AFF_A)
    theirs = seed(running["id"], "c-1", DeliveryState.PENDING)

    client.request("DELETE", f"/postbacks/{stopped['id']}", AFF_A)

    assert states(theirs) == [("pending", None)]
