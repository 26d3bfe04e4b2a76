"""The evaluator's side of "nothing lost" on moto (docs/reliability.md): the real repository's reads and
writes, DynamoDB's own refusal of an oversized item, the deliveries DLQ copy."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from functions import bootstrap
from functions.core.conversion import parse_change
from functions.core.matching import match_change
from functions.core.model import delivery_id_for, format_timestamp
from functions.evaluator.service import ConversionEvaluator
from functions.storage.deliveries import CreateOutcome, DeliveryRepository
from functions.storage.postbacks import new_item
from tests.integration.evaluator.conftest import Stack
from tests.support.conversions import conversion, postback
from tests.support.streams import StreamBuilder

pytestmark = pytest.mark.integration

LONG_BEFORE = "2025-06-01T00:00:00.000000Z"


def deliveries_dlq(stack: Stack) -> str:
    return str(stack.sqs.create_queue(QueueName=stack.settings.deliveries_dlq)["QueueUrl"])


def test_a_pending_delivery_of_an_edited_postback_is_queued_when_its_record_comes_back(stack: Stack) -> None:
    """The first invocation wrote the delivery and died before sending it; the postback was then edited."""
    original = postback("pb_1", created_at=LONG_BEFORE)
    stack.add_postback(original)
    record = StreamBuilder().insert(conversion())
    change = parse_change(record)
    assert change is not None
    (planned,) = match_change(change, [original]).deliveries
    now = datetime.now(UTC)
    assert DeliveryRepository().create(planned, now=now, ttl_days=90) is CreateOutcome.CREATED
    edited = replace(original, conversion_statuses=("rejected",), updated_at=format_timestamp(now))
    item = new_item(edited)
    item.version = 1  # saved over version 1: becomes version 2
    item.save()

    assert stack.invoke([record]) == {"batchItemFailures": []}

    assert stack.queued_delivery_ids() == [delivery_id_for("pb_1", "c-1", "approved")]


def test_a_url_too_long_delivery_is_recorded_with_its_copy_and_the_next_record_fires(stack: Stack) -> None:
    dlq_url = deliveries_dlq(stack)
    stack.add_postback(postback("pb_big", url="https://t.example/cb?" + "&".join(f"s{n}={{affS1}}" for n in range(10))))
    stack.add_postback(postback("pb_next", "aff-2"))
    stream = StreamBuilder()
    records = [
        stream.insert(conversion(conversion_id="c-huge", aff_s1="x" * 300_000)),
        stream.insert(conversion(conversion_id="c-2", affiliate_id="aff-2")),
    ]

    assert stack.invoke(records) == {"batchItemFailures": []}

    big = stack.deliveries()[delivery_id_for("pb_big", "c-huge", "approved")]
    assert (big.state, big.reason, big.dlq_copy_sent, big.dead_letter_partition) == (
        "dead_lettered",
        "url_too_long",
        True,
        None,
    )
    assert len(big.url.encode()) <= stack.settings.max_url_bytes
    assert stack.queued_delivery_ids() == [delivery_id_for("pb_next", "c-2", "approved")]
    (copy,) = [message["body"] for message in stack.drain(dlq_url)]
    assert (copy["delivery_id"], copy["reason"]) == (big.delivery_id, "url_too_long")


def test_dynamodb_refusing_an_item_for_good_sets_the_record_aside_and_the_batch_goes_on(stack: Stack) -> None:
    """Without the URL bound the item is over 400 KB: a ValidationException is permanent, not a retry."""
    unbounded = ConversionEvaluator(
        postbacks=bootstrap.postback_repository(),
        deliveries=bootstrap.delivery_repository(),
        deliveries_queue=bootstrap.deliveries_queue(),
        dead_letter_queue=bootstrap.evaluator_dlq(),
        rules_cache=stack.evaluator._rules,
        delivery_ttl_days=90,
        max_url_bytes=10**9,
    )
    stack.add_postback(postback("pb_big", url="https://t.example/cb?" + "&".join(f"s{n}={{affS1}}" for n in range(3))))
    stack.add_postback(postback("pb_next", "aff-2"))
    stream = StreamBuilder()
    records = [
        stream.insert(conversion(conversion_id="c-huge", aff_s1="x" * 300_000)),
        stream.insert(conversion(conversion_id="c-2", affiliate_id="aff-2")),
    ]

    assert unbounded.process(records).failed_sequence_number is None

    (dead_letter,) = [message["body"] for message in stack.drain(stack.dlq_url)]
    assert dead_letter["reason"] == "delivery_rejected: ValidationException (postback pb_big)"
    assert stack.queued_delivery_ids() == [delivery_id_for("pb_next", "c-2", "approved")]
