"""What keeps the sender from losing or repeating a delivery off the happy path (docs/reliability.md).

`DeliverySender` calls these at the points named; none adds a request to a delivery that is leased,
sent, answered 2xx and recorded on the first try.

- `write_outcome` — the outcome write after a GET is retried with backoff while this worker still
  holds the lease: a throttled write after a 2xx must not let the lease lapse and the message return
  for a second GET. It gives up (the message returns) only when the lease is about to end.
- `hide` — every `ChangeMessageVisibility` stays within SQS's 12 h from the receive: AWS refuses a
  visibility that would end later than that. A longer wait is continued by the next receive, which
  finds the delivery not yet due and hides the message again for the rest.
- `dead_letter` — the DLQ copy is sent *before* the record is written `dead_lettered`, and the write
  carries `dlq_copy_sent` when the copy went out. If the copy failed, the record is still written
  (the GET is not repeated) and the message is not acknowledged: it comes back, and
  `owes_copy`/`send_owed_copy` send the copy from the record before acknowledging it.
- `duplicate_of_live_lease` — a message refused because *another* message of the same delivery holds a
  live lease is a duplicate: that other message carries the delivery on (it is only ever deleted
  once the delivery is finished), so this one is acknowledged instead of returning again and again
  and using up the queue's `maxReceiveCount` (about two receives per attempt otherwise).
- `note_receive` — a message received `AT_RISK_RECEIVE_COUNT` times or more may be moved to the DLQ
  by the queue's redrive policy while its delivery is still active; the record is put in the
  `at_risk` partition of the `by_dead_letter` index (one conditional write, on that path only), so
  `recover` finds it even after the moved message is purged or expires.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from functions.core.messages import dead_letter_attributes, dead_letter_message
from functions.core.model import Attempt, Delivery, DeliveryState, format_timestamp
from functions.storage.deliveries import LeaseLost
from functions.storage.errors import permanent_failure
from functions.storage.queues import MAX_VISIBILITY_SECONDS

logger = logging.getLogger(__name__)

# Time kept back from SQS's 12 h: Lambda receives a message a little before it invokes the sender.
RECEIVE_MARGIN_SECONDS = 120.0
# The outcome write is retried while at least this much of the lease is left after the pause.
LEASE_MARGIN_SECONDS = 2.0
OUTCOME_RETRY_FIRST_PAUSE = 0.1
OUTCOME_RETRY_MAX_PAUSE = 2.0
# From this many receives on, a message may be close to the queue's maxReceiveCount (the template's
# is 40; a healthy delivery needs at most two receives per attempt: the attempt and, for a wait
# longer than what is left of the 12 h, its continuation).
AT_RISK_RECEIVE_COUNT = 16
# A DLQ copy stays well below SQS's message size limit (256 KiB): older attempts are left out.
DLQ_COPY_BUDGET_BYTES = 200_000


class SafeguardStore(Protocol):
    def record_dead_letter(
        self, delivery_id: str, owner: str, attempt: Attempt, reason: str, now: datetime, *, copy_sent: bool = False
    ) -> Delivery: ...
    def mark_dlq_copy_sent(self, delivery_id: str, now: datetime) -> bool: ...
    def mark_at_risk(self, delivery_id: str, now: datetime) -> bool: ...


class CopyPort(Protocol):
    def send(self, body: dict[str, Any], attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str: ...


class HidePort(Protocol):
    def change_visibility(self, receipt_handle: str, seconds: float) -> None: ...


def visibility_within_receive(seconds: float, received_at: datetime | None, now: datetime) -> int:
    """The visibility to ask for: `seconds` rounded up, cut so that it ends within 12 h of the receive."""
    wanted = max(0, int(-(-seconds // 1)))
    elapsed = 0.0 if received_at is None else max(0.0, (now - received_at).total_seconds())
    allowed = int(MAX_VISIBILITY_SECONDS - RECEIVE_MARGIN_SECONDS - elapsed)
    return max(0, min(wanted, allowed))


def bounded_attempts(attempts: Sequence[dict[str, Any]], budget: int = DLQ_COPY_BUDGET_BYTES) -> list[dict[str, Any]]:
    """The newest attempts whose JSON fits in `budget` bytes (all of them, normally)."""
    kept: list[dict[str, Any]] = []
    used = 0
    for attempt in reversed(attempts):
        used += len(json.dumps(attempt, separators=(",", ":"), default=str)) + 1
        if used > budget:
            break
        kept.append(attempt)
    return list(reversed(kept))


def lease_owner_message(owner: str | None) -> str | None:
    """The message id part of a lease owner (`<messageId>:<random>`)."""
    return None if owner is None else owner.rsplit(":", 1)[0]


@dataclass(frozen=True)
class DeadLettered:
    """A delivery recorded as dead-lettered, and whether its copy reached the deliveries DLQ."""

    record: Delivery
    copy_sent: bool


class SenderSafeguards:
    def __init__(
        self,
        *,
        deliveries: SafeguardStore,
        dead_letters: CopyPort,
        queue: HidePort,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._deliveries = deliveries
        self._dead_letters = dead_letters
        self._queue = queue
        self._clock = clock
        self._sleep = sleep

    # Case 5: outcome writes under the lease, visibility within 12 h of the receive.

    def write_outcome(self, leased: Delivery, write: Callable[[], Delivery]) -> Delivery:
        """`write`, retried with backoff on a transient failure while the lease taken on `leased` lasts."""
        pause = OUTCOME_RETRY_FIRST_PAUSE
        while True:
            try:
                return write()
            except LeaseLost:
                raise
            except Exception as exc:
                left = (leased.lease_expires_at or 0.0) - self._clock().timestamp()
                if permanent_failure(exc) is not None or left < pause + LEASE_MARGIN_SECONDS:
                    raise
                logger.warning("delivery %s: outcome write failed, retrying under the lease", leased.delivery_id)
                self._sleep(pause)
                pause = min(pause * 2, OUTCOME_RETRY_MAX_PAUSE)

    def hide(self, receipt_handle: str, seconds: float, received_at: datetime | None) -> int:
        """Hide the message for `seconds`, at most until 12 h after its receive; the visibility asked for."""
        visibility = visibility_within_receive(seconds, received_at, self._clock())
        self._queue.change_visibility(receipt_handle, visibility)
        return visibility

    # Case 3: the DLQ copy before the acknowledgement.

    def dead_letter(self, leased: Delivery, owner: str, attempt: Attempt, reason: str, now: datetime) -> DeadLettered:
        """Send the copy, then write `dead_lettered` (with `dlq_copy_sent` when the copy went out)."""
        copy_sent = self._send_copy(leased, (*leased.attempts, attempt), reason, format_timestamp(now))
        updated = self.write_outcome(
            leased,
            lambda: self._deliveries.record_dead_letter(
                leased.delivery_id, owner, attempt, reason, now, copy_sent=copy_sent
            ),
        )
        return DeadLettered(updated, copy_sent)

    @staticmethod
    def owes_copy(record: Delivery) -> bool:
        return record.state == DeliveryState.DEAD_LETTERED and not record.dlq_copy_sent

    def send_owed_copy(self, record: Delivery) -> bool:
        """Send the copy a dead-lettered record still owes and confirm it; False if the send failed."""
        at = record.dead_lettered_at or format_timestamp(self._clock())
        if not self._send_copy(record, record.attempts, record.reason or "dead_lettered", at):
            return False
        self._deliveries.mark_dlq_copy_sent(record.delivery_id, self._clock())
        return True

    def _send_copy(self, record: Delivery, attempts: Sequence[Attempt], reason: str, at: str) -> bool:
        last_status_code = next((a.status_code for a in reversed(attempts) if a.status_code is not None), None)
        body = dead_letter_message(
            delivery_id=record.delivery_id,
            affiliate_id=record.affiliate_id,
            postback_id=record.postback_id,
            conversion_id=record.conversion_id,
            conversion_status=record.conversion_status,
            target_host=record.target_host,
            reason=reason,
            last_status_code=last_status_code,
            attempts=bounded_attempts([item.to_dict() for item in attempts]),
            created_at=record.created_at,
            dead_lettered_at=at,
        )
        try:
            self._dead_letters.send(
                body, dead_letter_attributes(record.affiliate_id, record.postback_id, reason, last_status_code)
            )
        except Exception:
            logger.warning("delivery %s: the DLQ copy was not sent; the message returns", record.delivery_id)
            return False
        return True

    # Case 4: the receive budget and messages the queue may move.

    def duplicate_of_live_lease(self, message_id: str, current: Delivery, now: datetime) -> bool:
        """Another message holds a live lease on the delivery: this one is a duplicate, safe to acknowledge."""
        if current.state != DeliveryState.IN_FLIGHT or (current.lease_expires_at or 0.0) <= now.timestamp():
            return False
        holder = lease_owner_message(current.lease_owner)
        return holder is not None and holder != message_id

    def note_receive(self, delivery_id: str, receive_count: int) -> None:
        """Index a delivery whose message was received often enough to be moved to the DLQ soon (best effort)."""
        if receive_count < AT_RISK_RECEIVE_COUNT:
            return
        try:
            self._deliveries.mark_at_risk(delivery_id, self._clock())
        except Exception:
            logger.warning("delivery %s: could not index it as at risk", delivery_id, exc_info=True)
