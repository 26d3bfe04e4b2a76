"""Rules of the on-call tools: which dead letters a filter selects, and what a redrive or a recovery
must do with each delivery. Pure: no AWS, no clock of its own. The messages of the dead-letter
queues are read by `functions.cli.dlq_messages`; the rules see them through the protocols below.

A redrive is four steps, each safe to interrupt:

1. *claim* — a conditional update of the delivery record (compare-and-set on its state and
   `updated_at`) resets its schedule, sets `redrive_token` to the DLQ message id (or the recovery
   run) and moves it to the `redriving` partition of the `by_dead_letter` index;
2. *send* — `{"v": 1, "delivery_id": ...}` to the deliveries queue;
3. *mark* — a conditional update (token still ours, still `redriving`) records `enqueued_at` and
   takes the delivery out of the index;
4. *delete* — the DLQ copy.

After a crash between 1 and 2 the record says "claimed by this message, not sent" and the DLQ
message reappears: the re-run sends. After a crash between 2 and 3 the re-run sends once more (the
sender's lease turns the duplicate into one GET) — unless the sender has already taken the
delivery out of `pending`, which proves the send: then it only marks. After 3 the re-run only
deletes the DLQ copy.
A DLQ copy of a delivery that someone else already brought back is recognised by its token and
dropped without sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from functions.core.dead_letter_index import AT_RISK_PARTITION, REDRIVING_PARTITION
from functions.core.messages import REASON_MALFORMED_MESSAGE, REASON_UNKNOWN_DELIVERY
from functions.core.model import ACTIVE_STATES, Delivery, DeliveryState, parse_timestamp

# Dead-lettered at match time, never attempted: nothing a redrive could send (`url_too_long`).
NEVER_SENT_REASONS = frozenset({"url_too_long"})
CLAIMABLE_STATES = frozenset({DeliveryState.DEAD_LETTERED, DeliveryState.FAILED})
FINISHED_STATES = frozenset({DeliveryState.DELIVERED, DeliveryState.CANCELLED})


class MessageKind(StrEnum):
    """What put a message in the deliveries DLQ."""

    DEAD_LETTER = "dead_letter"  # the sender, with reason and history (messages.dead_letter_message)
    MOVED = "moved"  # the queue's redrive policy moved a deliveries-queue message (crash loop)
    # The sender, for a deliveries-queue message it could not act on; the original body is kept.
    MALFORMED_MESSAGE = REASON_MALFORMED_MESSAGE  # the body names no delivery
    UNKNOWN_DELIVERY = REASON_UNKNOWN_DELIVERY  # the body names a delivery that had no record

    @property
    def redrivable(self) -> bool:
        """A redrive can bring the delivery back; the other kinds hold nothing to send."""
        return self in (MessageKind.DEAD_LETTER, MessageKind.MOVED)


class DeadLetter(Protocol):
    """What a filter reads of any dead-letter message."""

    @property
    def affiliate_id(self) -> str | None: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def at(self) -> datetime | None:
        """When it was dead-lettered."""


class DeliveryDeadLetter(DeadLetter, Protocol):
    """What the rules read of a deliveries-DLQ message."""

    @property
    def message_id(self) -> str: ...

    @property
    def kind(self) -> MessageKind: ...

    @property
    def delivery_id(self) -> str | None: ...

    @property
    def postback_id(self) -> str | None: ...

    @property
    def last_status_code(self) -> int | None: ...


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead-lettered deliveries an on-call engineer picked. Empty fields match everything."""

    affiliate_ids: frozenset[str] = frozenset()
    postback_ids: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    status_codes: frozenset[int] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def _time_matches(self, at: datetime | None) -> bool:
        if self.since is None and self.until is None:
            return True
        if at is None:
            return False
        if self.since is not None and at < self.since:
            return False
        return not (self.until is not None and at >= self.until)

    def _affiliate_and_reason_match(self, affiliate_id: str | None, reason: str | None) -> bool:
        if self.affiliate_ids and affiliate_id not in self.affiliate_ids:
            return False
        return not (self.reasons and reason not in self.reasons)

    def _delivery_fields_match(self, postback_id: str | None, status_code: int | None) -> bool:
        if self.postback_ids and postback_id not in self.postback_ids:
            return False
        return not (self.status_codes and status_code not in self.status_codes)

    def matches(self, entry: DeliveryDeadLetter) -> bool:
        return (
            self._affiliate_and_reason_match(entry.affiliate_id, entry.reason)
            and self._delivery_fields_match(entry.postback_id, entry.last_status_code)
            and self._time_matches(entry.at)
        )

    def matches_conversion(self, entry: DeadLetter) -> bool:
        """Evaluator DLQ: affiliate, reason and time apply (a record has no postback or status code)."""
        return self._affiliate_and_reason_match(entry.affiliate_id, entry.reason) and self._time_matches(entry.at)

    def matches_record(self, record: Delivery) -> bool:
        """Deliveries table (recover): affiliate, postback, reason, status code; time is the index range."""
        return self._affiliate_and_reason_match(record.affiliate_id, record.reason) and self._delivery_fields_match(
            record.postback_id, record.last_status_code
        )


