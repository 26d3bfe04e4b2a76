"""Backfill (functions/sender/backfill.py): an invocation held by a slow GET takes more messages from the queue.

Driven through `DeliverySender.process_batch` with the in-memory fakes and a fake queue source: what
is taken, what is sent, what is deleted, what is left to come back, and when nothing is taken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from functions.core.model import DeliveryState
from functions.sender.backfill import Backfill, SlowGets
from functions.sender.ports import IncomingMessage
from functions.sender.service import DeliverySender
from tests.support.fakes import InMemoryDeliveries, InMemoryQueue
from tests.unit.sender.test_batch import Outcome, add, messages, sender

pytestmark = pytest.mark.unit

SLOW_HOST = "slow.example"
AFTER = 0.1


class Source:
    """The queue as the backfill sees it: messages to hand out, the receipt handles deleted."""

    def __init__(self, waiting: Sequence[IncomingMessage] = (), *, endless: Callable[[int], str] | None = None) -> None:
        self.waiting = list(waiting)
        self.endless = endless  # a new delivery ID for each message asked for once `waiting` is empty
        self.receives = 0
        self.deleted: list[str] = []
        self.fail_receive = False
        self.fail_delete = False
        self._lock = threading.Lock()
        self._made = 0

    def receive(self, max_messages: int) -> list[IncomingMessage]:
        with self._lock:
            self.receives += 1
            if self.fail_receive:
                raise ConnectionError("sqs unavailable")
            taken, self.waiting = self.waiting[:max_messages], self.waiting[max_messages:]
            while self.endless is not None and len(taken) < max_messages:
                self._made += 1
                taken += messages([self.endless(self._made)])
            return taken

    def delete(self, receipt_handles: Sequence[str]) -> None:
        if self.fail_delete:
            raise ConnectionError("sqs unavailable")
        with self._lock:
            self.deleted.extend(receipt_handles)


class Http:
    """200 after `slow` seconds from SLOW_HOST, after 10 ms elsewhere (`status_for` per host); records each GET."""

    def __init__(self, slow: float = 0.5, status_for: dict[str, int] | None = None) -> None:
        self.slow = slow
        self.status_for = status_for or {}
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> Outcome:
        host, delivery_id = url.split("/")[2], url.rsplit("=", 1)[1]
        if "explode" in url:
            raise RuntimeError("client bug")
        with self._lock:
            self.started[delivery_id] = time.monotonic()
        time.sleep(self.slow if host == SLOW_HOST else 0.01)
        with self._lock:
            self.ended[delivery_id] = time.monotonic()
        return Outcome(self.status_for.get(host, 200))


def backfilling(
    deliveries: InMemoryDeliveries,
    http: Http,
    queue: InMemoryQueue,
    source: Source,
    after: float = AFTER,
    **kwargs: Any,
) -> DeliverySender:
    backfill = Backfill(source, after_seconds=after, look_seconds=0.005)
    return sender(deliveries, http, queue, backfill=backfill, request_deadline_seconds=2.0, **kwargs)


def test_an_invocation_held_by_a_slow_get_sends_taken_deliveries_meanwhile_and_deletes_them() -> None:
    deliveries, queue, http = InMemoryDeliveries(), InMemoryQueue(), Http(slow=0.5)
    add(deliveries, "slow1", SLOW_HOST)
    taken = [f"fast{n}" for n in range(15)]
    for delivery_id in taken:
        add(deliveries, delivery_id, f"{delivery_id}.example")
    source = Source(messages(taken))

    failed = backfilling(deliveries, http, queue, source).process_batch(messages(["slow1"]))

    assert failed == []
    assert all(deliveries.records[d].state == DeliveryState.DELIVERED for d in ["slow1", *taken])
    # Taken once the slow GET had run for AFTER, and sent while it was still in flight.
    assert all(http.started["slow1"] + AFTER <= http.started[d] < http.ended["slow1"] for d in taken)
    # The event's own message is acknowledged by the batch response; the taken ones are deleted here.
    assert sorted(source.deleted) == sorted(f"r-{d}" for d in taken)


def test_a_batch_whose_gets_are_fast_takes_nothing() -> None:
    deliveries, queue, http = InMemoryDeliveries(), InMemoryQueue(), Http()
    for delivery_id in ("a", "b"):
        add(deliveries, delivery_id, f"{delivery_id}.example")
    add(deliveries, "waiting", "w.example")
    source = Source(messages(["waiting"]))

    # GETs of 10 ms, a backfill start of 0.5 s: room for a loaded machine.
    assert backfilling(deliveries, http, queue, source, after=0.5).process_batch(messages(["a", "b"])) == []

    assert source.receives == 0 and source.deleted == []
    assert deliveries.records["waiting"].state == DeliveryState.PENDING


def test_a_taken_delivery_to_the_slow_host_waits_for_its_get_without_an_attempt() -> None:
    deliveries, queue, http = InMemoryDeliveries(), InMemoryQueue(), Http(slow=0.5)
    add(deliveries, "slow1", SLOW_HOST)
    add(deliveries, "slow2", SLOW_HOST)
    add(deliveries, "fast1", "fast.example")
    source = Source(messages(["slow2", "fast1"]))

    backfilling(deliveries, http, queue, source).process_batch(messages(["slow1"]))

    assert "slow2" not in http.started  # no second GET to the host that holds the invocation
    record = deliveries.records["slow2"]
    assert record.state == DeliveryState.PENDING and not record.attempts and record.cycle_attempts == 0
    assert record.lease_owner is None
    # Hidden until the slow GET's deadline (2 s from its start) has passed and a second more, in whole
    # seconds; not deleted.
    [(_, hidden)] = [entry for entry in queue.visibility if entry[0] == "r-slow2"]
    assert 2 <= hidden <= 3
    assert source.deleted == ["r-fast1"]
    assert deliveries.records["fast1"].state == DeliveryState.DELIVERED


def test_taken_messages_not_acknowledged_are_left_to_come_back() -> None:
    deliveries, queue = InMemoryDeliveries(), InMemoryQueue()
    http = Http(slow=0.4, status_for={"busy.example": 503})
    add(deliveries, "slow1", SLOW_HOST)
    add(deliveries, "busy", "busy.example")
    add(deliveries, "explode", "explode.example")
    add(deliveries, "ok", "ok.example")
    malformed = IncomingMessage("m-bad", "r-bad", "not json")
    source = Source([*messages(["busy", "explode", "ok"]), malformed])

    assert backfilling(deliveries, http, queue, source).process_batch(messages(["slow1"])) == []

    assert deliveries.records["busy"].state == DeliveryState.RETRYING  # hidden for its retry, not deleted
    assert ("r-busy", 30) in queue.visibility
    assert deliveries.records["explode"].state == DeliveryState.IN_FLIGHT  # returns when the lease expires
    # The malformed body went to the DLQ and is acknowledged, like a delivered one.
    assert any(body.get("kind") == "malformed_message" for body in queue.messages)
    assert sorted(source.deleted) == ["r-bad", "r-ok"]


def test_the_invocation_stops_taking_when_its_own_gets_have_ended() -> None:
    deliveries, queue, http = InMemoryDeliveries(), InMemoryQueue(), Http(slow=0.3)
    add(deliveries, "slow1", SLOW_HOST)

    def new_delivery(n: int) -> str:
        add(deliveries, f"more{n}", f"h{n}.example")
        return f"more{n}"

    source = Source(endless=new_delivery)
    started = time.monotonic()

    backfilling(deliveries, http, queue, source).process_batch(messages(["slow1"]))

    assert time.monotonic() - started < 1.5
    taken = [d for d in deliveries.records if d.startswith("more")]
    assert taken and source.receives <= 60
    # Everything it took was finished before it returned: delivered and deleted, nothing left leased.
    assert all(deliveries.records[d].state == DeliveryState.DELIVERED for d in taken)
    assert sorted(source.deleted) == sorted(f"r-{d}" for d in taken)


def test_nothing_is_taken_when_the_invocation_has_no_time_for_another_get() -> None:
    deliveries, queue, http = InMemoryDeliveries(), InMemoryQueue(), Http(slow=0.3)
    add(deliveries, "slow1", SLOW_HOST)
    add(deliveries, "fast1", "fast.example")
    source = Source(messages(["fast1"]))

    def remaining_ms() -> int:  # enough for the event's GET; once it is out, less than a deadline and the margin
        return 5_000 if http.started else 60_000

    backfilling(deliveries, http, queue, source).process_batch(messages(["slow1"]), remaining_ms)

    assert source.receives == 0
    assert deliveries.records["slow1"].state == DeliveryState.DELIVERED


def test_a_queue_that_cannot_be_read_leaves_the_batch_as_it_was() -> None:
    deliveries, queue, http = InMemoryDeliveries(), InMemoryQueue(), Http(slow=0.3)
    add(deliveries, "slow1", SLOW_HOST)
    source = Source()
    source.fail_receive = True

    assert backfilling(deliveries, http, queue, source).process_batch(messages(["slow1"])) == []

    assert source.receives == 1  # one failed receive, then it waits for its own GETs
    assert deliveries.records["slow1"].state == DeliveryState.DELIVERED


def test_an_acknowledged_message_that_could_not_be_deleted_comes_back_and_is_not_sent_again() -> None:
    deliveries, queue, http = InMemoryDeliveries(), InMemoryQueue(), Http(slow=0.3)
    add(deliveries, "slow1", SLOW_HOST)
    add(deliveries, "fast1", "fast.example")
    source = Source(messages(["fast1"]))
    source.fail_delete = True
    the_sender = backfilling(deliveries, http, queue, source)

    assert the_sender.process_batch(messages(["slow1"])) == []
    assert deliveries.records["fast1"].state == DeliveryState.DELIVERED and source.deleted == []

    gets = len(http.started)
    assert the_sender.process_batch(messages(["fast1"])) == []  # it returns: acknowledged, no GET
    assert len(http.started) == gets


def test_a_sender_without_backfill_never_holds_back_a_get_to_a_busy_host() -> None:
    deliveries, queue, http = InMemoryDeliveries(), InMemoryQueue(), Http(slow=0.3)
    for n in range(3):
        add(deliveries, f"s{n}", SLOW_HOST)

    failed = sender(deliveries, http, queue, per_host_concurrency=1).process_batch(messages(["s0", "s1", "s2"]))

    assert failed == [] and len(http.started) == 3


def test_backfill_needs_a_positive_start() -> None:
    with pytest.raises(ValueError):
        Backfill(Source(), after_seconds=0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_slow_gets_are_the_ones_in_flight_for_the_backfill_start() -> None:
    clock = Clock()
    gets = SlowGets(1.0, 10.0, clock)
    assert not gets.holding()
    with gets.tracking("https://a.example/x"):
        clock.now += 0.5
        with gets.tracking("https://b.example:8443/y"):
            assert not gets.holding() and gets.slow_wait("https://a.example/z") is None
            clock.now += 0.6  # a: 1.1 s, b: 0.6 s
            assert gets.holding()
            assert gets.slow_wait("https://a.example/z") == pytest.approx(10.0 - 1.1)
            assert gets.slow_wait("https://b.example:8443/z") is None  # b not slow yet
            assert gets.slow_wait("https://b.example/z") is None  # another port is another host
    # Ended, a's GET no longer holds the invocation, but its host stays slow for it: no more GETs to
    # it from here until that GET's deadline; b answered within the backfill start.
    assert not gets.holding()
    assert gets.slow_wait("https://a.example/z") == pytest.approx(10.0 - 1.1)
    assert gets.slow_wait("https://b.example:8443/z") is None
    clock.now += 20
    assert gets.slow_wait("https://a.example/z") == 0.0


def test_a_host_that_answered_late_is_slow_only_while_its_get_is_in_flight() -> None:
    clock = Clock()
    gets = SlowGets(1.0, 10.0, clock)
    with gets.tracking("https://late.example/x") as tracked:
        clock.now += 3.0
        assert gets.slow_wait("https://late.example/y") == pytest.approx(7.0)
        tracked.answered = True  # a 200 after 3 s: within the contract, not a tarpit
    assert gets.slow_wait("https://late.example/y") is None


def test_slow_gets_without_backfill_keep_nothing() -> None:
    clock = Clock()
    gets = SlowGets(None, 10.0, clock)
    with gets.tracking("https://a.example/x"):
        clock.now += 60
        assert not gets.holding() and gets.slow_wait("https://a.example/x") is None
