"""The evaluator's side of "nothing lost" (docs/reliability.md), against the in-memory fakes.

- a delivery written whose enqueue failed is queued on the retry even after its postback was
  edited so that it no longer matches (re-enqueueing follows the delivery's existence);
- a rendered URL over the limit is recorded `url_too_long` with a DLQ copy, and the batch goes on;
- failures are split: a permanent one sets that record aside, a transient one reports it;
- an edit applies to changes written shortly before it, and never fires a delivery twice.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError

from functions.core.model import PlannedDelivery, Postback, delivery_id_for, format_timestamp
from functions.evaluator.rules_cache import RulesCache
from functions.evaluator.service import ConversionEvaluator
from functions.storage.deliveries import CreateOutcome
from tests.support.conversions import CHANGE_TIME, conversion, postback
from tests.support.fakes import InMemoryPlannedDeliveries, InMemoryPostbacks, InMemoryQueue
from tests.support.streams import StreamBuilder, records_from

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
AFTER_CHANGE = format_timestamp(datetime.fromtimestamp(CHANGE_TIME + 20, UTC))
LONG_BEFORE = "2025-06-01T00:00:00.000000Z"
URL_LIMIT = 8192


class World:
    def __init__(self, postbacks: list[Postback], deliveries: InMemoryPlannedDeliveries | None = None) -> None:
        self.postbacks = InMemoryPostbacks(postbacks)
        self.deliveries = deliveries or InMemoryPlannedDeliveries()
        self.queue = InMemoryQueue()
        self.dlq = InMemoryQueue()
        self.deliveries_dlq = InMemoryQueue()
        self.evaluator = ConversionEvaluator(
            postbacks=self.postbacks,
            deliveries=self.deliveries,
            deliveries_queue=self.queue,
            dead_letter_queue=self.dlq,
            rules_cache=RulesCache(0),
            delivery_ttl_days=90,
            clock=lambda: NOW,
            deliveries_dead_letters=self.deliveries_dlq,
            max_url_bytes=URL_LIMIT,
        )

    def enqueued(self) -> list[str]:
        return [m["delivery_id"] for m in self.queue.messages]

    def edit(self, postback_id: str, **changes: Any) -> None:
        self.postbacks.postbacks[postback_id] = replace(
            self.postbacks.postbacks[postback_id], updated_at=AFTER_CHANGE, version=2, **changes
        )


# Case 1: stranded delivery.


@pytest.mark.parametrize(
    "edit",
    [
        {"conversion_statuses": ("rejected",)},
        {"conversion_types": ("lead",)},
        {"enabled": False},
        {"url": "https://tracker.example/other?c={conversionId}"},
    ],
    ids=["statuses", "types", "disabled", "url"],
)
def test_a_written_delivery_whose_enqueue_failed_is_queued_on_the_retry_after_any_edit(edit: dict[str, Any]) -> None:
    world = World([postback("pb_1", created_at=LONG_BEFORE)])
    delivery_id = delivery_id_for("pb_1", "c-1", "approved")
    world.queue.refuse = {delivery_id}
    records = [StreamBuilder().insert(conversion())]
    failed = world.evaluator.process(records).failed_sequence_number
    assert failed is not None
    assert world.deliveries.items[delivery_id][1] == "pending"
    world.queue.refuse = set()
    world.edit("pb_1", **edit)
    assert world.evaluator.process(records_from(records, failed)).failed_sequence_number is None
    assert world.enqueued() == [delivery_id]


def test_no_read_for_earlier_deliveries_without_a_recent_edit() -> None:
    """Free on the happy path: nothing is read when no postback was saved around the change."""
    world = World([postback("pb_1", created_at=LONG_BEFORE), postback("pb_2", statuses=("rejected",))])
    stream = StreamBuilder()
    result = world.evaluator.process([stream.insert(conversion(conversion_id=f"c-{n}")) for n in range(20)])
    assert result.deliveries_enqueued == 20
    assert world.deliveries.batch_reads == []


def test_an_edited_postback_that_never_fired_costs_one_read_and_queues_nothing() -> None:
    world = World([postback("pb_1", statuses=("rejected",), created_at=LONG_BEFORE, updated_at=AFTER_CHANGE)])
    result = world.evaluator.process([StreamBuilder().insert(conversion())])
    assert result.failed_sequence_number is None
    assert world.deliveries.batch_reads == [[delivery_id_for("pb_1", "c-1", "approved")]]
    assert world.enqueued() == []


def test_a_handled_delivery_is_not_queued_again_after_an_edit() -> None:
    world = World([postback("pb_1", created_at=LONG_BEFORE)])
    records = [StreamBuilder().insert(conversion())]
    world.evaluator.process(records)
    delivery_id = delivery_id_for("pb_1", "c-1", "approved")
    world.deliveries.items[delivery_id] = (world.deliveries.items[delivery_id][0], "delivered")
    world.queue.messages.clear()
    world.edit("pb_1", conversion_statuses=("rejected",))
    world.evaluator.process(records)
    assert world.enqueued() == []


# Case 2: poison record.


def huge_conversion(affiliate_id: str = "aff-1", conversion_id: str = "c-huge") -> dict[str, Any]:
    return conversion(conversion_id=conversion_id, affiliate_id=affiliate_id, aff_s1="x" * 300_000)


def test_a_url_over_the_limit_is_dead_lettered_url_too_long_and_the_batch_goes_on() -> None:
    many_uses = "https://tracker.example/cb?" + "&".join(f"s{n}={{affS1}}" for n in range(10))
    world = World([postback("pb_big", url=many_uses), postback("pb_other", "aff-2")])
    stream = StreamBuilder()
    records = [stream.insert(huge_conversion()), stream.insert(conversion(conversion_id="c-2", affiliate_id="aff-2"))]
    result = world.evaluator.process(records)
    assert result.failed_sequence_number is None
    big = delivery_id_for("pb_big", "c-huge", "approved")
    planned, state = world.deliveries.items[big]
    assert state == "dead_lettered"
    assert len(planned.url.encode()) <= URL_LIMIT
    assert world.enqueued() == [delivery_id_for("pb_other", "c-2", "approved")]
    (copy,) = world.deliveries_dlq.messages
    assert (copy["delivery_id"], copy["reason"], copy["attempts"]) == (big, "url_too_long", [])
    assert world.deliveries.copies_confirmed == {big}
    assert world.dlq.messages == []


def test_a_url_too_long_copy_that_failed_is_sent_on_the_retry() -> None:
    world = World([postback("pb_big", url="https://tracker.example/cb?a={affS1}")])
    records = [StreamBuilder().insert(huge_conversion())]
    world.deliveries_dlq.down = True
    failed = world.evaluator.process(records).failed_sequence_number
    assert failed is not None
    assert world.deliveries.copies_confirmed == set()
    world.deliveries_dlq.down = False
    assert world.evaluator.process(records_from(records, failed)).failed_sequence_number is None
    assert [m["reason"] for m in world.deliveries_dlq.messages] == ["url_too_long"]
    # A later duplicate of the record finds the copy confirmed: no second copy.
    world.evaluator.process(records)
    assert len(world.deliveries_dlq.messages) == 1


class RefusingDeliveries(InMemoryPlannedDeliveries):
    """DynamoDB refuses the writes of one postback: for good (`ValidationException`) or for now."""

    def __init__(self, postback_id: str, error: Exception) -> None:
        super().__init__()
        self.postback_id = postback_id
        self.error = error

    def create(self, planned: PlannedDelivery, *, now: datetime, ttl_days: int) -> CreateOutcome:
        if planned.postback_id == self.postback_id:
            raise self.error
        return super().create(planned, now=now, ttl_days=ttl_days)


def validation_error() -> PutError:
    response = {"Error": {"Code": "ValidationException", "Message": "Item size has exceeded the maximum allowed size"}}
    return PutError("Failed to put item", cause=ClientError(response, "PutItem"))  # type: ignore[arg-type]


def test_a_permanent_write_failure_sets_that_record_aside_and_the_batch_goes_on() -> None:
    deliveries = RefusingDeliveries("pb_bad", validation_error())
    world = World([postback("pb_bad"), postback("pb_ok"), postback("pb_next", "aff-2")], deliveries)
    stream = StreamBuilder()
    records = [stream.insert(conversion()), stream.insert(conversion(conversion_id="c-2", affiliate_id="aff-2"))]
    result = world.evaluator.process(records)
    assert result.failed_sequence_number is None
    (dead_letter,) = world.dlq.messages
    assert dead_letter["reason"] == "delivery_rejected: ValidationException (postback pb_bad)"
    assert dead_letter["record"] == records[0]
    assert sorted(world.enqueued()) == sorted(
        [delivery_id_for("pb_ok", "c-1", "approved"), delivery_id_for("pb_next", "c-2", "approved")]
    )


def test_a_transient_write_failure_reports_the_record() -> None:
    deliveries = RefusingDeliveries("pb_bad", ConnectionError("throttled"))
    world = World([postback("pb_bad"), postback("pb_next", "aff-2")], deliveries)
    stream = StreamBuilder()
    records = [stream.insert(conversion()), stream.insert(conversion(conversion_id="c-2", affiliate_id="aff-2"))]
    result = world.evaluator.process(records)
    assert result.failed_sequence_number == records[0]["dynamodb"]["SequenceNumber"]
    assert world.dlq.messages == []


# Case 6: edits and in-flight changes.


def test_an_edit_applies_to_a_change_written_shortly_before_it() -> None:
    """The change was written before the edit was saved and evaluated after: the edited postback fires."""
    world = World([postback("pb_1", statuses=("rejected",), created_at=LONG_BEFORE)])
    world.edit("pb_1", conversion_statuses=("approved", "rejected"))
    assert world.postbacks.postbacks["pb_1"].updated_at > format_timestamp(datetime.fromtimestamp(CHANGE_TIME, UTC))
    world.evaluator.process([StreamBuilder().insert(conversion())])
    assert world.enqueued() == [delivery_id_for("pb_1", "c-1", "approved")]


def test_an_edit_never_fires_a_delivery_twice() -> None:
    world = World([postback("pb_1", created_at=LONG_BEFORE)])
    records = [StreamBuilder().insert(conversion())]
    world.evaluator.process(records)
    world.deliveries.items[delivery_id_for("pb_1", "c-1", "approved")] = (
        world.deliveries.items[delivery_id_for("pb_1", "c-1", "approved")][0],
        "delivered",
    )
    world.edit("pb_1", url="https://tracker.example/v2?c={conversionId}")
    result = world.evaluator.process(records)
    assert (result.deliveries_created, result.deliveries_enqueued) == (0, 0)


def test_a_postback_created_after_the_change_never_fires_it() -> None:
    world = World([postback("pb_new", created_at=AFTER_CHANGE)])
    world.evaluator.process([StreamBuilder().insert(conversion())])
    assert world.enqueued() == []
    assert world.deliveries.batch_reads == []
