"""A poison record through the running stack (`make run`): a legal conversion with a huge sub-ID used many
times in a postback's URL. Its delivery is dead-lettered `url_too_long` (delivery log and DLQ), and a
normal conversion of another affiliate written right after it fires within seconds."""

from __future__ import annotations

import json
import time

import pytest

from local.receiver import Receiver
from tests.e2e.harness import Stack

pytestmark = pytest.mark.e2e

FIRE_WITHIN = 15.0
HUGE_SUB_ID = "x" * 300_000  # a 300 KB aff_s1: the conversion item is legal (under 400 KB)


def test_a_huge_sub_id_is_dead_lettered_url_too_long_and_the_next_conversion_fires_within_seconds(
    stack: Stack, receiver: Receiver, affiliate: str
) -> None:
    many_uses = "&".join(f"s{n}={{affS1}}" for n in range(10))
    poisoned = stack.create_postback(affiliate, receiver.url(f"/poison?{many_uses}&d={{deliveryId}}"))
    other_affiliate = f"{affiliate}-other"
    stack.create_postback(other_affiliate, receiver.url("/after-poison?c={conversionId}"))

    stack.put_conversion(affiliate, "approved", aff_s1=HUGE_SUB_ID)
    written = time.monotonic()
    normal = stack.put_conversion(other_affiliate, "approved")

    [hit] = receiver.wait_for(1, route="/after-poison", timeout=FIRE_WITHIN)
    assert hit.query["c"] == normal
    assert time.monotonic() - written < FIRE_WITHIN

    deadline = time.monotonic() + FIRE_WITHIN
    while True:
        log = stack.api("GET", f"/postbacks/{poisoned['id']}/deliveries")
        assert log.status_code == 200, log.text
        items = log.json()["items"]
        if items or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    [delivery] = items
    assert (delivery["state"], delivery["reason"], delivery["attempts"]) == ("dead_lettered", "url_too_long", [])
    assert len(delivery["url"].encode()) <= 8192

    dlq = stack.queue_url("postback-deliveries-dlq")
    found: list[dict[str, object]] = []
    while not found:
        assert time.monotonic() < deadline + FIRE_WITHIN, "no url_too_long copy in the deliveries DLQ"
        messages = stack.sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1
        ).get("Messages", [])
        found = [
            body for body in (json.loads(m["Body"]) for m in messages) if body.get("delivery_id") == delivery["id"]
        ]
    assert found[0]["reason"] == "url_too_long"
    assert receiver.requests("/poison") == []
