"""The sender's side of "nothing lost" (docs/reliability.md), against the in-memory fakes.

- a dead-lettered delivery whose DLQ copy failed is not acknowledged until the copy is sent;
- a duplicate message that loses the lease race is acknowledged, not left to use up receives;
- a message received many times indexes its active delivery for `recover`;
- after a 2xx the outcome write is retried while the lease is held (no second GET);
- no visibility change ends later than 12 h after the receive.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from functions.core.model import Attempt, Delivery, DeliveryState
from functions.sender.ports import IncomingMessage
from functions.sender.safeguards import AT_RISK_RECEIVE_COUNT, RECEIVE_MARGIN_SECONDS
from functions.sender.service import DeliverySender
from functions.storage.queues import MAX_VISIBILITY_SECONDS
from tests.support.fakes import InMemoryDeliveries, InMemoryQueue
from tests.unit.sender.test_batch import NOW, FakeHttp, add, sender

pytestmark = pytest.mark.unit


def message(delivery_id: str, message_id: str = "m-1", **kwargs: Any) -> IncomingMessage:
    return IncomingMessage(message_id, f"rh-{message_id}", json.dumps({"v": 1, "delivery_id": delivery_id}), **kwargs)


# Case 3: the DLQ copy before the acknowledgement.


def test_a_dead_letter_whose_copy_failed_is_not_acknowledged_until_the_copy_is_sent() -> None:
    deliveries, queue, dlq = InMemoryDeliveries(), InMemoryQueue(), InMemoryQueue()
    add(deliveries, "d1", "gone.example")
    http = FakeHttp(delay=0, status_for={"gone.example": 410})
    dlq.down = True
    the_sender = sender(deliveries, http, queue, dead_letters=dlq)
    assert the_sender.process_batch([message("d1")]) == ["m-1"]
    record = deliveries.records["d1"]
    assert (record.state, record.reason, record.dlq_copy_sent) == (DeliveryState.DEAD_LETTERED, "gone", False)
    # The message comes back while the DLQ is still down: still not acknowledged, no second GET.
    assert the_sender.process_batch([message("d1")]) == ["m-1"]
    dlq.down = False
    assert the_sender.process_batch([message("d1")]) == []
    (copy,) = dlq.messages
    assert (copy["delivery_id"], copy["reason"], len(copy["attempts"])) == ("d1", "gone", 1)
    assert deliveries.records["d1"].dlq_copy_sent
    assert len(http.calls) == 1


def test_the_happy_dead_letter_path_writes_the_marker_with_the_outcome() -> None:
    deliveries, queue, dlq = InMemoryDeliveries(), InMemoryQueue(), InMemoryQueue()
    add(deliveries, "d1", "gone.example")
    the_sender = sender(deliveries, FakeHttp(delay=0, status_for={"gone.example": 410}), queue, dead_letters=dlq)
    assert the_sender.process_batch([message("d1")]) == []
    assert deliveries.records["d1"].dlq_copy_sent
    assert deliveries.calls["finish"] == 1
    assert deliveries.calls["mark_dlq_copy_sent"] == 0
    assert len(dlq.messages) == 1


# Case 4: the receive budget.


def leased_by(deliveries: InMemoryDeliveries, delivery_id: str, owner: str) -> None:
    deliveries.records[delivery_id] = dataclasses.replace(
        deliveries.records[delivery_id],
        state=DeliveryState.IN_FLIGHT,
        lease_owner=owner,
        lease_expires_at=NOW.timestamp() + 30,
    )


def test_a_duplicate_that_loses_the_lease_race_is_acknowledged_without_a_get() -> None:
    deliveries, queue = InMemoryDeliveries(), InMemoryQueue()
    add(deliveries, "d1", "t.example")
    leased_by(deliveries, "d1", "m-original:0011223344556677")
    http = FakeHttp(delay=0)
    assert sender(deliveries, http, queue).process_batch([message("d1", "m-duplicate")]) == []
    assert http.calls == []
    assert queue.visibility == []


def test_the_lease_holders_own_message_seen_again_is_left_for_later() -> None:
    deliveries, queue = InMemoryDeliveries(), InMemoryQueue()
    add(deliveries, "d1", "t.example")
    leased_by(deliveries, "d1", "m-1:0011223344556677")
    assert sender(deliveries, FakeHttp(delay=0), queue).process_batch([message("d1", "m-1")]) == ["m-1"]


def test_a_message_received_many_times_indexes_its_delivery_for_recover() -> None:
    deliveries, queue = InMemoryDeliveries(), InMemoryQueue()
    add(deliveries, "d1", "down.example")
    add(deliveries, "d2", "down.example")
    the_sender = sender(deliveries, FakeHttp(delay=0, status_for={"down.example": 503}), queue)
    the_sender.process_batch(
        [message("d1", "m-1", receive_count=AT_RISK_RECEIVE_COUNT - 1), message("d2", "m-2", receive_count=2)]
    )
    assert deliveries.calls["mark_at_risk"] == 0
    the_sender.process_batch([message("d1", "m-1", receive_count=AT_RISK_RECEIVE_COUNT)])
    assert deliveries.records["d1"].dead_letter_partition == "at_risk"
    assert deliveries.records["d2"].dead_letter_partition is None


# Case 5: the outcome write under the lease; visibility within 12 h of the receive.


class ThrottledWrites(InMemoryDeliveries):
    """The first `failures` outcome writes raise, as a throttled UpdateItem does after botocore's retries."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def record_delivered(self, delivery_id: str, owner: str, attempt: Attempt, now: datetime) -> Delivery:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("ProvisionedThroughputExceededException")
        return super().record_delivered(delivery_id, owner, attempt, now)


