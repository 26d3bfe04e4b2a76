"""In-memory stand-ins of the repositories and queues, shared by the unit tests and the benchmarks.

Each keeps state and applies the conditions of the real adapter it replaces (the lease rules of
`DeliveryRepository`, the conditional create, the per-entry failures of `Queue.send_batch`), and
records what it was asked, so a test can assert the calls a batch makes. All are thread-safe: the
sender calls them from its batch's worker threads.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from functions.core.host_pause import HostState
from functions.core.model import (
    TERMINAL_STATES,
    Attempt,
    Delivery,
    DeliveryState,
    PlannedDelivery,
    Postback,
    format_timestamp,
)
from functions.storage.deliveries import CreateOutcome, LeaseLost
from functions.storage.queues import OutgoingMessage, QueueSendError


class InMemoryDeliveries:
    """The sender's deliveries store (`functions.sender.service.DeliveryStore`), with the lease rules
    of `DeliveryRepository`: a pending, retrying or expired in-flight delivery that is due can be
    leased; the writes under the lease raise `LeaseLost` when the owner no longer holds it."""

    def __init__(self) -> None:
        self.records: dict[str, Delivery] = {}
        self.calls: Counter[str] = Counter()
        self.events: list[str] = []  # "lease <id>", in order
        self.lease_seconds: float | None = None  # of the last lease taken
        self._lock = threading.Lock()

    def get(self, delivery_id: str) -> Delivery | None:
        with self._lock:
            self.calls["get"] += 1
            return self.records.get(delivery_id)

    def acquire_lease(
        self, delivery_id: str, owner: str, now: datetime, lease_seconds: float, due_by: datetime
    ) -> Delivery | None:
        with self._lock:
            self.calls["acquire_lease"] += 1
            self.events.append(f"lease {delivery_id}")
            record = self.records.get(delivery_id)
            if record is None:
                return None
            expired = record.state is DeliveryState.IN_FLIGHT and (record.lease_expires_at or 0) < now.timestamp()
            if record.state not in (DeliveryState.PENDING, DeliveryState.RETRYING) and not expired:
                return None
            if record.next_attempt_at is not None and record.next_attempt_at > format_timestamp(due_by):
                return None
            self.lease_seconds = lease_seconds
            record = dataclasses.replace(
                record,
                state=DeliveryState.IN_FLIGHT,
                lease_owner=owner,
                lease_expires_at=now.timestamp() + lease_seconds,
                updated_at=format_timestamp(now),
            )
            self.records[delivery_id] = record
            return record

    def release_lease(self, delivery_id: str, owner: str, state: DeliveryState, now: datetime) -> Delivery | None:
        with self._lock:
            self.calls["release_lease"] += 1
            record = self.records[delivery_id]
            if record.lease_owner != owner:
                return None
            record = dataclasses.replace(record, state=state, lease_owner=None, lease_expires_at=None)
            self.records[delivery_id] = record
            return record

    def cancel(self, delivery_id: str, owner: str, reason: str, now: datetime) -> Delivery:
        return self._finish(delivery_id, owner, now, None, state=DeliveryState.CANCELLED, reason=reason)

    def record_delivered(self, delivery_id: str, owner: str, attempt: Attempt, now: datetime) -> Delivery:
        return self._finish(
            delivery_id, owner, now, attempt, state=DeliveryState.DELIVERED, delivered_at=format_timestamp(now)
        )

    def record_retry(
        self, delivery_id: str, owner: str, attempt: Attempt, next_attempt_at: datetime, now: datetime
    ) -> Delivery:
        return self._finish(
            delivery_id,
            owner,
            now,
            attempt,
            state=DeliveryState.RETRYING,
            next_attempt_at=format_timestamp(next_attempt_at),
        )

    def record_dead_letter(
        self, delivery_id: str, owner: str, attempt: Attempt, reason: str, now: datetime, *, copy_sent: bool = False
    ) -> Delivery:
        return self._finish(
            delivery_id,
            owner,
            now,
            attempt,
            state=DeliveryState.DEAD_LETTERED,
            reason=reason,
            dead_lettered_at=format_timestamp(now),
            dlq_copy_sent=copy_sent,
        )

    def mark_dlq_copy_sent(self, delivery_id: str, now: datetime) -> bool:
        with self._lock:
            self.calls["mark_dlq_copy_sent"] += 1
            record = self.records[delivery_id]
            if record.state is not DeliveryState.DEAD_LETTERED:
                return False
            self.records[delivery_id] = dataclasses.replace(record, dlq_copy_sent=True)
            return True

    def mark_at_risk(self, delivery_id: str, now: datetime) -> bool:
        with self._lock:
            self.calls["mark_at_risk"] += 1
            record = self.records.get(delivery_id)
            if record is None or record.dead_letter_partition is not None or record.state in TERMINAL_STATES:
                return False
            self.records[delivery_id] = dataclasses.replace(
                record, dead_letter_partition="at_risk", dead_lettered_at=format_timestamp(now)
            )
            return True

    def wait_for_host(
        self, delivery_id: str, owner: str, state: DeliveryState, until: datetime, now: datetime
    ) -> Delivery:
        with self._lock:
            waits = self.records[delivery_id].host_pause_waits + 1
        stamp = format_timestamp(until)
        return self._finish(
            delivery_id, owner, now, None, state=state, next_attempt_at=stamp, host_paused_until=stamp,
            host_pause_waits=waits,
        )  # fmt: skip

    def record_dead_letter_unattempted(self, delivery_id: str, owner: str, reason: str, now: datetime) -> Delivery:
        return self._finish(
            delivery_id, owner, now, None, state=DeliveryState.DEAD_LETTERED, reason=reason,
            dead_lettered_at=format_timestamp(now),
        )  # fmt: skip

    def _finish(self, delivery_id: str, owner: str, now: datetime, attempt: Attempt | None, **changes: Any) -> Delivery:
        """A write under the lease: the attempt appended (if any), the lease released, `changes` applied."""
        with self._lock:
            self.calls["finish"] += 1
            record = self.records[delivery_id]
            if record.lease_owner != owner:
                raise LeaseLost(delivery_id)
            record = dataclasses.replace(
                record,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=format_timestamp(now),
                attempts=record.attempts + ((attempt,) if attempt else ()),
                cycle_attempts=record.cycle_attempts + (1 if attempt else 0),
                schedule_started_at=record.schedule_started_at or (attempt.at if attempt else None),
                **changes,
            )
            self.records[delivery_id] = record
            return record


class InMemoryPlannedDeliveries:
    """The evaluator's deliveries store (`functions.evaluator.service.DeliveryStore`): the conditional
    create of `DeliveryRepository`, keyed by delivery ID; `items` maps an ID to (planned, state)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[PlannedDelivery, str]] = {}
        self.fail_on_write: int | None = None  # the write (1-based) that raises, as a throttled one would
        self.writes = 0
        self.batch_reads: list[list[str]] = []  # the IDs of each `pending_among`
        self.copies_confirmed: set[str] = set()  # dead-lettered deliveries whose DLQ copy was confirmed

    def create(self, planned: PlannedDelivery, *, now: datetime, ttl_days: int) -> CreateOutcome:
        self.writes += 1
        if self.fail_on_write == self.writes:
            raise ConnectionError("throttled")
        if planned.delivery_id in self.items:
            state = self.items[planned.delivery_id][1]
            return CreateOutcome.EXISTS_PENDING if state == DeliveryState.PENDING else CreateOutcome.EXISTS_HANDLED
        self.items[planned.delivery_id] = (planned, DeliveryState.PENDING.value)
        return CreateOutcome.CREATED

    def pending_among(self, delivery_ids: Sequence[str]) -> list[PlannedDelivery]:
        self.batch_reads.append(list(delivery_ids))
        return [self.items[i][0] for i in delivery_ids if i in self.items and self.items[i][1] == DeliveryState.PENDING]

    def create_dead_lettered(self, planned: PlannedDelivery, reason: str, *, now: datetime, ttl_days: int) -> bool:
        self.writes += 1
        if planned.delivery_id in self.items:
            return self.items[planned.delivery_id][1] == DeliveryState.DEAD_LETTERED and (
                planned.delivery_id not in self.copies_confirmed
            )
        self.items[planned.delivery_id] = (planned, DeliveryState.DEAD_LETTERED.value)
        return True

    def mark_dlq_copy_sent(self, delivery_id: str, now: datetime) -> bool:
        self.copies_confirmed.add(delivery_id)
        return True


