"""The batch logic against in-memory fakes that hold state (the AWS path is tested on moto)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.core.model import Postback, Scope, delivery_id_for
from functions.evaluator.ports import WriteMap
from functions.evaluator.rules_cache import RulesCache
from functions.evaluator.service import ConversionEvaluator
from functions.storage.postbacks import RulesVersion
from tests.support.conversions import conversion, postback
from tests.support.fakes import InMemoryPlannedDeliveries, InMemoryPostbacks, InMemoryQueue
from tests.support.streams import StreamBuilder, records_from, sequence_number_of

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


class World:
    def __init__(self, postbacks: Iterable[Postback], write_map: WriteMap = map) -> None:
        self.postbacks = InMemoryPostbacks(postbacks)
        self.deliveries = InMemoryPlannedDeliveries()
        self.queue = InMemoryQueue()
        self.dlq = InMemoryQueue()
        self.evaluator = ConversionEvaluator(
            postbacks=self.postbacks,
            deliveries=self.deliveries,
            deliveries_queue=self.queue,
            dead_letter_queue=self.dlq,
            rules_cache=RulesCache(0),
            delivery_ttl_days=90,
            clock=lambda: NOW,
            write_map=write_map,
        )

    def enqueued(self) -> set[str]:
        return {m["delivery_id"] for m in self.queue.messages}

    def run_like_lambda(self, records: list[dict[str, Any]], max_invocations: int = 5) -> list[str | None]:
        """Invoke, then retry from the reported record, as Lambda does, until a batch succeeds."""
        reported: list[str | None] = []
        batch = records
        for _ in range(max_invocations):
            result = self.evaluator.process(batch)
            reported.append(result.failed_sequence_number)
            if result.failed_sequence_number is None:
                return reported
            batch = records_from(records, result.failed_sequence_number)
        return reported


def many_affiliates(count: int) -> tuple[list[Postback], list[dict[str, Any]]]:
    stream = StreamBuilder()
    postbacks = [postback(f"pb_{i}", f"aff-{i}") for i in range(count)]
    records = [stream.insert(conversion(conversion_id=f"c-{i}", affiliate_id=f"aff-{i}")) for i in range(count)]
    return postbacks, records


def test_write_failure_reports_that_record_and_the_retry_completes_every_delivery() -> None:
    postbacks, records = many_affiliates(5)
    world = World(postbacks)
    world.deliveries.fail_on_write = 3
    reported = world.run_like_lambda(records)
    assert reported == [sequence_number_of(records[2]), None]
    assert set(world.deliveries.items) == world.enqueued()
    assert len(world.deliveries.items) == 5
    # Records before the failure were enqueued in the first invocation, not again.
    assert len(world.queue.messages) == 5


def last_first(function: Callable[[Any], Any], deliveries: Sequence[Any], /) -> Iterable[Any]:
    """A write map that makes the writes in the opposite order (as concurrent writes may finish)."""
    return list(reversed([function(delivery) for delivery in reversed(deliveries)]))


def test_writes_made_out_of_order_are_reported_in_record_order() -> None:
    postbacks, records = many_affiliates(5)
    world = World(postbacks, write_map=last_first)
    world.deliveries.fail_on_write = 2  # the second write made: record 3's
    first = world.evaluator.process(records)
    assert first.failed_sequence_number == sequence_number_of(records[3])
    # Records 0-2 are complete; record 4 was written (out of order) but not enqueued: the retry does it.
    assert world.enqueued() == {delivery_id_for(f"pb_{n}", f"c-{n}", "approved") for n in range(3)}
    assert first.deliveries_created == 3
    retry = world.evaluator.process(records_from(records, first.failed_sequence_number))
    assert retry.failed_sequence_number is None
    assert world.enqueued() == set(world.deliveries.items)
    assert len(world.deliveries.items) == len(world.queue.messages) == 5


def test_concurrent_writes_create_and_enqueue_each_delivery_once_in_record_order() -> None:
    postbacks, records = many_affiliates(40)
    with ThreadPoolExecutor(max_workers=8) as pool:
        world = World(postbacks, write_map=pool.map)
        stream = StreamBuilder(start_sequence=100_000_000_000_000_001_000)
        flip = conversion(conversion_id="c-3", affiliate_id="aff-3")
        records += [
            stream.modify(flip, {**flip, "status": "pending"}),
            stream.modify({**flip, "status": "pending"}, flip),
        ]
        result = world.evaluator.process(records)
    assert result.failed_sequence_number is None
    assert result.deliveries_created == 40
    expected = [delivery_id_for(f"pb_{n}", f"c-{n}", "approved") for n in range(40)]
    assert [message["delivery_id"] for message in world.queue.messages] == expected


def test_refused_queue_entries_report_the_earliest_record_not_enqueued() -> None:
    postbacks, records = many_affiliates(12)
    world = World(postbacks)
    world.queue.refuse = {delivery_id_for("pb_4", "c-4", "approved")}
    result = world.evaluator.process(records)
    assert result.failed_sequence_number == sequence_number_of(records[4])
    world.queue.refuse = set()
    assert world.run_like_lambda(records_from(records, sequence_number_of(records[4]))) == [None]
    assert world.enqueued() == set(world.deliveries.items)
    assert len(world.deliveries.items) == 12


def test_failed_postbacks_read_stops_before_the_first_record_of_that_affiliate() -> None:
    postbacks, records = many_affiliates(4)
    world = World(postbacks)
    world.postbacks.failing = {"aff-2"}
    result = world.evaluator.process(records)
    assert result.failed_sequence_number == sequence_number_of(records[2])
    assert {item[0].affiliate_id for item in world.deliveries.items.values()} == {"aff-0", "aff-1"}
    assert len(world.enqueued()) == 2


def test_malformed_record_that_cannot_be_dead_lettered_is_reported() -> None:
    stream = StreamBuilder()
    records = [stream.insert(conversion(conversion_id="c-0")), stream.insert(conversion(status="paid"))]
    world = World([postback()])
    world.dlq.down = True
    result = world.evaluator.process(records)
    assert result.failed_sequence_number == sequence_number_of(records[1])
    assert len(world.enqueued()) == 1


def test_render_failure_goes_to_the_dead_letter_queue_and_other_postbacks_fire() -> None:
    world = World([postback("pb_bad", url="https://{affS1}/x"), postback("pb_ok")])
    record = StreamBuilder().insert(conversion())
    result = world.evaluator.process([record])
    assert result.failed_sequence_number is None
    (dead_letter,) = world.dlq.messages
    assert dead_letter["reason"].startswith("render_failed: ")
    assert dead_letter["reason"].endswith("(postback pb_bad)")
    assert dead_letter["record"] == record
    assert dead_letter["sequence_number"] == sequence_number_of(record)
    assert [item[0].postback_id for item in world.deliveries.items.values()] == ["pb_ok"]


def test_existing_pending_delivery_is_enqueued_again_and_a_handled_one_is_not() -> None:
    world = World([postback("pb_1"), postback("pb_2")])
    record = StreamBuilder().insert(conversion())
    world.evaluator.process([record])
    world.queue.messages.clear()
    pb2_id = next(key for key, item in world.deliveries.items.items() if item[0].postback_id == "pb_2")
    world.deliveries.items[pb2_id] = (world.deliveries.items[pb2_id][0], "delivered")
    result = world.evaluator.process([record])
    assert result.deliveries_created == 0
    assert [item[0].postback_id for item in world.deliveries.items.values() if item[1] == "pending"] == ["pb_1"]
    assert world.enqueued() == {key for key, item in world.deliveries.items.items() if item[0].postback_id == "pb_1"}


def test_flip_flop_in_one_batch_writes_and_enqueues_once() -> None:
    stream = StreamBuilder()
    approved, pending = conversion(), conversion(status="pending")
    records = [stream.insert(approved), stream.modify(approved, pending), stream.modify(pending, approved)]
    world = World([postback()])
    result = world.evaluator.process(records)
    assert result.failed_sequence_number is None
    assert world.deliveries.writes == 1
    assert len(world.queue.messages) == 1


def test_one_postbacks_read_per_affiliate_per_batch() -> None:
    stream = StreamBuilder()
    records = [
        stream.insert(conversion(conversion_id=f"c-{i}", affiliate_id=f"aff-{i % 3}", offer_id=f"o-{i}"))
        for i in range(30)
    ]
    world = World([postback(f"pb_{a}", f"aff-{a}", scope=Scope.GLOBAL) for a in range(3)])
    world.evaluator.process(records)
    assert sorted(world.postbacks.reads) == ["aff-0", "aff-1", "aff-2"]
    assert world.queue.batches == 3


# The rules version: read once per batch with a status change, only when the cache is on; a failed
# read is not a batch failure.


class FakeVersions:
    def __init__(self) -> None:
        self.number = 0
        self.reads = 0
        self.failing = False

    def rules_version(self) -> RulesVersion:
        self.reads += 1
        if self.failing:
            raise TimeoutError("get timed out")
        return RulesVersion(self.number, None)


def versioned_world(ttl: float) -> tuple[World, FakeVersions, list[float]]:
    world = World([postback("pb_1", "aff-1"), postback("pb_2", "aff-2")])
    versions = FakeVersions()
    now = [0.0]
    world.evaluator = ConversionEvaluator(
        postbacks=world.postbacks,
        deliveries=world.deliveries,
        deliveries_queue=world.queue,
        dead_letter_queue=world.dlq,
        rules_cache=RulesCache(ttl, clock=lambda: now[0]),
        delivery_ttl_days=90,
        clock=lambda: NOW,
        rules_versions=versions,
    )
    return world, versions, now


def test_the_version_is_read_once_per_batch_and_keeps_the_rules_while_unchanged() -> None:
    world, versions, now = versioned_world(5)
    stream = StreamBuilder()
    records = [stream.insert(conversion(conversion_id=f"c-{n}", affiliate_id=f"aff-{n % 2 + 1}")) for n in range(6)]
    world.evaluator.process(records[:3])
    now[0] += 30  # past the TTL, within the max age
    world.evaluator.process(records[3:])
    assert versions.reads == 2
    assert world.postbacks.reads == ["aff-1", "aff-2"]
    versions.number = 1
    world.evaluator.process([stream.insert(conversion(conversion_id="c-9", affiliate_id="aff-1"))])
    assert world.postbacks.reads == ["aff-1", "aff-2", "aff-1"]
    assert len(world.enqueued()) == 7


def test_no_version_read_without_status_changes_or_with_the_cache_off() -> None:
    world, versions, _ = versioned_world(5)
    stream = StreamBuilder()
    old = conversion(conversion_id="c-1", status="pending", payout=1)
    world.evaluator.process([stream.modify(old, {**old, "payout": 2})])
    assert versions.reads == 0
    world, versions, _ = versioned_world(0)
    world.evaluator.process([stream.insert(conversion(conversion_id="c-2"))])
    world.evaluator.process([stream.insert(conversion(conversion_id="c-3"))])
    assert versions.reads == 0
    assert world.postbacks.reads == ["aff-1", "aff-1"]


def test_a_failed_version_read_does_not_fail_the_batch() -> None:
    world, versions, now = versioned_world(5)
    stream = StreamBuilder()
    world.evaluator.process([stream.insert(conversion(conversion_id="c-1"))])
    versions.failing = True
    now[0] += 60
    result = world.evaluator.process([stream.insert(conversion(conversion_id="c-2"))])
    assert result.failed_sequence_number is None
    assert world.postbacks.reads == ["aff-1", "aff-1"]  # past the TTL without a version: read again
    assert world.enqueued() == {delivery_id_for("pb_1", f"c-{n}", "approved") for n in (1, 2)}
