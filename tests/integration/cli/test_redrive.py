"""`dlq redrive` on the deliveries DLQ: selection, record reset, interruption and concurrency."""

from __future__ import annotations

import io
import threading

import pytest

from functions.cli import main
from functions.cli.deliveries import Step, StepHook
from functions.cli.dlq import RunOptions
from functions.cli.output import Progress
from functions.cli.pacing import Pacer
from functions.core.redrive import DeadLetterFilter
from functions.storage.queues import Queue
from tests.integration.cli.conftest import CliStack

pytestmark = pytest.mark.integration


class Crash(Exception):
    """Stands for the process dying at a step of the redrive."""


def crash_at(wanted: Step) -> StepHook:
    def hook(step: Step, delivery_id: str) -> None:
        if step == wanted:
            raise Crash(step)

    return hook


def run_everything() -> RunOptions:
    """No limit, no pacing, not a dry run, no progress line."""
    return RunOptions(
        limit=None, pacer=Pacer(None), dry_run=False, progress=Progress("test", io.StringIO(), enabled=False)
    )


def test_filtered_redrive_moves_exactly_the_matching_messages(stack: CliStack) -> None:
    stack.dead_letter("dl_match", affiliate_id="aff-1", status_code=404)
    stack.dead_letter("dl_other_code", affiliate_id="aff-1", status_code=500, reason="http_500")
    stack.dead_letter("dl_other_affiliate", affiliate_id="aff-2", status_code=404)

    run = stack.cli("dlq", "redrive", "--affiliate", "aff-1", "--status-code", "404", "--json")

    assert run.code == 0, run.err
    assert run.json()["counts"] == {"redriven": 1}
    assert stack.queued_ids() == ["dl_match"]
    assert stack.dlq_ids() == ["dl_other_affiliate", "dl_other_code"]
    assert stack.record("dl_other_code").state == "dead_lettered"


