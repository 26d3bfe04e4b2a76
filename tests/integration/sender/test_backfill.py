"""Backfill (docs/sender.md#backfill) with the real handler, moto in-process and real loopback receivers.

An invocation whose event holds a delivery to a slow tracker receives the deliveries waiting in the
queue while that GET is in flight, sends them, and deletes the messages it acknowledged
(DeleteMessageBatch); a waiting delivery to the slow tracker itself is not sent a second GET.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from functions.core.model import DeliveryState
from tests.integration.sender.conftest import Receiver, Reply, Stack, sender_settings

pytestmark = pytest.mark.integration


def _backfilling(stack: Stack) -> None:
    stack.use(
        sender_settings(
            total_timeout_seconds=4.0,
            read_timeout_seconds=4.0,
            sender_backfill_after_seconds=0.3,
            host_pause_after=0,
        )
    )


def _queue_counts(stack: Stack) -> tuple[int, int]:
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=stack.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_a_slow_get_does_not_keep_the_invocation_from_sending_what_waits_in_the_queue(
    stack: Stack, make_receiver: Callable[..., Receiver]
) -> None:
    _backfilling(stack)
    slow = make_receiver(Reply(200, delay=2.0))
    # One tracker each (a test server's listen backlog is 5; and a GET slowed by a loaded machine
    # would hold back only its own tracker's other deliveries).
    fast = [make_receiver(Reply(200)) for _ in range(12)]
    stack.postback("pb_slow", url=slow.url("/cb?d={deliveryId}"))
    stack.postback("pb_fast", url=fast[0].url("/cb?d={deliveryId}"))
    slow_delivery = stack.delivery(slow.url("/cb"), postback_id="pb_slow", conversion_id="s-1")
    event = stack.receive(max_messages=1)
    waiting = [
        stack.delivery(fast[n].url(f"/cb?n={n}"), postback_id="pb_fast", conversion_id=f"f-{n}") for n in range(12)
    ]

    assert stack.invoke(event) == []

    assert stack.record(slow_delivery).state == DeliveryState.DELIVERED.value
    assert sum(len(receiver.hits) for receiver in fast) == 12
    assert all(stack.record(d).state == DeliveryState.DELIVERED.value for d in waiting)
    # Nothing is left: the event's message acknowledged in the batch response, the others deleted by the sender.
    assert _queue_counts(stack) == (0, 0)


def test_a_waiting_delivery_to_the_slow_tracker_gets_no_second_get_while_the_first_is_slow(
    stack: Stack, make_receiver: Callable[..., Receiver]
) -> None:
    _backfilling(stack)
    slow = make_receiver(Reply(200, delay=1.0))
    stack.postback("pb_slow", url=slow.url("/cb?d={deliveryId}"))
    stack.delivery(slow.url("/cb?n=1"), postback_id="pb_slow", conversion_id="s-1")
    event = stack.receive(max_messages=1)
    second = stack.delivery(slow.url("/cb?n=2"), postback_id="pb_slow", conversion_id="s-2")

    assert stack.invoke(event) == []

    assert [hit.path for hit in slow.hits] == ["/cb?n=1"]
    record = stack.record(second)
    assert record.state == DeliveryState.PENDING.value
    assert not record.attempts and record.cycle_attempts == 0 and record.lease_owner is None
    # Its message is hidden until the slow GET's deadline (4 s from its start) has passed, and kept.
    assert any(3 <= seconds <= 5 for seconds in stack.visibility_requests)
    assert _queue_counts(stack) == (0, 1)


def test_without_backfill_the_invocation_takes_nothing(stack: Stack, make_receiver: Callable[..., Receiver]) -> None:
    stack.use(
        sender_settings(
            sender_backfill_after_seconds=0.0, host_pause_after=0, total_timeout_seconds=3.0, read_timeout_seconds=3.0
        )
    )
    slow, fast = make_receiver(Reply(200, delay=0.4)), make_receiver(Reply(200))
    stack.postback("pb_slow", url=slow.url("/cb?d={deliveryId}"))
    stack.postback("pb_fast", url=fast.url("/cb?d={deliveryId}"))
    stack.delivery(slow.url("/cb"), postback_id="pb_slow", conversion_id="s-1")
    event = stack.receive(max_messages=1)
    stack.delivery(fast.url("/cb"), postback_id="pb_fast", conversion_id="f-1")

    assert stack.invoke(event) == []

    assert fast.hits == []
    assert _queue_counts(stack) == (1, 0)