def test_a_throttled_write_after_a_2xx_is_retried_under_the_lease_and_acknowledged() -> None:
    deliveries, queue, pauses = ThrottledWrites(failures=3), InMemoryQueue(), []
    add(deliveries, "d1", "t.example")
    http = FakeHttp(delay=0)
    the_sender = sender(deliveries, http, queue, sleep=pauses.append)
    assert the_sender.process_batch([message("d1")]) == []
    assert deliveries.records["d1"].state is DeliveryState.DELIVERED
    assert len(http.calls) == 1
    assert pauses == [0.1, 0.2, 0.4]


def test_the_outcome_write_gives_up_before_the_lease_ends() -> None:
    clock = [NOW]
    deliveries, queue = ThrottledWrites(failures=1000), InMemoryQueue()
    add(deliveries, "d1", "t.example")

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    the_sender = sender(deliveries, FakeHttp(delay=0), queue, sleep=sleep, clock=lambda: clock[0], lease_seconds=30)
    assert the_sender.process_batch([message("d1")]) == ["m-1"]
    assert (clock[0] - NOW).total_seconds() < 30


def test_a_retry_wait_is_cut_to_end_within_12_hours_of_the_receive() -> None:
    deliveries, queue = InMemoryDeliveries(), InMemoryQueue()
    add(deliveries, "d1", "down.example")
    deliveries.records["d1"] = dataclasses.replace(deliveries.records["d1"], cycle_attempts=9)
    received = NOW - timedelta(minutes=10)
    the_sender = sender(deliveries, FakeHttp(delay=0, status_for={"down.example": 503}), queue)
    assert the_sender.process_batch([message("d1", received_at=received)]) == ["m-1"]
    ((_, seconds),) = queue.visibility
    assert seconds <= MAX_VISIBILITY_SECONDS - 600 - RECEIVE_MARGIN_SECONDS
    # The record keeps the full wait: the next receive hides the message for the rest.
    due = datetime.fromisoformat(deliveries.records["d1"].next_attempt_at or "")
    assert (due - NOW).total_seconds() == 12 * 3600


def test_a_message_back_early_is_hidden_for_the_rest_of_the_wait_within_12_hours() -> None:
    deliveries, queue = InMemoryDeliveries(), InMemoryQueue()
    add(deliveries, "d1", "t.example", DeliveryState.RETRYING)
    due = NOW + timedelta(hours=13)
    deliveries.records["d1"] = dataclasses.replace(
        deliveries.records["d1"], next_attempt_at=due.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    http = FakeHttp(delay=0)
    assert sender(deliveries, http, queue).process_batch([message("d1", received_at=NOW)]) == ["m-1"]
    assert http.calls == []
    ((_, seconds),) = queue.visibility
    assert seconds == MAX_VISIBILITY_SECONDS - RECEIVE_MARGIN_SECONDS


def test_senders_built_without_the_new_options_still_work() -> None:
    deliveries, queue = InMemoryDeliveries(), InMemoryQueue()
    add(deliveries, "d1", "t.example")
    the_sender: DeliverySender = sender(deliveries, FakeHttp(delay=0), queue)
    assert the_sender.process_batch([IncomingMessage("m-1", "rh", json.dumps({"v": 1, "delivery_id": "d1"}))]) == []
    assert deliveries.records["d1"].state is DeliveryState.DELIVERED
