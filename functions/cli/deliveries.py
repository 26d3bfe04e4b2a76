"""The deliveries dead-letter queue and the deliveries table: inspect, redrive, purge, recover.

Every operation reads the DLQ through a `QueueScan` (messages held, then released untouched);
only a redrive or a purge deletes, and a redrive deletes a DLQ copy only after the delivery is
back on the deliveries queue with a reset record (protocol in `functions.core.redrive`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.cli.output import Progress
from functions.cli.pacing import Pacer
from functions.cli.scanning import DEFAULT_MAX_MESSAGES, QueueScan
from functions.core.messages import delivery_message
from functions.core.model import utc_now
from functions.core.redrive import (
    Action,
    DeadLetterEntry,
    DeadLetterFilter,
    DeliveryRecord,
    decide_for_message,
    decide_for_record,
    parse_delivery_dead_letter,
    recover_token,
)
from functions.storage.queues import Queue, ReceivedMessage
from functions.storage.redrive import DeliveryRedriveRepository

# Called after each step of a redrive with (step, delivery_id); steps: "claimed", "sent", "marked".
StepHook = Callable[[str, str], None]
# A claim that loses a race is re-read and decided again, a bounded number of times.
MAX_CLAIM_ROUNDS = 3


def _no_hook(step: str, delivery_id: str) -> None:
    return None


@dataclass(frozen=True)
class Outcome:
    item_id: str | None  # the delivery id (the conversion id for the evaluator DLQ)
    message_id: str | None
    result: str  # redriven | resumed | dropped | skipped | failed | would_<action> | deleted
    why: str


@dataclass
class RedriveReport:
    dry_run: bool
    examined: int = 0
    matched: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(outcome.result for outcome in self.outcomes))

    @property
    def incomplete(self) -> bool:
        """Some selected deliveries were neither brought back nor found already handled."""
        return any(outcome.result in ("failed", "skipped") for outcome in self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "examined": self.examined,
            "matched": self.matched,
            "counts": self.counts(),
            "outcomes": [outcome.__dict__ for outcome in self.outcomes],
        }


@dataclass(frozen=True)
class QueueStats:
    queue: str
    visible: int
    in_flight: int
    scanned: int
    oldest_sent_at: datetime | None
    oldest_age_seconds: float | None
    groups: dict[str, dict[str, int]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "approximate_depth": self.visible + self.in_flight,
            "visible": self.visible,
            "in_flight": self.in_flight,
            "scanned": self.scanned,
            "oldest_sent_at": self.oldest_sent_at.isoformat() if self.oldest_sent_at else None,
            "oldest_age_seconds": self.oldest_age_seconds,
            "groups": self.groups,
        }


def _queue_error_text(error: ClientError | BotoCoreError) -> str:
    if isinstance(error, ClientError):
        return f"{error.response.get('Error', {}).get('Code', 'ClientError')}"
    return type(error).__name__


class Enqueuer:
    """Steps 2 and 3 of a redrive: send the delivery to the deliveries queue, then mark the record."""

    def __init__(
        self,
        deliveries_queue: Queue,
        repository: DeliveryRedriveRepository,
        pacer: Pacer,
        clock: Callable[[], datetime],
        on_step: StepHook,
    ) -> None:
        self._queue = deliveries_queue
        self._repository = repository
        self._pacer = pacer
        self._clock = clock
        self._on_step = on_step

    def enqueue(self, record: DeliveryRecord, token: str) -> None:
        self._pacer.wait()
        self._queue.send(
            delivery_message(record.delivery_id),
            attributes={"affiliate_id": record.affiliate_id, "postback_id": record.postback_id},
        )
        self._on_step("sent", record.delivery_id)
        # False: the sender already dead-lettered it again (a newer entry, left alone) or it was marked.
        self._repository.mark_enqueued(record.delivery_id, token, self._clock())
        self._on_step("marked", record.delivery_id)


class DeliveryDeadLetters:
    def __init__(
        self,
        dlq: Queue,
        deliveries_queue: Queue,
        repository: DeliveryRedriveRepository,
        *,
        clock: Callable[[], datetime] = utc_now,
        hold_seconds: int = 300,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        wait_seconds: int = 1,
        on_step: StepHook = _no_hook,
    ) -> None:
        self._dlq = dlq
        self._deliveries_queue = deliveries_queue
        self._repository = repository
        self._clock = clock
        self._hold_seconds = hold_seconds
        self._max_messages = max_messages
        self._wait_seconds = wait_seconds
        self._on_step = on_step

    @property
    def queue_name(self) -> str:
        return self._dlq.name

    def _scan(self) -> QueueScan:
        return QueueScan(
            self._dlq, hold_seconds=self._hold_seconds, max_messages=self._max_messages, wait_seconds=self._wait_seconds
        )

    @staticmethod
    def _entry(message: ReceivedMessage) -> DeadLetterEntry:
        return parse_delivery_dead_letter(
            message.message_id, message.body, message.attributes, message.message_attributes
        )

    def stats(self, progress: Progress) -> QueueStats:
        depth = self._dlq.depth()
        groups: dict[str, Counter[str]] = {
            "reason": Counter(),
            "affiliate": Counter(),
            "postback": Counter(),
            "target_host": Counter(),
            "status_code": Counter(),
        }
        oldest: datetime | None = None
        with self._scan() as scan:
            for message in scan:
                entry = self._entry(message)
                groups["reason"][entry.reason] += 1
                groups["affiliate"][entry.affiliate_id or "-"] += 1
                groups["postback"][entry.postback_id or "-"] += 1
                groups["target_host"][entry.target_host or "-"] += 1
                groups["status_code"][str(entry.last_status_code) if entry.last_status_code else "-"] += 1
                if entry.sent_at is not None and (oldest is None or entry.sent_at < oldest):
                    oldest = entry.sent_at
                progress.advance()
            scanned = scan.seen
        progress.close()
        age = (self._clock() - oldest).total_seconds() if oldest is not None else None
        return QueueStats(
            queue=self._dlq.name,
            visible=depth["visible"],
            in_flight=depth["in_flight"],
            scanned=scanned,
            oldest_sent_at=oldest,
            oldest_age_seconds=age,
            groups={name: dict(counter.most_common()) for name, counter in groups.items()},
        )

    def entries(self, selection: DeadLetterFilter, limit: int | None, progress: Progress) -> list[DeadLetterEntry]:
        found: list[DeadLetterEntry] = []
        with self._scan() as scan:
            for message in scan:
                progress.advance()
                entry = self._entry(message)
                if selection.matches(entry):
                    found.append(entry)
                    if limit is not None and len(found) >= limit:
                        break
        progress.close()
        return found

    def find(self, identifier: str) -> DeadLetterEntry | None:
        """The DLQ message with this message id or delivery id (the oldest copy if several)."""
        matches: list[DeadLetterEntry] = []
        with self._scan() as scan:
            for message in scan:
                entry = self._entry(message)
                if identifier in (entry.message_id, entry.delivery_id):
                    matches.append(entry)
                    if entry.message_id == identifier:
                        break
        if not matches:
            return None
        return min(matches, key=lambda e: e.sent_at.timestamp() if e.sent_at else 0.0)

    def record(self, delivery_id: str) -> DeliveryRecord | None:
        return self._repository.get(delivery_id)

    def redrive(
        self,
        selection: DeadLetterFilter,
        *,
        limit: int | None,
        pacer: Pacer,
        dry_run: bool,
        progress: Progress,
    ) -> RedriveReport:
        report = RedriveReport(dry_run=dry_run)
        enqueuer = Enqueuer(self._deliveries_queue, self._repository, pacer, self._clock, self._on_step)
        handled: set[str] = set()
        with self._scan() as scan:
            for message in scan:
                report.examined += 1
                entry = self._entry(message)
                if not selection.matches(entry):
                    continue
                report.matched += 1
                outcome = self._redrive_one(scan, message, entry, enqueuer, handled, dry_run)
                report.outcomes.append(outcome)
                progress.advance(note=outcome.result)
                if limit is not None and report.matched >= limit:
                    break
        progress.close()
        return report

    def _redrive_one(
        self,
        scan: QueueScan,
        message: ReceivedMessage,
        entry: DeadLetterEntry,
        enqueuer: Enqueuer,
        handled: set[str],
        dry_run: bool,
    ) -> Outcome:
        delivery_id = entry.delivery_id
        for _ in range(MAX_CLAIM_ROUNDS):
            record = self._repository.get(delivery_id) if delivery_id is not None else None
            decision = decide_for_message(entry, record, self._clock().timestamp())
            if delivery_id in handled and decision.action in (Action.CLAIM, Action.RESEND):
                # The sender dead-lettered it again while this run went on: left for the next run.
                why = "dead-lettered again after this run redrove it"
                return Outcome(delivery_id, entry.message_id, "left_in_dlq", why)
            if dry_run:
                return Outcome(delivery_id, entry.message_id, f"would_{decision.action.value}", decision.why)
            if decision.action in (Action.SKIP_MISSING, Action.SKIP_BUSY, Action.SKIP_UNREADABLE):
                return Outcome(delivery_id, entry.message_id, "skipped", decision.why)
            if decision.action is Action.DROP:
                scan.delete(message)
                return Outcome(delivery_id, entry.message_id, "dropped", decision.why)
            if decision.action is Action.FINISH and delivery_id is not None:
                self._repository.mark_enqueued(delivery_id, entry.message_id, self._clock())
                scan.delete(message)
                return Outcome(delivery_id, entry.message_id, "resumed", decision.why)
            if record is None or delivery_id is None:
                return Outcome(delivery_id, entry.message_id, "skipped", "no delivery record")
            if decision.action is Action.CLAIM:
                if not self._repository.claim(record, entry.message_id, self._clock()):
                    continue  # someone else changed it first: read again, decide again
                self._on_step("claimed", delivery_id)
            handled.add(delivery_id)
            try:
                enqueuer.enqueue(record, entry.message_id)
            except (ClientError, BotoCoreError) as error:
                # The DLQ copy stays; the record says "claimed by this message": a re-run resends.
                return Outcome(delivery_id, entry.message_id, "failed", f"send failed: {_queue_error_text(error)}")
            scan.delete(message)
            result = "resumed" if decision.action is Action.RESEND else "redriven"
            return Outcome(delivery_id, entry.message_id, result, decision.why)
        return Outcome(delivery_id, entry.message_id, "skipped", "the record kept changing; run again")

    def purge(
        self, selection: DeadLetterFilter, *, limit: int | None, dry_run: bool, progress: Progress
    ) -> RedriveReport:
        """Delete the selected DLQ messages. Records stay dead-lettered: `recover` can still bring them back."""
        report = RedriveReport(dry_run=dry_run)
        with self._scan() as scan:
            for message in scan:
                report.examined += 1
                entry = self._entry(message)
                if not selection.matches(entry):
                    continue
                report.matched += 1
                if not dry_run:
                    scan.delete(message)
                result = "would_delete" if dry_run else "deleted"
                report.outcomes.append(Outcome(entry.delivery_id, entry.message_id, result, entry.reason))
                progress.advance()
                if limit is not None and report.matched >= limit:
                    break
        progress.close()
        return report


class Recovery:
    """`recover`: bring back dead-lettered deliveries found in the table, whether or not a DLQ copy is left.

    A DLQ copy of a recovered delivery is later recognised by `dlq redrive` (another token, the
    record no longer dead-lettered) and dropped without sending.
    """

    def __init__(
        self,
        deliveries_queue: Queue,
        repository: DeliveryRedriveRepository,
        *,
        run_id: str,
        clock: Callable[[], datetime] = utc_now,
        abandoned_after_seconds: float = 300.0,
        on_step: StepHook = _no_hook,
    ) -> None:
        self._deliveries_queue = deliveries_queue
        self._repository = repository
        self._token = recover_token(run_id)
        self._clock = clock
        self._abandoned_after = abandoned_after_seconds
        self._on_step = on_step

    def run(
        self,
        selection: DeadLetterFilter,
        *,
        since: datetime | None,
        until: datetime | None,
        limit: int | None,
        pacer: Pacer,
        dry_run: bool,
        progress: Progress,
    ) -> RedriveReport:
        report = RedriveReport(dry_run=dry_run)
        enqueuer = Enqueuer(self._deliveries_queue, self._repository, pacer, self._clock, self._on_step)
        seen: set[str] = set()
        for candidate in self._repository.dead_lettered(since, until):
            if candidate.delivery_id in seen:
                continue
            seen.add(candidate.delivery_id)
            report.examined += 1
            if not selection.matches_record(candidate):
                continue
            report.matched += 1
            outcome = self._recover_one(candidate, enqueuer, dry_run)
            report.outcomes.append(outcome)
            progress.advance(note=outcome.result)
            if limit is not None and report.matched >= limit:
                break
        progress.close()
        return report

    def _recover_one(self, candidate: DeliveryRecord, enqueuer: Enqueuer, dry_run: bool) -> Outcome:
        record: DeliveryRecord | None = candidate
        for _ in range(MAX_CLAIM_ROUNDS):
            if record is None:
                return Outcome(candidate.delivery_id, None, "skipped", "the record is gone")
            decision = decide_for_record(record, self._clock(), self._abandoned_after)
            if dry_run:
                return Outcome(record.delivery_id, None, f"would_{decision.action.value}", decision.why)
            if decision.action is Action.DROP:
                return Outcome(record.delivery_id, None, "dropped", decision.why)
            if decision.action is Action.FINISH and record.redrive_token is not None:
                self._repository.mark_enqueued(record.delivery_id, record.redrive_token, self._clock())
                return Outcome(record.delivery_id, None, "resumed", decision.why)
            if decision.action is not Action.CLAIM and decision.action is not Action.RESEND:
                return Outcome(record.delivery_id, None, "skipped", decision.why)
            token = self._token if decision.action is Action.CLAIM else (record.redrive_token or self._token)
            if decision.action is Action.CLAIM:
                if not self._repository.claim(record, token, self._clock()):
                    record = self._repository.get(record.delivery_id)  # the index copy was stale: read, decide again
                    continue
                self._on_step("claimed", record.delivery_id)
            try:
                enqueuer.enqueue(record, token)
            except (ClientError, BotoCoreError) as error:
                return Outcome(record.delivery_id, None, "failed", f"send failed: {_queue_error_text(error)}")
            result = "resumed" if decision.action is Action.RESEND else "redriven"
            return Outcome(record.delivery_id, None, result, decision.why)
        return Outcome(candidate.delivery_id, None, "skipped", "the record kept changing; run again")