class InMemoryPostbacks:
    """The postbacks the sender reads (`get`, `get_many`) and the evaluator lists (`list_for_affiliate`).

    `calls` counts the sender's reads and `batch_reads` keeps each `get_many`'s IDs; `reads` keeps
    the affiliates listed, in order; listing an affiliate in `failing` raises, as a timed-out query
    would. `events` ("postback <id>", "postbacks <ids>") may be shared with other fakes for order.
    """

    def __init__(self, postbacks: Iterable[Postback] = (), *, events: list[str] | None = None) -> None:
        self.postbacks = {postback.id: postback for postback in postbacks}
        self.calls: Counter[str] = Counter()
        self.batch_reads: list[list[str]] = []
        self.reads: list[str] = []
        self.failing: set[str] = set()
        self.events = events if events is not None else []
        self._lock = threading.Lock()

    def get(self, postback_id: str) -> Postback | None:
        with self._lock:
            self.calls["get"] += 1
            self.events.append(f"postback {postback_id}")
            return self.postbacks.get(postback_id)

    def get_many(self, postback_ids: list[str]) -> dict[str, Postback]:
        with self._lock:
            self.calls["get_many"] += 1
            self.batch_reads.append(list(postback_ids))
            self.events.append("postbacks " + ",".join(postback_ids))
            return {key: self.postbacks[key] for key in postback_ids if key in self.postbacks}

    def list_for_affiliate(self, affiliate_id: str) -> list[Postback]:
        with self._lock:
            self.reads.append(affiliate_id)
            if affiliate_id in self.failing:
                raise TimeoutError("query timed out")
            return [postback for postback in self.postbacks.values() if postback.affiliate_id == affiliate_id]


