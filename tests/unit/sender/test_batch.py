"""`DeliverySender.process_batch` with in-memory fakes: concurrency caps, isolation, the time guard,
the order of lease, postback check and GET, and the repository calls a batch makes."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.core.model import TERMINAL_STATES, Delivery, DeliveryState, Postback, Scope, format_timestamp
from functions.core.schedule import RetryPolicy
from functions.sender.ports import IncomingMessage
from functions.sender.service import DeliverySender
from tests.support.fakes import InMemoryDeliveries, InMemoryHealth, InMemoryPostbacks, InMemoryQueue

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def add(
    deliveries: InMemoryDeliveries, delivery_id: str, host: str, state: DeliveryState = DeliveryState.PENDING
) -> None:
    """A delivery of postback `pb_1` to `host`, in `state`."""
    deliveries.records[delivery_id] = Delivery(
        delivery_id=delivery_id,
        postback_id="pb_1",
        affiliate_id="aff-1",
        conversion_id=f"c-{delivery_id}",
        conversion_status="approved",
        url=f"https://{host}/cb?d={delivery_id}",
        target_host=host,
        state=state,
        created_at=format_timestamp(NOW),
        updated_at=format_timestamp(NOW),
    )


def postback_store(
    enabled: bool = True,
    *,
    deleted: frozenset[str] = frozenset(),
    last_success_at: str | None = None,
    consecutive_failures: int = 0,
    events: list[str] | None = None,
) -> InMemoryPostbacks:
    """Postbacks `pb_1` and `pb_2` (enabled or not, with this health) unless `deleted`."""
    return InMemoryPostbacks(
        [
            Postback(
                postback_id,
                "aff-1",
                Scope.GLOBAL,
                (),
                (),
                ("sale",),
                ("approved",),
                "https://x/",
                enabled,
                "",
                "",
                1,
                last_success_at=last_success_at,
                consecutive_failures=consecutive_failures,
            )
            for postback_id in ("pb_1", "pb_2")
            if postback_id not in deleted
        ],
        events=events,
    )


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None = None
    duration_ms: int = 5
    resolved_address: str | None = "203.0.113.10"
    headers: Mapping[str, str] = field(default_factory=dict)
    body_excerpt: bytes = b""


class FakeHttp:
    """Answers 200 (or `status_for[host]`) after `delay`, recording the peak concurrency per host."""

    def __init__(
        self,
        delay: float = 0.05,
        status_for: dict[str, int] | None = None,
        explode: str | None = None,
        events: list[str] | None = None,
    ):
        self.events = events if events is not None else []
        self.delay = delay
        self.status_for = status_for or {}
        self.explode = explode
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._active: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.peak_total = 0

    def get(self, url: str) -> Outcome:
        host = url.split("/")[2]
        if self.explode and self.explode in url:
            raise RuntimeError("client bug")
        with self._lock:
            self.calls.append(url)
            self.events.append(f"get {url}")
            self._active[host] += 1
            self.peak[host] = max(self.peak[host], self._active[host])
            self.peak_total = max(self.peak_total, sum(self._active.values()))
        time.sleep(self.delay)
        with self._lock:
            self._active[host] -= 1
        return Outcome(self.status_for.get(host, 200))


def sender(deliveries: InMemoryDeliveries, http: FakeHttp, queue: InMemoryQueue, **kwargs: Any) -> DeliverySender:
    options: dict[str, Any] = {
        "deliveries": deliveries,
        "postbacks": postback_store(),
        "health": InMemoryHealth(),
        "http": http,
        "queue": queue,
        "dead_letters": queue,
        "policy": RetryPolicy(base_seconds=30, max_attempts=13),
        "clock": lambda: NOW,
        "uniform": lambda low, high: high,
    }
    options.update(kwargs)
    return DeliverySender(**options)


def messages(ids: Iterable[str]) -> list[IncomingMessage]:
    return [IncomingMessage(f"m-{i}", f"r-{i}", json.dumps({"v": 1, "delivery_id": i})) for i in ids]


def test_the_per_host_cap_holds_while_other_hosts_proceed() -> None:
    deliveries = InMemoryDeliveries()
    ids = [f"slow{i}" for i in range(6)] + [f"fast{i}" for i in range(3)]
    for i in ids:
        add(deliveries, i, "slow.example" if i.startswith("slow") else "fast.example")
    http = FakeHttp(delay=0.05)

    failed = sender(deliveries, http, InMemoryQueue(), max_concurrency=10, per_host_concurrency=2).process_batch(
        messages(ids)
    )

    assert failed == []
    assert http.peak["slow.example"] <= 2
    assert http.peak_total >= 3  # the other host was not held back by the cap
    assert all(deliveries.records[i].state is DeliveryState.DELIVERED for i in ids)


def test_the_gets_of_a_batch_run_concurrently() -> None:
    deliveries = InMemoryDeliveries()
    ids = [f"d{i}" for i in range(8)]
    for i in ids:
        add(deliveries, i, "tracker.example")
    http = FakeHttp(delay=0.1)

    sender(deliveries, http, InMemoryQueue(), max_concurrency=8, per_host_concurrency=8).process_batch(messages(ids))

    assert http.peak_total == 8


def test_a_crash_on_one_message_fails_only_that_message() -> None:
    deliveries = InMemoryDeliveries()
    for i in ("a", "b", "c"):
        add(deliveries, i, "tracker.example")
    http = FakeHttp(delay=0, explode="d=b")

    failed = sender(deliveries, http, InMemoryQueue()).process_batch(messages(["a", "b", "c"]))

    assert failed == ["m-b"]
    assert deliveries.records["a"].state is DeliveryState.DELIVERED
    assert deliveries.records["c"].state is DeliveryState.DELIVERED
    assert deliveries.records["b"].state is DeliveryState.IN_FLIGHT  # its lease expires; the message returns


def test_no_get_starts_when_the_invocation_is_about_to_time_out() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "a", "tracker.example")
    http = FakeHttp(delay=0)
    queue = InMemoryQueue()

    failed = sender(deliveries, http, queue, request_deadline_seconds=10).process_batch(
        messages(["a"]), remaining_ms=lambda: 12_000
    )

    assert failed == ["m-a"]
    assert http.calls == []
    assert queue.visibility == [("r-a", 0)]
    assert deliveries.records["a"].state is DeliveryState.PENDING


def test_a_retry_hides_the_message_for_the_wait_and_reports_it_failed() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "a", "tracker.example")
    queue = InMemoryQueue()

    failed = sender(deliveries, FakeHttp(delay=0, status_for={"tracker.example": 502}), queue).process_batch(
        messages(["a"])
    )

    assert failed == ["m-a"]
    assert queue.visibility == [("r-a", 30)]  # first ceiling, drawn at its top
    record = deliveries.records["a"]
    assert record.state is DeliveryState.RETRYING
    assert record.attempts[0].next_attempt_at == record.next_attempt_at


def test_finished_deliveries_are_acknowledged_without_a_get() -> None:
    deliveries = InMemoryDeliveries()
    for number, state in enumerate(sorted(TERMINAL_STATES)):
        add(deliveries, f"t{number}", "tracker.example", state)
    http = FakeHttp(delay=0)

    failed = sender(deliveries, http, InMemoryQueue()).process_batch(messages(deliveries.records))

    assert failed == []
    assert http.calls == []


def test_a_disabled_postback_cancels_without_a_get() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "a", "tracker.example")
    http = FakeHttp(delay=0)

    failed = sender(deliveries, http, InMemoryQueue(), postbacks=postback_store(enabled=False)).process_batch(
        messages(["a"])
    )

    assert failed == []
    assert http.calls == []
    assert (deliveries.records["a"].state, deliveries.records["a"].reason) == (
        DeliveryState.CANCELLED,
        "postback_disabled",
    )


def test_a_terminal_answer_dead_letters_with_history_and_flags_health() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "a", "tracker.example")
    queue = InMemoryQueue()
    health = InMemoryHealth()

    failed = sender(
        deliveries, FakeHttp(delay=0, status_for={"tracker.example": 403}), queue, health=health
    ).process_batch(messages(["a"]))

    assert failed == []
    [dead] = queue.messages
    assert (dead["delivery_id"], dead["reason"], dead["last_status_code"]) == ("a", "http_403", 403)
    assert len(dead["attempts"]) == 1
    assert health.failures == [("pb_1", "http_403")]


# The order of the steps and the repository calls of a batch.


def test_all_leases_come_before_one_batch_read_of_the_postbacks_which_comes_before_any_get() -> None:
    deliveries = InMemoryDeliveries()
    ids = [f"d{i}" for i in range(6)]
    for i in ids:
        add(deliveries, i, "tracker.example")
    deliveries.records["d5"] = dataclasses.replace(deliveries.records["d5"], postback_id="pb_2")
    postbacks = postback_store(events=deliveries.events)
    http = FakeHttp(delay=0, events=deliveries.events)

    failed = sender(deliveries, http, InMemoryQueue(), postbacks=postbacks).process_batch(messages(ids))

    assert failed == []
    kinds = [event.split(" ")[0] for event in deliveries.events]
    assert kinds == ["lease"] * 6 + ["postbacks"] + ["get"] * 6
    assert postbacks.batch_reads == [["pb_1", "pb_2"]]  # each distinct postback once
    assert postbacks.calls == Counter({"get_many": 1})  # no read per delivery
    assert deliveries.calls == Counter({"acquire_lease": 6, "finish": 6})  # the lease returns the record


def test_a_postback_deleted_before_the_batch_read_cancels_without_a_get() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "a", "tracker.example")
    http = FakeHttp(delay=0)

    failed = sender(
        deliveries, http, InMemoryQueue(), postbacks=postback_store(deleted=frozenset({"pb_1"}))
    ).process_batch(messages(["a"]))

    assert failed == []
    assert http.calls == []
    assert (deliveries.records["a"].state, deliveries.records["a"].reason) == (
        DeliveryState.CANCELLED,
        "postback_deleted",
    )


class DisabledAfterTheBatchRead(InMemoryPostbacks):
    """The batch read sees the postback enabled; any later read sees it disabled."""

    def get(self, postback_id: str) -> Postback | None:
        self.postbacks = {key: dataclasses.replace(postback, enabled=False) for key, postback in self.postbacks.items()}
        return super().get(postback_id)


def test_a_get_that_waited_past_the_recheck_reads_its_postback_again() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "a", "tracker.example")
    http = FakeHttp(delay=0)
    postbacks = DisabledAfterTheBatchRead(postback_store().postbacks.values())
    ticks = iter([0.0, 5.0])  # the batch read at 0 s; the GET would start 5 s later

    failed = sender(
        deliveries, http, InMemoryQueue(), postbacks=postbacks, monotonic=lambda: next(ticks)
    ).process_batch(messages(["a"]))

    assert failed == []
    assert http.calls == []
    assert postbacks.calls == Counter({"get_many": 1, "get": 1})
    assert deliveries.records["a"].reason == "postback_disabled"


def test_a_get_right_after_the_batch_read_does_not_read_its_postback_again() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "a", "tracker.example")
    postbacks = DisabledAfterTheBatchRead(postback_store().postbacks.values())
    ticks = iter([0.0, 0.2])

    failed = sender(
        deliveries, FakeHttp(delay=0), InMemoryQueue(), postbacks=postbacks, monotonic=lambda: next(ticks)
    ).process_batch(messages(["a"]))

    assert failed == []
    assert postbacks.calls == Counter({"get_many": 1})
    assert deliveries.records["a"].state is DeliveryState.DELIVERED


def test_a_message_for_an_unknown_delivery_goes_to_the_dlq() -> None:
    deliveries = InMemoryDeliveries()
    queue = InMemoryQueue()

    failed = sender(deliveries, FakeHttp(delay=0), queue).process_batch(messages(["ghost"]))

    assert failed == []
    [dead] = queue.messages
    assert (dead["reason"], dead["delivery_id"]) == ("unknown_delivery", "ghost")


def test_a_delivery_not_yet_due_hides_its_message_for_the_rest_of_the_wait() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "a", "tracker.example", DeliveryState.RETRYING)
    later = format_timestamp(NOW.replace(minute=2))
    deliveries.records["a"] = dataclasses.replace(deliveries.records["a"], next_attempt_at=later)
    queue = InMemoryQueue()
    http = FakeHttp(delay=0)

    failed = sender(deliveries, http, queue).process_batch(messages(["a"]))

    assert failed == ["m-a"]
    assert http.calls == []
    assert queue.visibility == [("r-a", 120)]
    assert deliveries.records["a"].state is DeliveryState.RETRYING


def test_a_lease_taken_but_not_used_is_given_back_when_time_runs_out_waiting_for_a_slot() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "a", "tracker.example")
    add(deliveries, "b", "tracker.example")
    queue = InMemoryQueue()
    http = FakeHttp(delay=0.05)
    calls = iter([60_000, 60_000, 60_000])  # two leases and the first GET; then the invocation is nearly over

    failed = sender(deliveries, http, queue, per_host_concurrency=1, request_deadline_seconds=10).process_batch(
        messages(["a", "b"]), remaining_ms=lambda: next(calls, 1_000)
    )

    assert len(http.calls) == 1
    states = sorted(record.state.value for record in deliveries.records.values())
    assert states == [DeliveryState.DELIVERED.value, DeliveryState.PENDING.value]
    [waiting] = [i for i, record in deliveries.records.items() if record.state is DeliveryState.PENDING]
    assert deliveries.records[waiting].lease_owner is None
    assert failed == [f"m-{waiting}"]
    assert queue.visibility == [(f"r-{waiting}", 0)]
    assert deliveries.calls["release_lease"] == 1


def test_the_lease_covers_the_waves_a_host_may_wait_for() -> None:
    deliveries = InMemoryDeliveries()
    ids = [f"d{i}" for i in range(5)]
    for i in ids:
        add(deliveries, i, "tracker.example")

    sender(
        deliveries,
        FakeHttp(delay=0),
        InMemoryQueue(),
        per_host_concurrency=2,
        lease_seconds=30,
        request_deadline_seconds=10,
    ).process_batch(messages(ids))

    assert deliveries.lease_seconds == 30 + 2 * 10  # three waves of two: two GET deadlines of waiting at most


@pytest.mark.parametrize(
    ("last_success_at", "consecutive_failures", "writes"),
    [
        (None, 0, 1),  # first success
        (format_timestamp(NOW), 0, 0),  # just now
        (format_timestamp(NOW.replace(hour=9, minute=59, second=30)), 0, 0),  # 30 s ago
        (format_timestamp(NOW.replace(hour=9, minute=58)), 0, 1),  # 2 min ago
        (format_timestamp(NOW), 2, 1),  # failures to reset
    ],
)
def test_health_is_written_on_success_only_when_it_changes_and_once_per_postback_per_batch(
    last_success_at: str | None, consecutive_failures: int, writes: int
) -> None:
    deliveries = InMemoryDeliveries()
    ids = [f"d{i}" for i in range(4)]
    for i in ids:
        add(deliveries, i, "tracker.example")
    health = InMemoryHealth()
    postbacks = postback_store(last_success_at=last_success_at, consecutive_failures=consecutive_failures)

    failed = sender(deliveries, FakeHttp(delay=0), InMemoryQueue(), postbacks=postbacks, health=health).process_batch(
        messages(ids)
    )

    assert failed == []
    assert health.successes == ["pb_1"] * writes


def test_a_failure_is_always_written_to_health() -> None:
    deliveries = InMemoryDeliveries()
    for i in ("a", "b"):
        add(deliveries, i, "tracker.example")
    health = InMemoryHealth()

    sender(
        deliveries,
        FakeHttp(delay=0, status_for={"tracker.example": 410}),
        InMemoryQueue(),
        postbacks=postback_store(last_success_at=format_timestamp(NOW)),
        health=health,
    ).process_batch(messages(["a", "b"]))

    assert health.failures == [("pb_1", "gone"), ("pb_1", "gone")]
    assert health.successes == []
