"""`recover` (from the deliveries table) and `dlq purge` (confirmation, selection)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.core.model import utc_now
from functions.storage.deliveries import DeliveryRepository
from tests.integration.cli.conftest import CliStack

pytestmark = pytest.mark.integration


def test_recover_since_finds_deliveries_whose_dlq_copy_is_gone(stack: CliStack) -> None:
    now = utc_now()
    stack.dead_letter("dl_old", at=now - timedelta(hours=3), in_dlq=False)
    stack.dead_letter("dl_recent", at=now - timedelta(minutes=30), in_dlq=False)
    stack.dead_letter("dl_recent_aff2", affiliate_id="aff-2", at=now - timedelta(minutes=20), in_dlq=False)

    run = stack.cli("recover", "--since", "1h", "--affiliate", "aff-1", "--json")

    assert run.code == 0, run.err
    assert run.json()["counts"] == {"redriven": 1}
    assert stack.queued_ids() == ["dl_recent"]
    recovered = stack.record("dl_recent")
    assert (recovered.state, recovered.cycle_attempts, recovered.redrive_count) == ("pending", 0, 1)
    assert len(recovered.attempts) == 2
    assert stack.record("dl_old").state == "dead_lettered"
    assert stack.record("dl_recent_aff2").state == "dead_lettered"


def test_recover_until_bounds_the_window_and_dry_run_changes_nothing(stack: CliStack) -> None:
    now = utc_now()
    stack.dead_letter("dl_a", at=now - timedelta(hours=5), in_dlq=False)
    stack.dead_letter("dl_b", at=now - timedelta(hours=1), in_dlq=False)

    run = stack.cli("recover", "--since", "6h", "--until", "2h", "--dry-run", "--json")

    assert run.code == 0
    assert [o["item_id"] for o in run.json()["outcomes"]] == ["dl_a"]
    assert run.json()["counts"] == {"would_redrive": 1}
    assert stack.queued_ids() == []


def test_recover_twice_queues_each_delivery_once(stack: CliStack) -> None:
    stack.dead_letter("dl_1", in_dlq=False)
    assert stack.cli("recover", "--since", "1d").code == 0
    assert stack.cli("recover", "--since", "1d").code == 0
    assert stack.queued_ids() == ["dl_1"]


def test_stale_dlq_copy_of_a_recovered_delivery_is_dropped_by_redrive(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    assert stack.cli("recover", "--since", "1d").code == 0
    assert stack.queued_ids() == ["dl_1"]

    run = stack.cli("dlq", "redrive", "--json")

    assert run.json()["counts"] == {"dropped": 1}
    assert stack.queued_ids() == []
    assert stack.dlq_ids() == []


def test_recover_resumes_a_redrive_abandoned_between_reset_and_send(stack: CliStack) -> None:
    stack.dead_letter("dl_1", in_dlq=False)
    repository = DeliveryRepository()
    observed = repository.get("dl_1")
    assert observed is not None
    assert repository.claim(observed, "msg-of-a-crashed-run", utc_now() - timedelta(minutes=10))

    run = stack.cli("recover", "--since", "1d", "--json")

    assert run.json()["counts"] == {"resumed": 1}
    assert stack.queued_ids() == ["dl_1"]
    assert stack.record("dl_1").dead_letter_partition is None


def test_recover_leaves_a_redrive_in_progress_alone(stack: CliStack) -> None:
    stack.dead_letter("dl_1", in_dlq=False)
    repository = DeliveryRepository()
    observed = repository.get("dl_1")
    assert observed is not None
    assert repository.claim(observed, "msg-of-a-live-run", utc_now())

    run = stack.cli("recover", "--since", "1d", "--json")

    assert run.code == 3
    assert run.json()["counts"] == {"skipped": 1}
    assert stack.queued_ids() == []


def test_recover_requires_since(stack: CliStack) -> None:
    run = stack.cli("recover")
    assert run.code == 2
    assert "--since" in run.err


def test_purge_without_yes_refuses_and_deletes_nothing(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    run = stack.cli("dlq", "purge")
    assert run.code == 2
    assert "--yes" in run.err
    assert stack.dlq_ids() == ["dl_1"]


def test_purge_of_the_evaluator_dlq_without_yes_refuses_too(stack: CliStack) -> None:
    run = stack.cli("dlq", "purge", "--queue", "evaluator")
    assert run.code == 2
    assert "--yes" in run.err


def test_purge_with_yes_deletes_only_the_selected_messages_and_keeps_records(stack: CliStack) -> None:
    stack.dead_letter("dl_gone", reason="gone", status_code=410)
    stack.dead_letter("dl_404")

    run = stack.cli("dlq", "purge", "--yes", "--reason", "gone", "--json")

    assert run.code == 0
    assert run.json()["counts"] == {"deleted": 1}
    assert stack.dlq_ids() == ["dl_404"]
    assert stack.record("dl_gone").state == "dead_lettered"


def test_purge_dry_run_lists_without_deleting(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    run = stack.cli("dlq", "purge", "--dry-run", "--json")
    assert run.code == 0
    assert run.json()["counts"] == {"would_delete": 1}
    assert stack.dlq_ids() == ["dl_1"]