@dataclass
class InMemoryHealth:
    """The sender's health store (`functions.sender.service.HealthStore`): the writes, in order."""

    successes: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.successes) + len(self.failures)

    def record_success(self, postback_id: str, at: datetime) -> bool:
        self.successes.append(postback_id)
        return True

    def record_failure(self, postback_id: str, reason: str, at: datetime) -> bool:
        self.failures.append((postback_id, reason))
        return True


class InMemoryQueue:
    """A queue as the evaluator and the sender use it (`functions.storage.queues.Queue`).

    `messages` are the bodies sent, `visibility` the (receipt handle, seconds) changes asked for.
    `send_batch` refuses the entries whose ID is in `refuse` (raising `QueueSendError` naming them,
    as `Queue` does after its retries) and sends the others; while `down`, `send` fails.
    """

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.attributes: list[dict[str, str] | None] = []
        self.visibility: list[tuple[str, float]] = []
        self.batches = 0
        self.refuse: set[str] = set()
        self.down = False
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        """Requests made: sends, batches and visibility changes."""
        return len(self.attributes) + self.batches + len(self.visibility)

    def send(self, body: dict[str, Any], attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str:
        if self.down:
            raise ConnectionError("sqs unavailable")
        with self._lock:
            self.messages.append(body)
            self.attributes.append(attributes)
            return uuid.uuid4().hex

    def send_batch(self, messages: Iterable[OutgoingMessage]) -> None:
        batch = list(messages)
        assert len(batch) <= 10, "a SendMessageBatch holds at most ten entries"
        refused = [message.id for message in batch if message.id in self.refuse]
        with self._lock:
            self.batches += 1
            self.messages.extend(message.body for message in batch if message.id not in self.refuse)
        if refused:
            raise QueueSendError(refused, "InternalError")

    def change_visibility(self, receipt_handle: str, seconds: float) -> None:
        with self._lock:
            self.visibility.append((receipt_handle, seconds))


class InMemoryHosts:
    """The host states (`functions.sender.hosts.HostStore`) with the conditions of `HostRepository`."""

    def __init__(self, postbacks: InMemoryPostbacks | None = None) -> None:
        self.states: dict[str, HostState] = {}
        self.calls: Counter[str] = Counter()
        self._postbacks = postbacks or InMemoryPostbacks()
        self._lock = threading.Lock()

    def read_with_postbacks(
        self, postback_ids: Sequence[str], hosts: Sequence[str]
    ) -> tuple[dict[str, Postback], dict[str, HostState]]:
        with self._lock:
            self.calls["read"] += 1
            states = {host: self.states[host] for host in hosts if host in self.states}
        return self._postbacks.get_many(list(postback_ids)), states

    def get(self, host: str) -> HostState | None:
        with self._lock:
            self.calls["get"] += 1
            return self.states.get(host)

    def record_failure(self, host: str, reason: str, at: datetime) -> HostState:
        with self._lock:
            self.calls["record_failure"] += 1
            state = self.states.get(host) or HostState(host)
            state = dataclasses.replace(
                state, consecutive_failures=state.consecutive_failures + 1, last_failure_reason=reason
            )
            self.states[host] = state
            return state

    def pause(self, host: str, until: float, pauses_before: int, now: float) -> HostState | None:
        with self._lock:
            self.calls["pause"] += 1
            state = self.states.get(host) or HostState(host)
            if state.pauses != pauses_before or state.paused_at(now):
                return None
            state = dataclasses.replace(state, paused_until=until, pauses=pauses_before + 1, probe_until=None)
            self.states[host] = state
            return state

    def claim_probe(self, host: str, paused_until: float, probe_until: float, now: float) -> HostState | None:
        with self._lock:
            self.calls["claim_probe"] += 1
            state = self.states.get(host)
            if state is None or state.paused_until != paused_until:
                return None
            if state.probe_until is not None and state.probe_until > now:
                return None
            state = dataclasses.replace(state, probe_until=probe_until)
            self.states[host] = state
            return state

    def resume(self, host: str) -> None:
        with self._lock:
            self.calls["resume"] += 1
            self.states[host] = HostState(host)
