"""`on_conversion_change` fed Lambda-shaped stream records, against moto: the deliveries it creates
and the messages it queues."""

from __future__ import annotations

import pytest

from functions.core.model import Scope, delivery_id_for, parse_timestamp
from tests.integration.evaluator.conftest import Stack
from tests.support.conversions import conversion, postback
from tests.support.streams import Raw, StreamBuilder, sequence_number_of

pytestmark = pytest.mark.integration


def expected(*keys: tuple[str, str, str]) -> set[str]:
    return {delivery_id_for(*key) for key in keys}


def test_insert_creates_one_pending_delivery_and_queues_it(stack: Stack) -> None:
    stack.add_postback(postback("pb_1"))
    record = StreamBuilder().insert(conversion(aff_s1="abc"))

    assert stack.invoke([record]) == {"batchItemFailures": []}

    delivery_id = delivery_id_for("pb_1", "c-1", "approved")
    (message,) = stack.drain(stack.deliveries_queue_url)
    assert message["body"] == {"v": 1, "delivery_id": delivery_id}
    assert message["attributes"]["affiliate_id"]["StringValue"] == "aff-1"
    assert message["attributes"]["postback_id"]["StringValue"] == "pb_1"
    item = stack.deliveries()[delivery_id]
    assert item.state == "pending"
    assert item.url == f"https://tracker.example/cb?click=abc&status=approved&d={delivery_id}"
    assert item.target_host == "tracker.example"
    assert (item.postback_id, item.affiliate_id, item.conversion_id, item.offer_id) == (
        "pb_1",
        "aff-1",
        "c-1",
        "offer-1",
    )
    assert (item.conversion_status, item.previous_status) == ("approved", None)
    assert item.attempts == [] and item.cycle_attempts == 0
    assert item.created_at == item.updated_at
    assert int(item.expires_at) == int(parse_timestamp(item.created_at).timestamp()) + 90 * 86400


def test_modify_into_a_watched_status_fires_with_the_previous_status(stack: Stack) -> None:
    stack.add_postback(postback("pb_1"))
    record = StreamBuilder().modify(conversion(status="pending"), conversion(status="APPROVED"))
    stack.invoke([record])
    (item,) = stack.deliveries().values()
    assert (item.conversion_status, item.previous_status) == ("approved", "pending")
    assert stack.queued_delivery_ids() == [item.delivery_id]


def test_remove_and_unchanged_status_fire_nothing(stack: Stack) -> None:
    stack.add_postback(postback("pb_1"))
    stream = StreamBuilder()
    records = [
        stream.remove(conversion()),
        stream.modify(conversion(payout=1), conversion(payout=2)),
        stream.modify(conversion(status="CONVERSION_STATUS_APPROVED"), conversion(status="approved")),
    ]
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert stack.deliveries() == {}
    assert stack.queued_delivery_ids() == []
    assert stack.drain(stack.dlq_url) == []


def test_status_flip_flop_fires_once(stack: Stack) -> None:
    stack.add_postback(postback("pb_1", statuses=("approved",)))
    stream = StreamBuilder()
    approved, pending = conversion(), conversion(status="pending")
    first = [stream.insert(approved), stream.modify(approved, pending)]
    second = [stream.modify(pending, approved)]
    stack.invoke(first)
    stack.invoke(second)
    assert set(stack.deliveries()) == expected(("pb_1", "c-1", "approved"))


def test_status_flip_flop_within_one_batch_writes_and_queues_once(stack: Stack) -> None:
    stack.add_postback(postback("pb_1", statuses=("approved", "pending")))
    stream = StreamBuilder()
    approved, pending = conversion(), conversion(status="pending")
    stack.invoke([stream.insert(approved), stream.modify(approved, pending), stream.modify(pending, approved)])
    assert set(stack.deliveries()) == expected(("pb_1", "c-1", "approved"), ("pb_1", "c-1", "pending"))
    assert sorted(stack.queued_delivery_ids()) == sorted(stack.deliveries())


def test_duplicate_records_create_one_delivery(stack: Stack) -> None:
    stack.add_postback(postback("pb_1"))
    record = StreamBuilder().insert(conversion())
    stack.invoke([record, record])
    stack.invoke([record])
    assert set(stack.deliveries()) == expected(("pb_1", "c-1", "approved"))
    queued = stack.queued_delivery_ids()
    # The redelivered record finds the delivery still pending (never taken by a sender) and queues
    # it again; the sender's lease makes the extra message harmless.
    assert set(queued) == set(stack.deliveries())


def test_duplicate_of_a_delivery_already_taken_by_the_sender_is_not_queued_again(stack: Stack) -> None:
    stack.add_postback(postback("pb_1"))
    record = StreamBuilder().insert(conversion())
    stack.invoke([record])
    stack.queued_delivery_ids()
    (item,) = stack.deliveries().values()
    item.update(actions=[type(item).state.set("delivered")])
    stack.invoke([record])
    assert stack.queued_delivery_ids() == []


