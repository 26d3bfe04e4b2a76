"""Moved and purged (docs/reliability.md, docs/runbook.md): a deliveries-queue message the queue's redrive
policy moved to the DLQ while its delivery was still active is never lost to a purge or to retention."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.core.messages import delivery_message
from functions.core.model import DeliveryState, format_timestamp, utc_now
from functions.storage.deliveries import DeliveryRepository
from functions.storage.models import DeliveryModel
from functions.storage.queues import Queue
from tests.integration.cli.conftest import CliStack

pytestmark = pytest.mark.integration


def active(delivery_id: str, state: DeliveryState = DeliveryState.RETRYING) -> DeliveryModel:
    """A delivery the sender is still working on: retrying, due in a minute, no live lease."""
    now = utc_now()
    item = DeliveryModel(
        delivery_id,
        postback_id="pb_1",
        affiliate_id="aff-1",
        conversion_id=f"conv-{delivery_id}",
        conversion_status="approved",
        url="https://tracker.example/cb?d=" + delivery_id,
        target_host="tracker.example",
        state=state.value,
        attempts=[],
        cycle_attempts=3,
        next_attempt_at=format_timestamp(now + timedelta(minutes=1)),
        created_at=format_timestamp(now - timedelta(hours=1)),
        updated_at=format_timestamp(now - timedelta(minutes=5)),
        expires_at=int(now.timestamp()) + 90 * 86400,
    )
    item.save()
    return item


def moved_to_dlq(stack: CliStack, delivery_id: str) -> None:
    """What SQS does after maxReceiveCount: the deliveries-queue message itself, now in the DLQ."""
    Queue(stack.dlq_url, stack.sqs).send(delivery_message(delivery_id))


def test_purge_queues_an_active_delivery_again_before_deleting_its_moved_message(stack: CliStack) -> None:
    active("dl_active")
    moved_to_dlq(stack, "dl_active")
    stack.dead_letter("dl_dead")

    run = stack.cli("dlq", "purge", "--yes", "--json")

    assert run.code == 0, run.err
    assert run.json()["counts"] == {"requeued": 1, "deleted": 1}
    assert stack.queued_ids() == ["dl_active"]
    assert stack.dlq_ids() == []
    record = stack.record("dl_active")
    assert (record.state, record.cycle_attempts) == ("retrying", 3)  # its schedule goes on


def test_purge_dry_run_says_which_deliveries_it_would_queue_again(stack: CliStack) -> None:
    active("dl_active", DeliveryState.PENDING)
    moved_to_dlq(stack, "dl_active")

    run = stack.cli("dlq", "purge", "--yes", "--dry-run", "--json")

    assert run.json()["counts"] == {"would_requeue": 1}
    assert stack.queued_ids() == []


def test_recover_finds_an_active_delivery_marked_at_risk_after_its_message_is_gone(stack: CliStack) -> None:
    active("dl_active")
    assert DeliveryRepository().mark_at_risk("dl_active", utc_now())
    active("dl_fine")  # never marked: its message is still on the queue

    run = stack.cli("recover", "--since", "1d", "--json")

    assert run.code == 0, run.err
    assert run.json()["counts"] == {"requeued": 1}
    assert stack.queued_ids() == ["dl_active"]
    assert stack.record("dl_active").state == "retrying"