class Action(StrEnum):
    CLAIM = "redrive"  # reset the record, send, mark, delete the DLQ copy
    RESEND = "resend"  # a half-done redrive of this very message: send, mark, delete
    FINISH = "finish"  # a half-done redrive the sender already picked up: mark, delete (no second send)
    DROP = "drop_stale_copy"  # the delivery is already back on the queue or finished: delete the DLQ copy only
    SKIP_MISSING = "skip_record_missing"  # no delivery record (expired or never written): leave it
    SKIP_BUSY = "skip_busy"  # a sender holds a live lease on it, or a redrive is in progress: leave it
    SKIP_UNREADABLE = "skip_unreadable"  # the message names no delivery: leave it
    LEAVE = "leave_in_dlq"  # the sender set the message aside (malformed, unknown delivery): nothing to send
    # An active delivery whose only message may be gone (moved to the DLQ, purged, expired): send it a
    # message, leave the record as it is (its schedule goes on; the sender's lease makes a duplicate harmless).
    REQUEUE = "requeue"
    DELETE = "delete"  # purge: the DLQ copy can go, the record keeps the delivery


@dataclass(frozen=True)
class Decision:
    """What a redrive or a recovery does with one dead letter or delivery, and why."""

    action: Action
    why: str


def decide_for_message(entry: DeliveryDeadLetter, record: Delivery | None, now_epoch: float) -> Decision:
    """What a redrive does with one deliveries-DLQ message, given the record as read just now."""
    if not entry.kind.redrivable:
        what = "body names no delivery" if entry.kind is MessageKind.MALFORMED_MESSAGE else "no record of its delivery"
        return Decision(Action.LEAVE, f"set aside by the sender ({what}); not redrivable: purge it")
    if entry.delivery_id is None:
        return Decision(Action.SKIP_UNREADABLE, "the message names no delivery")
    if record is None:
        return Decision(Action.SKIP_MISSING, "no delivery record (expired after its retention, or never written)")
    if record.redrive_token == entry.message_id:
        if record.dead_letter_partition == REDRIVING_PARTITION:
            if record.state != DeliveryState.PENDING:
                return Decision(Action.FINISH, "an interrupted redrive of this message was sent; the sender has it")
            return Decision(Action.RESEND, "an interrupted redrive of this message reset the record but did not finish")
        return Decision(Action.DROP, "this message was already redriven")
    if record.state in CLAIMABLE_STATES and record.reason in NEVER_SENT_REASONS:
        return Decision(Action.LEAVE, f"{record.reason}: the delivery can never be sent (its URL was not kept whole)")
    if record.state in CLAIMABLE_STATES:
        return Decision(Action.CLAIM, f"delivery is {record.state}")
    if record.state in FINISHED_STATES:
        return Decision(Action.DROP, f"delivery is already {record.state}")
    if record.state in ACTIVE_STATES:
        if entry.kind is MessageKind.DEAD_LETTER or record.dead_letter_partition == REDRIVING_PARTITION:
            return Decision(Action.DROP, f"delivery was already brought back ({record.state})")
        # Moved by the queue's redrive policy while the record was still active: it is stuck.
        if record.lease_expires_at is not None and record.lease_expires_at > now_epoch:
            return Decision(Action.SKIP_BUSY, "a sender holds a live lease on the delivery")
        return Decision(Action.CLAIM, f"delivery is stuck in {record.state} after its message left the queue")
    return Decision(Action.SKIP_UNREADABLE, f"unknown delivery state {record.state!r}")


def _live_lease(record: Delivery, now_epoch: float) -> bool:
    return record.lease_expires_at is not None and record.lease_expires_at > now_epoch


def decide_for_purge(entry: DeliveryDeadLetter, record: Delivery | None, now_epoch: float) -> Decision:
    """Whether `dlq purge` may just delete a deliveries-DLQ message, or must first queue its delivery again.

    A message the queue's redrive policy moved while its delivery was still active may be the only
    message of that delivery: deleting it would strand the record `pending`/`retrying` forever.
    """
    moved = entry.kind is MessageKind.MOVED
    if record is not None and moved and record.state in ACTIVE_STATES and not _live_lease(record, now_epoch):
        return Decision(Action.REQUEUE, f"delivery is still {record.state}: queued again before the copy is deleted")
    return Decision(Action.DELETE, entry.reason or "purged")


def decide_for_record(record: Delivery, now: datetime, abandoned_after_seconds: float) -> Decision:
    """What a recovery from the deliveries table does with one record of the `by_dead_letter` index."""
    if record.dead_letter_partition == AT_RISK_PARTITION and record.state in ACTIVE_STATES:
        if _live_lease(record, now.timestamp()):
            return Decision(Action.SKIP_BUSY, "a sender holds a live lease on the delivery")
        return Decision(Action.REQUEUE, f"delivery is still {record.state} and its message may have left the queue")
    if record.dead_letter_partition == REDRIVING_PARTITION:
        if record.state != DeliveryState.PENDING:
            return Decision(Action.FINISH, "an interrupted redrive was sent; the sender has it")
        claimed_at = parse_timestamp(record.updated_at)
        if (now - claimed_at).total_seconds() >= abandoned_after_seconds:
            return Decision(Action.RESEND, "a redrive reset the record but did not finish")
        return Decision(Action.SKIP_BUSY, "a redrive of it is in progress")
    if record.state in CLAIMABLE_STATES:
        return Decision(Action.CLAIM, f"delivery is {record.state}")
    return Decision(Action.DROP, f"delivery is {record.state}: nothing to recover")


def recover_token(run_id: str) -> str:
    return f"recover:{run_id}"
