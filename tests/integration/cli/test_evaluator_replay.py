"""`dlq redrive --queue evaluator`: stored stream records replayed through the real evaluator."""

from __future__ import annotations

import pytest

from functions.core.model import delivery_id_for
from functions.storage.models import DeliveryModel
from tests.integration.cli.conftest import CliStack, add_postback
from tests.support import conversions, streams

pytestmark = pytest.mark.integration


@pytest.mark.usefixtures("evaluator")
def test_evaluator_replay_produces_the_deliveries_the_records_should_have_produced_once(stack: CliStack) -> None:
    add_postback("pb_1")
    builder = streams.StreamBuilder()
    record = builder.insert(conversions.conversion(conversion_id="c-1", status="approved"))
    stack.evaluator_dead_letter(record)
    stack.evaluator_dead_letter(record)  # the same record dead-lettered twice

    run = stack.cli("dlq", "redrive", "--queue", "evaluator", "--json")

    assert run.code == 0, run.err
    # One run replays a record once; a second copy of it is left for the next run.
    assert run.json()["counts"] == {"replayed": 1, "left_in_dlq": 1}
    expected = delivery_id_for("pb_1", "c-1", "approved")
    assert [item.delivery_id for item in DeliveryModel.scan()] == [expected]
    assert stack.queued_ids() == [expected]

    # The sender delivers it; replaying the same record again never doubles the delivery.
    DeliveryModel.get(expected).update(actions=[DeliveryModel.state.set("delivered")])
    rerun = stack.cli("dlq", "redrive", "--queue", "evaluator", "--json")
    assert rerun.json()["counts"] == {"replayed": 1}
    assert [item.delivery_id for item in DeliveryModel.scan()] == [expected]
    assert stack.queued_ids() == []
    assert stack.drain(stack.evaluator_dlq_url) == []


@pytest.mark.usefixtures("evaluator")
def test_replaying_a_still_malformed_record_leaves_exactly_one_copy_in_the_dlq(stack: CliStack) -> None:
    builder = streams.StreamBuilder()
    malformed = builder.insert({"conversion_id": "c-bad", "status": "approved"})  # no affiliate, offer, type
    stack.evaluator_dead_letter(malformed, reason="malformed: missing affiliate_id")

    run = stack.cli("dlq", "redrive", "--queue", "evaluator", "--json")

    assert run.code == 0, run.err
    remaining = stack.drain(stack.evaluator_dlq_url)
    assert len(remaining) == 1
    assert remaining[0]["record"]["dynamodb"]["Keys"] == malformed["dynamodb"]["Keys"]
    assert list(DeliveryModel.scan()) == []


@pytest.mark.usefixtures("evaluator")
def test_evaluator_list_and_show_describe_the_stored_record(stack: CliStack) -> None:
    record = streams.StreamBuilder().insert(conversions.conversion(conversion_id="c-9", affiliate_id="aff-9"))
    stack.evaluator_dead_letter(record, reason="transient: throttled")

    listed = stack.cli("dlq", "list", "--queue", "evaluator", "--json").json()["messages"]
    assert [(m["conversion_id"], m["affiliate_id"], m["reason"]) for m in listed] == [
        ("c-9", "aff-9", "transient: throttled")
    ]
    shown = stack.cli("dlq", "show", "c-9", "--queue", "evaluator", "--json")
    assert shown.code == 0
    assert shown.json()["record"] == record
    stats = stack.cli("dlq", "stats", "--queue", "evaluator", "--json").json()["queues"][0]
    assert stats["groups"]["reason"] == {"transient: throttled": 1}
