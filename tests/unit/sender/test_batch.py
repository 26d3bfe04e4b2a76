"""`DeliverySender.process_batch` with in-memory fakes: concurrency caps, isolation, the time guard."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.core.model import TERMINAL_STATES, DeliveryState, Postback, Scope, format_timestamp
from functions.core.schedule import RetryPolicy
from functions.sender.service import DeliverySender, IncomingMessage
from functions.storage.delivery_attempts import AttemptRecord, DeliveryRecord, LeaseLost

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


class FakeDeliveries:
    """Delivery records in memory, with the lease rules of the real repository."""

    def __init__(self) -> None:
        self.records: dict[str, DeliveryRecord] = {}
        self._lock = threading.Lock()

    def add(self, delivery_id: str, host: str, state: DeliveryState = DeliveryState.PENDING) -> None:
        self.records[delivery_id] = DeliveryRecord(
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

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        return self.records.get(delivery_id)

    def get_many(self, delivery_ids: Iterable[str]) -> dict[str, DeliveryRecord]:
        return {i: self.records[i] for i in delivery_ids if i in self.records}

    def acquire_lease(
        self, delivery_id: str, owner: str, now: datetime, lease_seconds: float, due_by: datetime
    ) -> DeliveryRecord | None:
        with self._lock:
            record = self.records[delivery_id]
            if record.state not in (DeliveryState.PENDING, DeliveryState.RETRYING):
                return None
            record = dataclasses.replace(record, state=DeliveryState.IN_FLIGHT, lease_owner=owner)
            self.records[delivery_id] = record
            return record

    def _finish(self, delivery_id: str, owner: str, **changes: Any) -> DeliveryRecord:
        with self._lock:
            record = self.records[delivery_id]
            if record.lease_owner != owner:
                raise LeaseLost(delivery_id)
            attempt = changes.pop("attempt", None)
            attempts = record.attempts + ((attempt,) if attempt else ())
            record = dataclasses.replace(
                record,
                lease_owner=None,
                attempts=attempts,
                cycle_attempts=record.cycle_attempts + (1 if attempt else 0),
                schedule_started_at=record.schedule_started_at or (attempt.at if attempt else None),
                **changes,
            )
            self.records[delivery_id] = record
            return record

    def cancel(self, delivery_id: str, owner: str, reason: str, now: datetime) -> DeliveryRecord:
        return self._finish(delivery_id, owner, state=DeliveryState.CANCELLED, reason=reason)

    def record_delivered(self, delivery_id: str, owner: str, attempt: AttemptRecord, now: datetime) -> DeliveryRecord:
        return self._finish(delivery_id, owner, state=DeliveryState.DELIVERED, attempt=attempt)

    def record_retry(
        self, delivery_id: str, owner: str, attempt: AttemptRecord, next_attempt_at: datetime, now: datetime
    ) -> DeliveryRecord:
        return self._finish(
            delivery_id,
            owner,
            state=DeliveryState.RETRYING,
            attempt=attempt,
            next_attempt_at=format_timestamp(next_attempt_at),
        )

    def record_dead_letter(
        self, delivery_id: str, owner: str, attempt: AttemptRecord, reason: str, now: datetime
    ) -> DeliveryRecord:
        return self._finish(
            delivery_id,
            owner,
            state=DeliveryState.DEAD_LETTERED,
            attempt=attempt,
            reason=reason,
            dead_lettered_at=format_timestamp(now),
        )


class FakePostbacks:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def get(self, postback_id: str) -> Postback | None:
        return Postback(
            postback_id, "aff-1", Scope.GLOBAL, (), (), ("sale",), ("approved",), "https://x/", self.enabled, "", "", 1
        )


@dataclass
class FakeHealth:
    successes: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def record_success(self, postback_id: str, at: datetime) -> bool:
        self.successes.append(postback_id)
        return True

    def record_failure(self, postback_id: str, reason: str, at: datetime) -> bool:
        self.failures.append((postback_id, reason))
        return True


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

    def __init__(self, delay: float = 0.05, status_for: dict[str, int] | None = None, explode: str | None = None):
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
            self._active[host] += 1
            self.peak[host] = max(self.peak[host], self._active[host])
            self.peak_total = max(self.peak_total, sum(self._active.values()))
        time.sleep(self.delay)
        with self._lock:
            self._active[host] -= 1
        return Outcome(self.status_for.get(host, 200))


@dataclass
class FakeQueue:
    visibility: list[tuple[str, float]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def change_visibility(self, receipt_handle: str, seconds: float) -> None:
        self.visibility.append((receipt_handle, seconds))

    def send(self, body: dict[str, Any], attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str:
        self.sent.append(body)
        return "m"


def sender(deliveries: FakeDeliveries, http: FakeHttp, queue: FakeQueue, **kwargs: Any) -> DeliverySender:
    options: dict[str, Any] = {
        "deliveries": deliveries,
        "postbacks": FakePostbacks(),
        "health": FakeHealth(),
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
    deliveries = FakeDeliveries()
    ids = [f"slow{i}" for i in range(6)] + [f"fast{i}" for i in range(3)]
    for i in ids:
        deliveries.add(i, "slow.example" if i.startswith("slow") else "fast.example")
    http = FakeHttp(delay=0.05)

    failed = sender(deliveries, http, FakeQueue(), max_concurrency=10, per_host_concurrency=2).process_batch(
        messages(ids)
    )

    assert failed == []
    assert http.peak["slow.example"] <= 2
    assert http.peak_total >= 3  # the other host was not held back by the cap
    assert all(deliveries.records[i].state is DeliveryState.DELIVERED for i in ids)


def test_the_gets_of_a_batch_run_concurrently() -> None:
    deliveries = FakeDeliveries()
    ids = [f"d{i}" for i in range(8)]
    for i in ids:
        deliveries.add(i, "tracker.example")
    http = FakeHttp(delay=0.1)

    sender(deliveries, http, FakeQueue(), max_concurrency=8, per_host_concurrency=8).process_batch(messages(ids))

    assert http.peak_total == 8


def test_a_crash_on_one_message_fails_only_that_message() -> None:
    deliveries = FakeDeliveries()
    for i in ("a", "b", "c"):
        deliveries.add(i, "tracker.example")
    http = FakeHttp(delay=0, explode="d=b")

    failed = sender(deliveries, http, FakeQueue()).process_batch(messages(["a", "b", "c"]))

    assert failed == ["m-b"]
    assert deliveries.records["a"].state is DeliveryState.DELIVERED
    assert deliveries.records["c"].state is DeliveryState.DELIVERED
    assert deliveries.records["b"].state is DeliveryState.IN_FLIGHT  # its lease expires; the message returns


def test_no_get_starts_when_the_invocation_is_about_to_time_out() -> None:
    deliveries = FakeDeliveries()
    deliveries.add("a", "tracker.example")
    http = FakeHttp(delay=0)
    queue = FakeQueue()

    failed = sender(deliveries, http, queue, request_deadline_seconds=10).process_batch(
        messages(["a"]), remaining_ms=lambda: 12_000
    )

    assert failed == ["m-a"]
    assert http.calls == []
    assert queue.visibility == [("r-a", 0)]
    assert deliveries.records["a"].state is DeliveryState.PENDING


def test_a_retry_hides_the_message_for_the_wait_and_reports_it_failed() -> None:
    deliveries = FakeDeliveries()
    deliveries.add("a", "tracker.example")
    queue = FakeQueue()

    failed = sender(deliveries, FakeHttp(delay=0, status_for={"tracker.example": 502}), queue).process_batch(
        messages(["a"])
    )

    assert failed == ["m-a"]
    assert queue.visibility == [("r-a", 30)]  # first ceiling, drawn at its top
    record = deliveries.records["a"]
    assert record.state is DeliveryState.RETRYING
    assert record.attempts[0].next_attempt_at == record.next_attempt_at


def test_finished_deliveries_are_acknowledged_without_a_get() -> None:
    deliveries = FakeDeliveries()
    for number, state in enumerate(sorted(TERMINAL_STATES)):
        deliveries.add(f"t{number}", "tracker.example", state)
    http = FakeHttp(delay=0)

    failed = sender(deliveries, http, FakeQueue()).process_batch(messages(deliveries.records))

    assert failed == []
    assert http.calls == []


def test_a_disabled_postback_cancels_without_a_get() -> None:
    deliveries = FakeDeliveries()
    deliveries.add("a", "tracker.example")
    http = FakeHttp(delay=0)

    failed = sender(deliveries, http, FakeQueue(), postbacks=FakePostbacks(enabled=False)).process_batch(
        messages(["a"])
    )

    assert failed == []
    assert http.calls == []
    assert (deliveries.records["a"].state, deliveries.records["a"].reason) == (
        DeliveryState.CANCELLED,
        "postback_disabled",
    )


def test_a_terminal_answer_dead_letters_with_history_and_flags_health() -> None:
    deliveries = FakeDeliveries()
    deliveries.add("a", "tracker.example")
    queue = FakeQueue()
    health = FakeHealth()

    failed = sender(
        deliveries, FakeHttp(delay=0, status_for={"tracker.example": 403}), queue, health=health
    ).process_batch(messages(["a"]))

    assert failed == []
    [dead] = queue.sent
    assert (dead["delivery_id"], dead["reason"], dead["last_status_code"]) == ("a", "http_403", 403)
    assert len(dead["attempts"]) == 1
    assert health.failures == [("pb_1", "http_403")]
