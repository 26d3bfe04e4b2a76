"""Retries and dead-lettering over the wire, with the fast retry schedule of the e2e stack."""

from __future__ import annotations

import json
import time

import pytest

from local.receiver import Receiver
from tests.e2e.harness import MAX_ATTEMPTS, Stack

pytestmark = pytest.mark.e2e

TIMEOUT = 30.0


def test_a_500_is_retried_with_the_same_delivery_id_until_the_tracker_answers_200(
    stack: Stack, receiver: Receiver, affiliate: str
) -> None:
    receiver.script("/flaky", [500], then=200)
    postback = stack.create_postback(affiliate, receiver.url("/flaky?d={deliveryId}"))
    stack.put_conversion(affiliate, "approved")
    first, second = receiver.wait_for(2, route="/flaky", timeout=TIMEOUT)
    assert (first.status, second.status) == (500, 200)
    assert first.query["d"] == second.query["d"]
    deadline = time.monotonic() + TIMEOUT
    while True:
        log = stack.api("GET", f"/postbacks/{postback['id']}/deliveries")
        assert log.status_code == 200, log.text
        [delivery] = log.json()["items"]
        if delivery["state"] == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert delivery["state"] == "delivered"
    assert [attempt["status_code"] for attempt in delivery["attempts"]] == [500, 200]


def test_a_tracker_that_always_fails_gets_the_delivery_dead_lettered(
    stack: Stack, receiver: Receiver, affiliate: str
) -> None:
    receiver.script("/down", [], then=500)
    postback = stack.create_postback(affiliate, receiver.url("/down?d={deliveryId}"))
    stack.put_conversion(affiliate, "approved")
    hits = receiver.wait_for(MAX_ATTEMPTS, route="/down", timeout=TIMEOUT)
    delivery_id = hits[0].query["d"]
    dlq = stack.queue_url("postback-deliveries-dlq")
    deadline = time.monotonic() + TIMEOUT
    bodies: list[dict[str, object]] = []
    while not any(body.get("delivery_id") == delivery_id for body in bodies):
        assert time.monotonic() < deadline, f"{delivery_id} never reached the DLQ"
        messages = stack.sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1
        ).get("Messages", [])
        bodies = [json.loads(message["Body"]) for message in messages]
    [dead] = [body for body in bodies if body.get("delivery_id") == delivery_id]
    assert dead["postback_id"] == postback["id"]
    assert dead["last_status_code"] == 500
    time.sleep(1.0)
    assert len(receiver.requests("/down")) == MAX_ATTEMPTS