def test_redrive_resets_the_schedule_and_keeps_id_and_history(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    message_id = stack.cli("dlq", "list", "--json").json()["messages"][0]["message_id"]

    assert stack.cli("dlq", "redrive").code == 0

    record = stack.record("dl_1")
    assert record.state == "pending"
    assert record.cycle_attempts == 0
    assert record.schedule_started_at is None and record.next_attempt_at is None
    assert record.lease_owner is None and record.lease_expires_at is None
    assert record.reason is None
    assert record.dead_letter_partition is None and record.dead_lettered_at is None
    assert record.redrive_count == 1
    assert record.redrive_token == message_id
    assert record.enqueued_at is not None
    assert [a.status_code for a in record.attempts] == [503, 404]


def test_redriven_message_carries_the_routing_attributes(stack: CliStack) -> None:
    stack.dead_letter("dl_1", affiliate_id="aff-9", postback_id="pb_9")
    assert stack.cli("dlq", "redrive").code == 0
    messages = Queue(stack.deliveries_queue_url, stack.sqs).receive()
    assert [m.json() for m in messages] == [{"v": 1, "delivery_id": "dl_1"}]
    assert messages[0].message_attributes == {"affiliate_id": "aff-9", "postback_id": "pb_9"}


def test_dry_run_changes_nothing(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    run = stack.cli("dlq", "redrive", "--dry-run", "--json")
    assert run.code == 0
    assert run.json()["counts"] == {"would_redrive": 1}
    assert stack.queued_ids() == []
    assert stack.dlq_ids() == ["dl_1"]
    assert stack.record("dl_1").state == "dead_lettered"


def test_redrive_limit_stops_after_n_selected_messages(stack: CliStack) -> None:
    for n in range(5):
        stack.dead_letter(f"dl_{n}")
    run = stack.cli("dlq", "redrive", "--limit", "2", "--json")
    assert run.code == 0
    assert len(stack.queued_ids()) == 2
    assert len(stack.dlq_ids()) == 3


def test_crash_after_reset_before_send_is_completed_by_the_rerun(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    services = stack.services(on_step=crash_at(Step.CLAIMED))
    with pytest.raises(Crash):
        services.deliveries.redrive(DeadLetterFilter(), run_everything())
    assert stack.record("dl_1").state == "pending"  # reset, not sent, DLQ copy still there

    run = stack.cli("dlq", "redrive", "--json")

    assert run.code == 0, run.err
    assert run.json()["counts"] == {"resumed": 1}
    assert stack.queued_ids() == ["dl_1"]
    assert stack.dlq_ids() == []
    assert stack.record("dl_1").redrive_count == 1


def test_crash_after_send_and_mark_before_delete_duplicates_nothing_on_rerun(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    services = stack.services(on_step=crash_at(Step.MARKED))
    with pytest.raises(Crash):
        services.deliveries.redrive(DeadLetterFilter(), run_everything())

    run = stack.cli("dlq", "redrive", "--json")

    assert run.code == 0, run.err
    assert run.json()["counts"] == {"dropped": 1}
    assert stack.queued_ids() == ["dl_1"]
    assert stack.dlq_ids() == []
    assert stack.record("dl_1").redrive_count == 1


def test_crash_right_after_send_is_finished_without_a_second_send_once_the_sender_took_it(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    services = stack.services(on_step=crash_at(Step.SENT))
    with pytest.raises(Crash):
        services.deliveries.redrive(DeadLetterFilter(), run_everything())
    # The sender picked the message up and leased the delivery before the re-run.
    record = stack.record("dl_1")
    record.update(actions=[type(record).state.set("in_flight")])

    run = stack.cli("dlq", "redrive", "--json")

    assert run.json()["counts"] == {"resumed": 1}
    assert stack.queued_ids() == ["dl_1"]
    assert stack.dlq_ids() == []
    assert stack.record("dl_1").dead_letter_partition is None


def test_crash_right_after_send_before_the_sender_saw_it_sends_at_most_once_more(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    services = stack.services(on_step=crash_at(Step.SENT))
    with pytest.raises(Crash):
        services.deliveries.redrive(DeadLetterFilter(), run_everything())

    assert stack.cli("dlq", "redrive").code == 0
    assert stack.cli("dlq", "redrive").code == 0

    # Indistinguishable from "never sent": one more message, which the sender's lease makes one GET.
    assert stack.queued_ids() == ["dl_1", "dl_1"]
    assert stack.dlq_ids() == []
    assert stack.record("dl_1").redrive_count == 1


@pytest.fixture
def atomic_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make each moto request atomic, as each DynamoDB conditional write and SQS receive is in AWS.

    moto in-process answers concurrent threads without locking its backends, so a conditional
    update could interleave with another between its check and its write — a race AWS does not have.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.RLock()
    original = BotocoreStubber.__call__

    def locked(self: BotocoreStubber, *args: object, **kwargs: object) -> object:
        with lock:
            return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(BotocoreStubber, "__call__", locked)


@pytest.mark.usefixtures("atomic_aws")
def test_two_concurrent_redrives_put_each_delivery_on_the_main_queue_once(stack: CliStack) -> None:
    ids = [f"dl_{n:02d}" for n in range(24)]
    for n, delivery_id in enumerate(ids):
        stack.dead_letter(delivery_id, copies=2 if n % 4 == 0 else 1)  # some with a second DLQ copy
    errors: list[BaseException] = []

    def redrive() -> None:
        try:
            services = stack.services()
            services.deliveries.redrive(DeadLetterFilter(), run_everything())
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=redrive) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert stack.queued_ids() == ids
    assert stack.dlq_ids() == []
    assert {stack.record(i).redrive_count for i in ids} == {1}


def test_stale_copy_of_an_already_redriven_delivery_is_dropped_without_sending(stack: CliStack) -> None:
    stack.dead_letter("dl_1", copies=2)
    assert stack.cli("dlq", "redrive", "--limit", "1").code == 0
    assert stack.queued_ids() == ["dl_1"]

    run = stack.cli("dlq", "redrive", "--json")

    assert run.json()["counts"] == {"dropped": 1}
    assert stack.queued_ids() == []
    assert stack.dlq_ids() == []


def test_message_of_an_expired_record_is_left_in_the_dlq_with_partial_exit(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    stack.record("dl_1").delete()

    run = stack.cli("dlq", "redrive", "--json")

    assert run.code == 3
    assert run.json()["counts"] == {"skipped": 1}
    assert stack.dlq_ids() == ["dl_1"]


def test_evaluator_queue_rejects_delivery_only_filters(stack: CliStack) -> None:
    run = stack.cli("dlq", "redrive", "--queue", "evaluator", "--postback", "pb_1")
    assert run.code == 2
    assert "--postback" in run.err


def test_bad_time_argument_is_a_usage_error(stack: CliStack) -> None:
    run = stack.cli("dlq", "redrive", "--since", "yesterday-ish")
    assert run.code == 2
    assert "not a time" in run.err


def test_redrive_uses_main_without_injected_services(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    assert main(["dlq", "redrive"], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    assert stack.queued_ids() == ["dl_1"]
