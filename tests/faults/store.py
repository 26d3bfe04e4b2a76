"""In-memory deliveries and postbacks tables with DynamoDB's semantics, for the campaign.

Why not moto: a conditional UpdateItem through pynamodb on moto in-process costs ~20 ms on this
machine, and a campaign of 5,000 scenarios makes several hundred thousand calls. These stores keep
what the campaign relies on, method for method with `DeliveryRepository` and `PostbackRepository`:

- every write is conditional exactly as the repository's (the conditional create keyed by delivery
  id; the lease: pending/retrying or an expired in-flight lease, and due; writes under the lease
  only for the lease owner, else `LeaseLost`; the redrive's compare-and-set `claim` and its
  token-checked `mark_enqueued`); every read is consistent, as the repository's are;
- DynamoDB's 400 KB item limit: a create or update that would make an item larger fails with the
  `ValidationException` DynamoDB (and moto) return, wrapped as pynamodb wraps it;
- the sparse `by_dead_letter` index (`dead_lettered`: its `dead`, `redriving` and `at_risk`
  partitions) as the on-call `recover` queries it.

A write made under a lease that records a GET's outcome tells the `GetLedger`, so a GET left
without an outcome can be told apart. The postbacks store extends `tests.support.fakes.InMemoryPostbacks`
with the table's rules version (bumped by every edit, as the repository's transactions do).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError, UpdateError

from functions.core.dead_letter_index import AT_RISK_PARTITION, DEAD_PARTITION, REDRIVING_PARTITION, index_bounds
from functions.core.model import Attempt, Delivery, DeliveryState, PlannedDelivery, Postback, format_timestamp
from functions.storage.deliveries import CreateOutcome, LeaseLost
from functions.storage.postbacks import RulesVersion
from tests.faults.clock import SimClock
from tests.faults.trackers import GetLedger
from tests.support.fakes import InMemoryPostbacks

ITEM_LIMIT_BYTES = 400 * 1024


def item_size(record: Delivery) -> int:
    return len(json.dumps(dataclasses.asdict(record), default=str, separators=(",", ":")).encode())


def _too_large(operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "ValidationException", "Message": "Item size has exceeded the maximum allowed size"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        operation,
    )


def _kept_history(record: Delivery) -> tuple[Attempt, ...]:
    """The attempt log a redrive keeps (the repository trims it, when it does)."""
    try:
        from functions.storage.delivery_safeguards import trimmed_history
    except ImportError:
        return record.attempts
    kept = trimmed_history(record.attempts)
    return record.attempts if kept is None else tuple(kept)


class SimDeliveries:
    def __init__(self, ledger: GetLedger) -> None:
        self.records: dict[str, Delivery] = {}
        self._ledger = ledger

    # Reads.

    def get(self, delivery_id: str, consistent: bool = True) -> Delivery | None:
        return self.records.get(delivery_id)

    def dead_lettered(
        self, since: datetime | None, until: datetime | None, *, include_redriving: bool = True
    ) -> Iterator[Delivery]:
        # As the repository: `at_risk` lists active deliveries whose message the queue may have moved.
        partitions = [DEAD_PARTITION, REDRIVING_PARTITION, AT_RISK_PARTITION] if include_redriving else [DEAD_PARTITION]
        low, high = index_bounds(since, until)
        for partition in partitions:
            listed = sorted(
                (r for r in self.records.values() if r.dead_letter_partition == partition and r.dead_lettered_at),
                key=lambda r: (r.dead_lettered_at or "", r.delivery_id),
            )
            for record in listed:
                at = record.dead_lettered_at or ""
                if (low is not None and at < low) or (high is not None and at >= high):
                    continue
                yield record

    # Creation (the evaluator).

    def create(self, planned: PlannedDelivery, *, now: datetime, ttl_days: int) -> CreateOutcome:
        existing = self.records.get(planned.delivery_id)
        if existing is not None:
            return (
                CreateOutcome.EXISTS_PENDING
                if existing.state is DeliveryState.PENDING
                else CreateOutcome.EXISTS_HANDLED
            )
        stamp = format_timestamp(now)
        delay = int(getattr(planned, "delay_seconds", 0) or 0)
        record = Delivery(
            delivery_id=planned.delivery_id,
            postback_id=planned.postback_id,
            affiliate_id=planned.affiliate_id,
            conversion_id=planned.conversion_id,
            conversion_status=planned.conversion_status,
            previous_status=planned.previous_status,
            offer_id=planned.offer_id,
            url=planned.url,
            target_host=planned.target_host,
            state=DeliveryState.PENDING,
            created_at=stamp,
            updated_at=stamp,
            next_attempt_at=format_timestamp(now + timedelta(seconds=delay)) if delay > 0 else None,
            expires_at=int((now + timedelta(days=ttl_days)).timestamp()),
        )
        if item_size(record) > ITEM_LIMIT_BYTES:
            raise PutError("Failed to put item", _too_large("PutItem"))
        self.records[planned.delivery_id] = record
        return CreateOutcome.CREATED

    # The safeguards (functions/storage/delivery_safeguards.py), off the happy path.

    def pending_among(self, delivery_ids: Sequence[str]) -> list[PlannedDelivery]:
        from functions.storage.delivery_safeguards import planned_from_record

        found = [self.records[i] for i in delivery_ids if i in self.records]
        return [planned_from_record(r) for r in found if r.state is DeliveryState.PENDING and not r.is_test]

    def create_dead_lettered(self, planned: PlannedDelivery, reason: str, *, now: datetime, ttl_days: int) -> bool:
        existing = self.records.get(planned.delivery_id)
        if existing is not None:
            return (
                existing.state is DeliveryState.DEAD_LETTERED
                and existing.reason == reason
                and not existing.dlq_copy_sent
            )
        stamp = format_timestamp(now)
        record = Delivery(
            delivery_id=planned.delivery_id,
            postback_id=planned.postback_id,
            affiliate_id=planned.affiliate_id,
            conversion_id=planned.conversion_id,
            conversion_status=planned.conversion_status,
            previous_status=planned.previous_status,
            offer_id=planned.offer_id,
            url=planned.url,
            target_host=planned.target_host,
            state=DeliveryState.DEAD_LETTERED,
            reason=reason,
            dead_lettered_at=stamp,
            created_at=stamp,
            updated_at=stamp,
            expires_at=int((now + timedelta(days=ttl_days)).timestamp()),
        )
        if item_size(record) > ITEM_LIMIT_BYTES:
            raise PutError("Failed to put item", _too_large("PutItem"))
        self.records[planned.delivery_id] = record
        return True

    def mark_dlq_copy_sent(self, delivery_id: str, now: datetime) -> bool:
        record = self.records.get(delivery_id)
        if record is None or record.state is not DeliveryState.DEAD_LETTERED:
            return False
        self._write(record, dlq_copy_sent=True, updated_at=format_timestamp(now))
        return True

    def mark_at_risk(self, delivery_id: str, now: datetime) -> bool:
        from functions.core.model import ACTIVE_STATES

        record = self.records.get(delivery_id)
        if record is None or record.dead_letter_partition is not None or record.state not in ACTIVE_STATES:
            return False
        self._write(record, dead_letter_partition=AT_RISK_PARTITION, dead_lettered_at=format_timestamp(now))
        return True

    # The lease (the sender).

    def acquire_lease(
        self, delivery_id: str, owner: str, now: datetime, lease_seconds: float, due_by: datetime
    ) -> Delivery | None:
        record = self.records.get(delivery_id)
        if record is None:
            return None
        expired = record.state is DeliveryState.IN_FLIGHT and (record.lease_expires_at or 0) < now.timestamp()
        if record.state not in (DeliveryState.PENDING, DeliveryState.RETRYING) and not expired:
            return None
        if record.next_attempt_at is not None and record.next_attempt_at > format_timestamp(due_by):
            return None
        return self._write(
            record,
            state=DeliveryState.IN_FLIGHT,
            lease_owner=owner,
            lease_expires_at=now.timestamp() + lease_seconds,
            updated_at=format_timestamp(now),
        )

    def release_lease(self, delivery_id: str, owner: str, state: DeliveryState, now: datetime) -> Delivery | None:
        if state not in (DeliveryState.PENDING, DeliveryState.RETRYING):
            raise ValueError(f"a released delivery is pending or retrying, not {state.value}")
        record = self.records.get(delivery_id)
        if record is None or record.lease_owner != owner:
            return None
        return self._write(record, state=state, **self._release(now))

    def cancel_waiting_for_postback(self, postback_id: str, reason: str, now: datetime, since: datetime) -> int:
        cancelled = 0
        for record in sorted(self.records.values(), key=lambda r: r.delivery_id):
            if record.postback_id != postback_id or record.created_at < format_timestamp(since):
                continue
            waiting = record.state in (DeliveryState.PENDING, DeliveryState.RETRYING)
            expired = record.state is DeliveryState.IN_FLIGHT and (record.lease_expires_at or 0) < now.timestamp()
            if waiting or expired:
                self._write(
                    record, state=DeliveryState.CANCELLED, reason=reason, next_attempt_at=None, **self._release(now)
                )
                cancelled += 1
        return cancelled

    # Writes under the lease.

    def cancel(self, delivery_id: str, owner: str, reason: str, now: datetime) -> Delivery:
        return self._leased(
            delivery_id,
            owner,
            None,
            state=DeliveryState.CANCELLED,
            reason=reason,
            next_attempt_at=None,
            **self._release(now),
        )

    def record_delivered(self, delivery_id: str, owner: str, attempt: Attempt, now: datetime) -> Delivery:
        return self._leased(
            delivery_id,
            owner,
            attempt,
            state=DeliveryState.DELIVERED,
            delivered_at=format_timestamp(now),
            reason=None,
            next_attempt_at=None,
            **self._release(now),
        )

    def record_retry(
        self, delivery_id: str, owner: str, attempt: Attempt, next_attempt_at: datetime, now: datetime
    ) -> Delivery:
        return self._leased(
            delivery_id,
            owner,
            attempt,
            state=DeliveryState.RETRYING,
            next_attempt_at=format_timestamp(next_attempt_at),
            **self._release(now),
        )

    def record_dead_letter(
        self, delivery_id: str, owner: str, attempt: Attempt, reason: str, now: datetime, *, copy_sent: bool = False
    ) -> Delivery:
        extra = {"dlq_copy_sent": True} if copy_sent else {}
        return self._leased(delivery_id, owner, attempt, **self._dead(reason, now), **extra)

    def record_dead_letter_unattempted(self, delivery_id: str, owner: str, reason: str, now: datetime) -> Delivery:
        return self._leased(delivery_id, owner, None, **self._dead(reason, now))

    def wait_for_host(
        self, delivery_id: str, owner: str, state: DeliveryState, until: datetime, now: datetime
    ) -> Delivery:
        record = self.records.get(delivery_id)
        stamp = format_timestamp(until)
        waits = (record.host_pause_waits if record is not None else 0) + 1
        return self._leased(
            delivery_id,
            owner,
            None,
            state=state,
            next_attempt_at=stamp,
            host_paused_until=stamp,
            host_pause_waits=waits,
            **self._release(now),
        )

    # Redrive and recovery (the on-call tools).

    def claim(self, observed: Delivery, token: str, now: datetime) -> bool:
        record = self.records.get(observed.delivery_id)
        if record is None or record.state != observed.state or record.updated_at != observed.updated_at:
            return False
        stamp = format_timestamp(now)
        self._write(
            record,
            state=DeliveryState.PENDING,
            cycle_attempts=0,
            schedule_started_at=None,
            next_attempt_at=None,
            lease_owner=None,
            lease_expires_at=None,
            reason=None,
            enqueued_at=None,
            redrive_count=record.redrive_count + 1,
            redrive_token=token,
            dlq_copy_sent=False,
            attempts=_kept_history(record),
            dead_letter_partition=REDRIVING_PARTITION,
            dead_lettered_at=record.dead_lettered_at or stamp,
            updated_at=stamp,
        )
        return True

    def mark_enqueued(self, delivery_id: str, token: str, now: datetime) -> bool:
        record = self.records.get(delivery_id)
        if record is None or record.redrive_token != token or record.dead_letter_partition != REDRIVING_PARTITION:
            return False
        stamp = format_timestamp(now)
        self._write(record, dead_letter_partition=None, dead_lettered_at=None, enqueued_at=stamp, updated_at=stamp)
        return True

    # Internals.

    @staticmethod
    def _release(now: datetime) -> dict[str, Any]:
        return {"lease_owner": None, "lease_expires_at": None, "updated_at": format_timestamp(now)}

    def _dead(self, reason: str, now: datetime) -> dict[str, Any]:
        return {
            "state": DeliveryState.DEAD_LETTERED,
            "reason": reason,
            "dead_lettered_at": format_timestamp(now),
            "dead_letter_partition": DEAD_PARTITION,
            "next_attempt_at": None,
            **self._release(now),
        }

    def _leased(self, delivery_id: str, owner: str, attempt: Attempt | None, **changes: Any) -> Delivery:
        record = self.records.get(delivery_id)
        if record is None or record.lease_owner != owner:
            raise LeaseLost(delivery_id)
        if attempt is not None:
            changes.update(
                attempts=(*record.attempts, attempt),
                cycle_attempts=record.cycle_attempts + 1,
                schedule_started_at=record.schedule_started_at or attempt.at,
            )
        written = self._write(record, **changes)
        if attempt is not None:
            self._ledger.outcome_written(delivery_id)
        return written

    def _write(self, record: Delivery, **changes: Any) -> Delivery:
        updated = dataclasses.replace(record, **changes)
        if item_size(updated) > ITEM_LIMIT_BYTES:
            raise UpdateError("Failed to update item", _too_large("UpdateItem"))
        self.records[record.delivery_id] = updated
        return updated


class SimPostbacks(InMemoryPostbacks):
    """The postbacks table as the evaluator (rules version, `by_affiliate`) and the sender (consistent reads) see it."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__()
        self._clock = clock
        self.version = 0
        self.changed_at: float | None = None
        # The `by_affiliate` GSI is eventually consistent: a query sees the table as it was this long ago.
        self.index_lag = 0.0
        self._history: dict[str, list[tuple[float, Postback | None]]] = {}

    def rules_version(self) -> RulesVersion:
        return RulesVersion(self.version, self.changed_at)

    def list_for_affiliate(self, affiliate_id: str) -> list[Postback]:
        """The GSI query: each postback as it stood `index_lag` seconds ago."""
        seen_at = self._clock.epoch() - self.index_lag
        found = []
        for postback_id in sorted(self._history):
            versions = [postback for at, postback in self._history[postback_id] if at <= seen_at]
            if versions and versions[-1] is not None and versions[-1].affiliate_id == affiliate_id:
                found.append(versions[-1])
        return found

    def save(self, postback: Postback, at: float | None = None) -> None:
        """A create or an edit through the API: the postback and the rules version, in one transaction.

        `at`: when it was saved, if not now (the postbacks a scenario starts with were created long before).
        """
        saved_at = self._clock.epoch() if at is None else at
        self.postbacks[postback.id] = postback
        self._history.setdefault(postback.id, []).append((saved_at, postback))
        self.version += 1
        self.changed_at = saved_at

    def delete(self, postback_id: str) -> None:
        self.postbacks.pop(postback_id, None)
        self._history.setdefault(postback_id, []).append((self._clock.epoch(), None))
        self.version += 1
        self.changed_at = self._clock.epoch()