def test_batch_spanning_many_affiliates_creates_exactly_the_matching_deliveries(stack: Stack) -> None:
    for number in range(20):
        stack.add_postback(postback(f"pb_{number}", f"aff-{number}", statuses=("approved", "rejected")))
    stack.add_postback(postback("pb_off", "aff-3", enabled=False))
    stream = StreamBuilder()
    records = []
    keys = []
    for number in range(60):
        affiliate = f"aff-{number % 25}"  # aff-20..24 have no postbacks
        status = ("approved", "pending", "rejected")[number % 3]
        records.append(stream.insert(conversion(conversion_id=f"c-{number}", affiliate_id=affiliate, status=status)))
        if number % 25 < 20 and status != "pending":
            keys.append((f"pb_{number % 25}", f"c-{number}", status))
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert set(stack.deliveries()) == expected(*keys)
    queued = stack.queued_delivery_ids()
    assert sorted(queued) == sorted(expected(*keys))


def test_postbacks_that_do_not_match_fire_nothing(stack: Stack) -> None:
    for non_matching in (
        postback("pb_global_excluded_offer", excluded=("offer-1",)),
        postback("pb_offer_scope_other_offer", scope=Scope.OFFER, included=("offer-2",)),
        postback("pb_type_filter", types=("lead",)),
        postback("pb_status_filter", statuses=("rejected",)),
        postback("pb_disabled", enabled=False),
        postback("pb_retroactive", updated_at="2026-01-01T00:00:01.000000Z"),
        postback("pb_other_affiliate", "aff-2"),
    ):
        stack.add_postback(non_matching)
    stack.invoke([StreamBuilder().insert(conversion())])
    assert [item.postback_id for item in stack.deliveries().values()] == []
    assert stack.queued_delivery_ids() == []


def test_matching_postbacks_of_every_kind_fire(stack: Stack) -> None:
    stack.add_postback(postback("pb_global", excluded=("offer-7",)))
    stack.add_postback(postback("pb_offer", scope=Scope.OFFER, included=("offer-9", "offer-1")))
    stack.add_postback(postback("pb_multi", types=("lead", "sale"), statuses=("rejected", "approved")))
    stack.add_postback(postback("pb_other_affiliate", "aff-2"))
    stack.invoke([StreamBuilder().insert(conversion(offer_id="offer-1"))])
    assert set(stack.deliveries()) == expected(
        ("pb_global", "c-1", "approved"), ("pb_offer", "c-1", "approved"), ("pb_multi", "c-1", "approved")
    )


def test_global_scope_fires_for_an_offer_never_seen_before(stack: Stack) -> None:
    stack.add_postback(postback("pb_1", excluded=("offer-7",)))
    stack.invoke([StreamBuilder().insert(conversion(offer_id="offer-created-today"))])
    assert set(stack.deliveries()) == expected(("pb_1", "c-1", "approved"))


def test_malformed_records_go_whole_to_the_evaluator_dlq_and_do_not_block_the_batch(stack: Stack) -> None:
    stack.add_postback(postback("pb_1"))
    stream = StreamBuilder()
    missing = stream.insert(conversion(conversion_id="c-bad-1", offer_id=None))
    wrong_type = stream.insert(conversion(conversion_id="c-bad-2", payout=Raw({"S": "12"})))
    unknown_status = stream.insert(conversion(conversion_id="c-bad-3", status="paid"))
    no_image = stream.insert(conversion(conversion_id="c-bad-4"))
    del no_image["dynamodb"]["NewImage"]
    good = stream.insert(conversion(conversion_id="c-good"))
    records = [missing, wrong_type, good, unknown_status, no_image]

    assert stack.invoke(records) == {"batchItemFailures": []}

    assert set(stack.deliveries()) == expected(("pb_1", "c-good", "approved"))
    dead = {message["body"]["sequence_number"]: message["body"] for message in stack.drain(stack.dlq_url)}
    assert set(dead) == {sequence_number_of(r) for r in (missing, wrong_type, unknown_status, no_image)}
    assert dead[sequence_number_of(missing)]["reason"] == "missing required attribute offer_id"
    assert dead[sequence_number_of(wrong_type)]["reason"] == "attribute payout must be a number (N)"
    assert dead[sequence_number_of(unknown_status)]["reason"] == "unknown status 'paid'"
    assert dead[sequence_number_of(no_image)]["reason"] == "missing NewImage on INSERT"
    for record in (missing, wrong_type, unknown_status, no_image):
        body = dead[sequence_number_of(record)]
        assert body["record"] == record
        assert body["event_source_arn"] == record["eventSourceARN"]
        assert body["kind"] == "conversion_record"


def test_malformed_record_is_reported_when_the_evaluator_dlq_is_unavailable(stack: Stack) -> None:
    stack.add_postback(postback("pb_1"))
    stream = StreamBuilder()
    records = [stream.insert(conversion(conversion_id="c-0")), stream.insert(conversion(status="paid"))]
    stack.sqs.delete_queue(QueueUrl=stack.dlq_url)
    assert stack.invoke(records) == {"batchItemFailures": [{"itemIdentifier": sequence_number_of(records[1])}]}
    assert set(stack.deliveries()) == expected(("pb_1", "c-0", "approved"))
