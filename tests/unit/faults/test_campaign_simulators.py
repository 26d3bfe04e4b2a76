"""The campaign's simulators obey the AWS rules the campaign relies on (tests/faults/).

A simulator that let a refused call through, or never moved a message, would make the campaign
blind to the very cases it exists for; these tests pin each rule.
"""

from __future__ import annotations

import json
import random

import pytest
from botocore.exceptions import ClientError

from functions.storage.queues import Queue
from tests.faults.clock import SimClock
from tests.faults.faults import FaultInjector, FaultKind, Faulty, SimulatedCrash, dynamodb_error
from tests.faults.sqs import SimulatedSqs
from tests.faults.store import SimDeliveries
from tests.faults.trackers import GetLedger


def _sqs(kind: FaultKind = FaultKind.NONE, rate: float = 0.0) -> tuple[SimClock, FaultInjector, SimulatedSqs]:
    clock = SimClock()
    injector = FaultInjector(random.Random(1), kind, rate)
    sqs = SimulatedSqs(clock, injector)
    sqs.create_queue("dlq", retention_seconds=1_209_600)
    sqs.create_queue("q", visibility_timeout=180, retention_seconds=345_600, dead_letter="dlq", max_receives=3)
    return clock, injector, sqs


def test_a_visibility_change_past_12_hours_from_the_receive_is_refused() -> None:
    clock, _, sqs = _sqs()
    queue = Queue("q", sqs)
    queue.send({"v": 1, "delivery_id": "dl_1"})
    [message] = queue.receive()
    clock.advance(10)
    with pytest.raises(ClientError, match="beyond the limit"):
        queue.change_visibility(message.receipt_handle, 43_200)
    queue.change_visibility(message.receipt_handle, 43_190)  # exactly 12 h after the receive: accepted
    assert sqs.refused_visibility == 1


def test_the_redrive_policy_moves_a_message_after_max_receive_count() -> None:
    clock, _, sqs = _sqs()
    Queue("q", sqs).send({"v": 1, "delivery_id": "dl_1"})
    for _ in range(3):
        assert len(sqs.poll("q", 10)) == 1
        clock.advance(181)
    assert sqs.poll("q", 10) == []
    [moved] = sqs.messages("dlq")
    assert json.loads(moved.body) == {"v": 1, "delivery_id": "dl_1"}
    assert sqs.queue("q").moved == 1


def test_retention_drops_old_messages_and_a_stale_receipt_deletes_nothing() -> None:
    clock, _, sqs = _sqs()
    Queue("q", sqs).send({"v": 1})
    first = sqs.poll("q", 1)[0].receipt or ""
    clock.advance(181)
    second = sqs.poll("q", 1)[0].receipt or ""
    sqs.ack("q", first)
    assert len(sqs.messages("q")) == 1  # the older handle deleted nothing
    sqs.ack("q", second)
    assert sqs.messages("q") == []
    Queue("q", sqs).send({"v": 2})
    clock.advance(345_601)
    assert sqs.messages("q") == []


def test_a_crash_kills_every_later_call_of_the_invocation_only() -> None:
    injector = FaultInjector(random.Random(3), FaultKind.CRASH, 1.0)
    store = Faulty(SimDeliveries(GetLedger()), "deliveries", injector, dynamodb_error)
    with pytest.raises(SimulatedCrash), injector.invocation_scope("one"):
        store.get("dl_1")
    assert injector.crashes == 1
    assert store.get("dl_1") is None  # outside an invocation nothing is faulted


def test_faults_raise_what_the_adapters_raise() -> None:
    injector = FaultInjector(random.Random(3), FaultKind.THROTTLE, 1.0)
    store = Faulty(SimDeliveries(GetLedger()), "deliveries", injector, dynamodb_error)
    with injector.invocation_scope("one"), pytest.raises(Exception) as raised:
        store.get("dl_1")
    assert raised.value.cause_response_code == "ProvisionedThroughputExceededException"  # type: ignore[attr-defined]
    assert injector.injected[("throttle", "deliveries.get")] == 1
