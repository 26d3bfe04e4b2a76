"""The host pause (docs/contract.md §6) with the real handler, moto in-process and real loopback receivers.

A host (name and port: each receiver is its own host) is paused after `host_pause_after`
consecutive failed attempts; its deliveries then wait without a GET and without spending an
attempt; after the pause one delivery probes it and a success resumes it. The per-host cap is 1
in these tests, so the GETs to one host in a batch go one after another and the count is exact.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from functions import bootstrap
from functions.core.model import DeliveryState, parse_timestamp
from functions.sender.ports import IncomingMessage
from functions.storage.hosts import HostRepository
from tests.integration.sender.conftest import Receiver, Reply, Stack, sender_settings

pytestmark = pytest.mark.integration

PAUSE_AFTER = 3


def _pausing(stack: Stack, **overrides: Any) -> None:
    settings = dict(
        host_pause_after=PAUSE_AFTER,
        host_pause_seconds=60.0,
        max_attempts=10,
        sender_per_host_concurrency=1,
    )
    settings.update(overrides)
    stack.use(sender_settings(**settings))


def _seed(stack: Stack, receiver: Receiver, count: int, *, postback_id: str = "pb_1", prefix: str = "c") -> list[str]:
    if prefix == "c" or prefix in ("f", "h"):
        stack.postback(postback_id, url=receiver.url("/cb?d={deliveryId}"))
    return [
        stack.delivery(receiver.url(f"/cb?n={n}"), postback_id=postback_id, conversion_id=f"{prefix}-{n}")
        for n in range(count)
    ]


def _host(receiver: Receiver) -> str:
    return f"127.0.0.1:{receiver.port}"


def _attempted(stack: Stack, delivery_ids: list[str]) -> list[str]:
    return [d for d in delivery_ids if stack.record(d).attempts]


def test_consecutive_500s_pause_the_host_and_paused_deliveries_spend_no_attempt(
    stack: Stack, make_receiver: Callable[..., Receiver]
) -> None:
    _pausing(stack)
    tracker = make_receiver(Reply(500))
    delivery_ids = _seed(stack, tracker, 6)

    failed = stack.run_once()

    assert len(tracker.hits) == PAUSE_AFTER
    assert len(failed) == 6  # all come back later: retries and waits alike
    state = HostRepository().get(_host(tracker))
    assert state is not None and state.consecutive_failures == PAUSE_AFTER and state.pauses == 1
    assert state.paused_until is not None and state.paused_until > time.time() + 50
    attempted = _attempted(stack, delivery_ids)
    assert len(attempted) == PAUSE_AFTER
    for delivery_id in set(delivery_ids) - set(attempted):
        record = stack.record(delivery_id)
        assert record.state == DeliveryState.PENDING.value
        assert record.cycle_attempts == 0 and not record.attempts
        assert record.host_pause_waits == 1
        assert record.host_paused_until == record.next_attempt_at
        assert parse_timestamp(record.next_attempt_at).timestamp() == pytest.approx(state.paused_until, abs=0.01)
    # Their messages are hidden until the pause ends, then spread over as long again (the pause's
    # return window), so that they do not all come back at once (whole seconds; the 1 s ones are the
    # retries).
    waits = [seconds for seconds in stack.visibility_requests if seconds > 1]
    assert len(waits) == 3 and all(60 <= seconds <= 120 for seconds in waits)
    assert stack.dead_letters() == []


def test_timeouts_pause_the_host(stack: Stack, make_receiver: Callable[..., Receiver]) -> None:
    _pausing(stack, host_pause_after=2, total_timeout_seconds=0.3, read_timeout_seconds=0.3)
    tarpit = make_receiver(Reply(200, delay=1.0))
    delivery_ids = _seed(stack, tarpit, 4)

    stack.run_once()

    assert len(tarpit.hits) == 2
    state = HostRepository().get(_host(tarpit))
    assert state is not None and state.paused_until is not None
    assert state.last_failure_reason in ("read_timeout", "deadline_exceeded")
    assert len(_attempted(stack, delivery_ids)) == 2


def test_a_paused_host_gets_no_get_until_the_pause_ends_and_the_probe_resumes_it(
    stack: Stack, make_receiver: Callable[..., Receiver]
) -> None:
    _pausing(stack, host_pause_seconds=1.0)
    tracker = make_receiver(Reply(503))
    delivery_ids = _seed(stack, tracker, 5)
    event = stack.receive()
    stack.make_visible(event, stack.invoke(event))
    assert len(tracker.hits) == PAUSE_AFTER
    assert all(stack.record(d).cycle_attempts <= 1 for d in delivery_ids)

    tracker.script = [Reply(200)]
    time.sleep(1.6)  # the pause (1 s) and the sender's cache of the host state (1.5 s) end
    stack.run_until_settled()

    assert all(stack.record(d).state == DeliveryState.DELIVERED.value for d in delivery_ids)
    assert len(tracker.hits) == PAUSE_AFTER + len(delivery_ids)  # the failures, then one GET each
    state = HostRepository().get(_host(tracker))
    assert state is not None and state.healthy and state.pauses == 0


def test_a_failed_probe_pauses_the_host_again_for_twice_as_long(
    stack: Stack, make_receiver: Callable[..., Receiver]
) -> None:
    _pausing(stack, host_pause_seconds=1.0)
    tracker = make_receiver(Reply(500))
    _seed(stack, tracker, 5)
    event = stack.receive()
    stack.invoke(event)
    time.sleep(1.6)
    stack.make_visible(event)

    stack.run_once()

    assert len(tracker.hits) == PAUSE_AFTER + 1  # one probe, not one GET per waiting delivery
    state = HostRepository().get(_host(tracker))
    assert state is not None and state.pauses == 2
    assert state.paused_until is not None
    assert 0 < state.paused_until - time.time() <= 2.0  # 2 x 1 s (the lengths: tests/unit/core/test_host_pause.py)


def test_two_hosts_are_independent(stack: Stack, make_receiver: Callable[..., Receiver]) -> None:
    _pausing(stack)
    failing = make_receiver(Reply(500))
    healthy = make_receiver(Reply(200))
    _seed(stack, failing, 4, postback_id="pb_1", prefix="f")
    healthy_ids = _seed(stack, healthy, 4, postback_id="pb_2", prefix="h")

    stack.run_once()

    assert len(failing.hits) == PAUSE_AFTER
    assert len(healthy.hits) == 4
    assert all(stack.record(d).state == DeliveryState.DELIVERED.value for d in healthy_ids)
    assert HostRepository().get(_host(healthy)) is None  # a healthy host leaves no state at all


def test_a_healthy_host_costs_no_request(stack: Stack, make_receiver: Callable[..., Receiver], aws_calls: Any) -> None:
    _pausing(stack)
    tracker = make_receiver(Reply(200))
    _seed(stack, tracker, 3)
    stack.run_once()  # the first success writes the postback's health once
    _seed(stack, tracker, 3, prefix="again")
    aws_calls()

    stack.run_once()

    calls = aws_calls()
    on_postbacks = {call: n for call, n in calls.items() if call[1] == "postbacks"}
    assert on_postbacks == {("BatchGetItem", "postbacks"): 1}  # the postbacks and the host state, one request


def test_a_new_container_sees_the_pause_of_another(stack: Stack, make_receiver: Callable[..., Receiver]) -> None:
    _pausing(stack)
    tracker = make_receiver(Reply(500))
    _seed(stack, tracker, 3)
    stack.run_once()
    assert len(tracker.hits) == PAUSE_AFTER

    _pausing(stack)  # a fresh composition root: another container, with an empty cache
    later = _seed(stack, tracker, 3, prefix="later")
    stack.run_once()

    assert len(tracker.hits) == PAUSE_AFTER
    assert all(stack.record(d).host_pause_waits == 1 for d in later)


def test_concurrent_batches_share_the_count(stack: Stack, make_receiver: Callable[..., Receiver]) -> None:
    _pausing(stack)
    tracker = make_receiver(Reply(500))
    delivery_ids = _seed(stack, tracker, 10)
    first = bootstrap.delivery_sender()
    bootstrap.host_guard.cache_clear()
    bootstrap.delivery_sender.cache_clear()
    second = bootstrap.delivery_sender()  # another container: its own host cache
    assert first is not second
    events = [stack.receive(5), stack.receive(5)]
    assert sum(len(event["Records"]) for event in events) == 10

    def run(sender: Any, event: dict[str, Any]) -> None:
        messages = [IncomingMessage(r["messageId"], r["receiptHandle"], r["body"]) for r in event["Records"]]
        sender.process_batch(messages)

    threads = [threading.Thread(target=run, args=pair) for pair in zip((first, second), events, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    state = HostRepository().get(_host(tracker))
    assert state is not None and state.pauses == 1
    # One shared count: the pause follows the third failure, whichever container saw it; the
    # other container may have had one GET on its way then.
    assert state.consecutive_failures == len(tracker.hits)
    assert PAUSE_AFTER <= len(tracker.hits) <= PAUSE_AFTER + 1
    assert len(_attempted(stack, delivery_ids)) == len(tracker.hits)


def test_pausing_off_sends_every_delivery(stack: Stack, make_receiver: Callable[..., Receiver]) -> None:
    _pausing(stack, host_pause_after=0)
    tracker = make_receiver(Reply(500))
    _seed(stack, tracker, 6)

    stack.run_once()

    assert len(tracker.hits) == 6
    assert HostRepository().get(_host(tracker)) is None


def test_the_delivery_log_says_why_a_delivery_waited(stack: Stack, make_receiver: Callable[..., Receiver]) -> None:
    from functions.api.bodies import delivery_body, dumps

    _pausing(stack)
    tracker = make_receiver(Reply(500))
    delivery_ids = _seed(stack, tracker, 4)
    stack.run_once()
    waited = [d for d in delivery_ids if not stack.record(d).attempts]
    assert waited

    record = bootstrap.delivery_repository().get(waited[0])
    assert record is not None
    shown = json.loads(dumps(delivery_body(record)))
    assert shown["host_pause_waits"] == 1
    assert parse_timestamp(shown["host_paused_until"]) > datetime.now(UTC)
    assert shown["attempts"] == []
