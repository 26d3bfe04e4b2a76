"""The sender handler end to end in-process: moto SQS/DynamoDB, real HTTP receivers on loopback."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import boto3
import pytest

from functions.core.dead_letter_index import DEAD_PARTITION
from functions.core.model import DeliveryState
from functions.storage.models import DeliveryModel

from .conftest import Reply, Stack, sender_settings

pytestmark = pytest.mark.integration


def test_200_is_delivered_the_message_is_gone_and_health_updated(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(200, body=b"thanks"))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url("/cb?click=abc"))

    failed = stack.run_once()

    assert failed == []
    assert [hit.path for hit in receiver.hits] == ["/cb?click=abc"]
    assert receiver.hits[0].headers["user-agent"].startswith("postbacks/")
    record = stack.record(delivery_id)
    assert record.state == DeliveryState.DELIVERED
    assert record.delivered_at is not None
    assert record.lease_owner is None
    [attempt] = record.attempts
    assert (attempt.number, attempt.outcome, attempt.status_code) == (1, "delivered", 200)
    assert attempt.response_excerpt == "thanks"
    assert attempt.resolved_address == "127.0.0.1"
    assert stack.queue_depth() == 0
    health = stack.postback_item()
    assert health.last_success_at is not None
    assert health.consecutive_failures == 0
    assert health.version == 1  # health writes never bump the postback's version


def test_500_then_200_is_retried_after_the_wait_then_delivered(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(500, body=b"oops"), Reply(200))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())

    first = stack.receive()
    failed = stack.invoke(first)

    assert failed == [first["Records"][0]["messageId"]]
    assert stack.visibility_requests == [1]  # ceil of a wait in [0.005, 0.01] s
    record = stack.record(delivery_id)
    assert record.state == DeliveryState.RETRYING
    assert record.next_attempt_at is not None
    assert record.attempts[0].outcome == "retryable"
    assert record.attempts[0].next_attempt_at == record.next_attempt_at
    assert record.attempts[0].response_excerpt == "oops"

    stack.make_visible(first)
    assert stack.run_once() == []

    record = stack.record(delivery_id)
    assert record.state == DeliveryState.DELIVERED
    assert [(a.number, a.status_code) for a in record.attempts] == [(1, 500), (2, 200)]
    assert len(receiver.hits) == 2
    assert stack.queue_depth() == 0


def test_always_500_is_dead_lettered_with_its_history_after_the_last_attempt(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(500, body=b"down"))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())

    stack.run_until_settled()

    assert len(receiver.hits) == 3  # max_attempts
    record = stack.record(delivery_id)
    assert record.state == DeliveryState.DEAD_LETTERED
    assert record.reason == "retries_exhausted"
    assert record.dead_letter_partition == DEAD_PARTITION
    assert record.dead_lettered_at is not None
    [dead] = stack.dead_letters()
    assert dead["delivery_id"] == delivery_id
    assert dead["reason"] == "retries_exhausted"
    assert dead["last_status_code"] == 500
    assert [a["status_code"] for a in dead["attempts"]] == [500, 500, 500]
    assert dead["_attributes"]["reason"]["StringValue"] == "retries_exhausted"
    assert stack.queue_depth() == 0
    health = stack.postback_item()
    assert health.consecutive_failures == 1
    assert health.last_failure_reason == "retries_exhausted"


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("7", 7, 7),
        ("http-date", 6, 9),
        ("soon", 1, 1),  # malformed: ignored, the floor of 0.02 s rounds up to 1 s
        ("99999999", 15, 15),  # huge: capped at base x 1440 = 14.4 s
    ],
)
def test_429_waits_for_retry_after_within_the_rules(
    stack: Stack, make_receiver, retry_after: str, low: int, high: int
) -> None:
    value = (
        format_datetime(datetime.now(UTC) + timedelta(seconds=8), usegmt=True)
        if retry_after == "http-date"
        else retry_after
    )
    receiver = make_receiver(Reply(429, headers={"Retry-After": value}))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())

    assert len(stack.run_once()) == 1

    [requested] = stack.visibility_requests
    assert low <= requested <= high
    record = stack.record(delivery_id)
    assert record.state == DeliveryState.RETRYING
    assert record.attempts[0].retry_after == value


def test_503_is_retried_and_its_retry_after_honoured(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(503, headers={"Retry-After": "4"}))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())

    assert len(stack.run_once()) == 1

    assert stack.visibility_requests == [4]
    assert stack.record(delivery_id).state == DeliveryState.RETRYING


def test_retry_after_on_a_500_is_not_honoured(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(500, headers={"Retry-After": "9"}))
    stack.postback(url=receiver.url())
    stack.delivery(receiver.url())

    stack.run_once()

    assert stack.visibility_requests == [1]


def test_404_is_dead_lettered_at_once_with_status_and_excerpt(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(404, body=b"no such campaign\r\n"))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())

    assert stack.run_once() == []

    record = stack.record(delivery_id)
    assert (record.state, record.reason) == (DeliveryState.DEAD_LETTERED, "http_404")
    assert record.attempts[0].response_excerpt == "no such campaign"
    [dead] = stack.dead_letters()
    assert (dead["reason"], dead["last_status_code"]) == ("http_404", 404)
    assert len(receiver.hits) == 1
    assert stack.queue_depth() == 0


def test_410_is_gone_and_flags_the_postbacks_health(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(410))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())

    stack.run_once()

    assert stack.record(delivery_id).reason == "gone"
    health = stack.postback_item()
    assert (health.consecutive_failures, health.last_failure_reason) == (1, "gone")
    assert health.last_failure_at is not None


def test_a_redirect_is_not_followed_and_its_location_is_kept(stack: Stack, make_receiver) -> None:
    target = make_receiver(Reply(200))
    receiver = make_receiver(Reply(301, headers={"Location": target.url("/elsewhere")}))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())

    stack.run_once()

    record = stack.record(delivery_id)
    assert (record.state, record.reason) == (DeliveryState.DEAD_LETTERED, "redirect_not_followed")
    assert record.attempts[0].location == target.url("/elsewhere")
    assert len(receiver.hits) == 1
    assert target.hits == []


def test_a_receiver_slower_than_the_deadline_is_a_retryable_timeout(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(200, delay=2.5))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())

    assert len(stack.run_once()) == 1

    record = stack.record(delivery_id)
    assert record.state == DeliveryState.RETRYING
    assert record.attempts[0].error in {"timeout", "read_timeout", "deadline_exceeded"}
    assert record.attempts[0].status_code is None


def test_connection_refused_is_retried(stack: Stack) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cb"
    stack.postback(url=url)
    delivery_id = stack.delivery(url)

    assert len(stack.run_once()) == 1

    record = stack.record(delivery_id)
    assert record.state == DeliveryState.RETRYING
    assert record.attempts[0].error == "connection_refused"


def test_a_private_target_without_explicit_permission_is_blocked_and_never_retried(stack: Stack, make_receiver) -> None:
    stack.use(sender_settings(allow_private_targets=()))
    receiver = make_receiver(Reply(200))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())

    assert stack.run_once() == []

    record = stack.record(delivery_id)
    assert (record.state, record.reason) == (DeliveryState.DEAD_LETTERED, "blocked_destination")
    assert receiver.hits == []
    assert stack.dead_letters()[0]["reason"] == "blocked_destination"


def test_a_deleted_postback_cancels_the_delivery_without_a_get(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(200))
    delivery_id = stack.delivery(receiver.url())  # no postback item

    assert stack.run_once() == []

    record = stack.record(delivery_id)
    assert (record.state, record.reason) == (DeliveryState.CANCELLED, "postback_deleted")
    assert record.lease_owner is None
    assert receiver.hits == []
    assert stack.queue_depth() == 0


def test_a_disabled_postback_cancels_the_delivery_without_a_get(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(200))
    stack.postback(url=receiver.url(), enabled=False)
    delivery_id = stack.delivery(receiver.url())

    assert stack.run_once() == []

    assert stack.record(delivery_id).reason == "postback_disabled"
    assert receiver.hits == []


def test_the_same_message_handled_twice_concurrently_sends_one_get(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(200, delay=0.3))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())
    event = stack.receive()
    results: list[list[str]] = []
    start = threading.Barrier(2)

    def handle() -> None:
        start.wait()
        results.append(stack.invoke(event))

    threads = [threading.Thread(target=handle) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(receiver.hits) == 1
    record = stack.record(delivery_id)
    assert record.state == DeliveryState.DELIVERED
    assert len(record.attempts) == 1


def test_a_delivered_delivery_is_acknowledged_without_a_get(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(200))
    stack.postback(url=receiver.url())
    stack.delivery(receiver.url(), state=DeliveryState.DELIVERED)

    assert stack.run_once() == []

    assert receiver.hits == []
    assert stack.queue_depth() == 0


def test_a_delivery_not_yet_due_waits_for_the_rest_of_its_wait(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(200))
    stack.postback(url=receiver.url())
    stack.delivery(
        receiver.url(), state=DeliveryState.RETRYING, next_attempt_at=datetime.now(UTC) + timedelta(seconds=120)
    )

    assert len(stack.run_once()) == 1

    assert receiver.hits == []
    [requested] = stack.visibility_requests
    assert 118 <= requested <= 120


def test_a_malformed_message_goes_to_the_dlq_and_is_acknowledged(stack: Stack) -> None:
    stack.send("not json {")

    assert stack.run_once() == []

    [dead] = stack.dead_letters()
    assert dead["reason"] == "malformed_message"
    assert dead["body"] == "not json {"
    assert stack.queue_depth() == 0


def test_a_message_for_an_unknown_delivery_goes_to_the_dlq(stack: Stack) -> None:
    stack.send({"v": 1, "delivery_id": "dl_unknown"})

    assert stack.run_once() == []

    [dead] = stack.dead_letters()
    assert (dead["reason"], dead["delivery_id"]) == ("unknown_delivery", "dl_unknown")


def test_one_failing_delivery_does_not_make_the_others_resend(stack: Stack, make_receiver) -> None:
    good = make_receiver(Reply(200))
    bad = make_receiver(Reply(500))
    stack.postback(url=good.url())
    ok_ids = [stack.delivery(good.url(f"/ok{i}"), conversion_id=f"c-{i}") for i in range(3)]
    failing_id = stack.delivery(bad.url(), conversion_id="c-bad")
    event = stack.receive()
    assert len(event["Records"]) == 4

    failed = stack.invoke(event)

    assert len(failed) == 1
    [failing_record] = [r for r in event["Records"] if r["messageId"] == failed[0]]
    assert failing_id in failing_record["body"]
    assert all(stack.record(i).state == DeliveryState.DELIVERED for i in ok_ids)
    assert len(good.hits) == 3
    assert stack.queue_depth() == 1


# The AWS calls of a batch, and the postback check between the lease and the GET.


def test_a_happy_batch_makes_two_updates_per_delivery_and_one_batch_read_of_the_postbacks(
    stack: Stack, make_receiver, aws_calls
) -> None:
    first, second = make_receiver(Reply(200)), make_receiver(Reply(200))
    stack.postback("pb_1", url=first.url())
    stack.postback("pb_2", url=second.url())
    for number in range(6):
        receiver, postback_id = (first, "pb_1") if number % 2 else (second, "pb_2")
        stack.delivery(receiver.url(f"/cb?n={number}"), postback_id=postback_id, conversion_id=f"c-{number}")
    event = stack.receive()
    assert len(event["Records"]) == 6
    aws_calls()

    assert stack.invoke(event) == []

    # A lease and an outcome per delivery, the postbacks read once, health written once per postback
    # (its first success); no GetItem, no SQS call (Lambda deletes the successes).
    assert aws_calls() == Counter(
        {
            ("UpdateItem", "postback-deliveries"): 12,
            ("BatchGetItem", "postbacks"): 1,
            ("UpdateItem", "postbacks"): 2,
        }
    )
    assert len(first.hits) + len(second.hits) == 6
    assert stack.postback_item("pb_1").last_success_at is not None

    for number in range(6, 10):
        stack.delivery(first.url(f"/cb?n={number}"), conversion_id=f"c-{number}")
    event = stack.receive()
    aws_calls()

    assert stack.invoke(event) == []

    # Health is fresh and has no failures to reset: nothing to write.
    assert aws_calls() == Counter({("UpdateItem", "postback-deliveries"): 8, ("BatchGetItem", "postbacks"): 1})
    assert len(first.hits) == 7


def test_health_is_written_on_success_when_it_has_failures_to_reset(stack: Stack, make_receiver) -> None:
    receiver = make_receiver(Reply(404), Reply(200))
    stack.postback(url=receiver.url())
    stack.delivery(receiver.url(), conversion_id="c-1")
    stack.run_once()
    assert stack.postback_item().consecutive_failures == 1

    stack.delivery(receiver.url(), conversion_id="c-2")
    stack.run_once()

    assert stack.postback_item().consecutive_failures == 0


def test_a_postback_deleted_after_the_lease_but_before_the_get_cancels(
    stack: Stack, make_receiver, after_first_lease
) -> None:
    receiver = make_receiver(Reply(200))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())
    other = boto3.client("dynamodb", region_name="us-east-1")
    after_first_lease(lambda: other.delete_item(TableName="postbacks", Key={"postback_id": {"S": "pb_1"}}))

    assert stack.run_once() == []

    record = stack.record(delivery_id)
    assert (record.state, record.reason) == (DeliveryState.CANCELLED, "postback_deleted")
    assert record.lease_owner is None
    assert receiver.hits == []


def test_a_postback_disabled_after_the_lease_but_before_the_get_cancels(
    stack: Stack, make_receiver, after_first_lease
) -> None:
    receiver = make_receiver(Reply(200))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())
    other = boto3.client("dynamodb", region_name="us-east-1")
    after_first_lease(
        lambda: other.update_item(
            TableName="postbacks",
            Key={"postback_id": {"S": "pb_1"}},
            UpdateExpression="SET enabled = :off",
            ExpressionAttributeValues={":off": {"BOOL": False}},
        )
    )

    assert stack.run_once() == []

    assert stack.record(delivery_id).reason == "postback_disabled"
    assert receiver.hits == []


def test_a_message_refused_for_another_messages_live_lease_is_acknowledged_as_a_duplicate(
    stack: Stack, make_receiver
) -> None:
    """The lease holder's message carries the delivery on; this one would only use up the receive budget."""
    receiver = make_receiver(Reply(200))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url())
    item = stack.record(delivery_id)
    item.update(
        actions=[
            DeliveryModel.state.set(DeliveryState.IN_FLIGHT.value),
            DeliveryModel.lease_owner.set("another-message:0123456789abcdef"),
            DeliveryModel.lease_expires_at.set(datetime.now(UTC).timestamp() + 60),
        ]
    )

    failed = stack.run_once()

    assert failed == []
    assert receiver.hits == []
    assert stack.visibility_requests == []
    assert stack.record(delivery_id).lease_owner == "another-message:0123456789abcdef"
