"""The deliveries dead-letter queue and the deliveries table: inspect, redrive, purge, recover.

Every operation reads the DLQ through a `QueueScan` (messages held, then released untouched);
only a redrive or a purge deletes, and a redrive deletes a DLQ copy only after the delivery is
back on the deliveries queue with a reset record (protocol in `functions.core.redrive`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from enum import StrEnum
from typing import Unpack

from botocore.exceptions import BotoCoreError, ClientError

from functions.cli.dlq import DeadLetterQueue, Outcome, RedriveReport, Result, RunOptions, ScanOptions, act_on_selected
from functions.cli.dlq_messages import DeadLetterEntry, parse_delivery_dead_letter
from functions.cli.pacing import Pacer
from functions.cli.scanning import QueueScan
from functions.core.messages import delivery_message
from functions.core.model import Delivery, utc_now
from functions.core.redrive import (
    Action,
    DeadLetterFilter,
    decide_for_message,
    decide_for_purge,
    decide_for_record,
    recover_token,
)
from functions.storage.deliveries import DeliveryRepository
from functions.storage.queues import Queue, ReceivedMessage


class Step(StrEnum):
    """The steps of a redrive (`functions.core.redrive`) a `StepHook` is told about."""

    CLAIMED = "claimed"
    SENT = "sent"
    MARKED = "marked"


# Called after each step of a redrive with (step, delivery_id).
StepHook = Callable[[Step, str], None]
# A claim that loses a race is re-read and decided again, a bounded number of times.
MAX_CLAIM_ROUNDS = 3


def _no_hook(step: Step, delivery_id: str) -> None:
    return None


def _queue_error_text(error: ClientError | BotoCoreError) -> str:
    if isinstance(error, ClientError):
        return f"{error.response.get('Error', {}).get('Code', 'ClientError')}"
    return type(error).__name__


def requeue(queue: Queue, pacer: Pacer, record: Delivery) -> None:
    """Send an active delivery a message again, record untouched (`Action.REQUEUE`)."""
    pacer.wait()
    queue.send(
        delivery_message(record.delivery_id),
        attributes={"affiliate_id": record.affiliate_id, "postback_id": record.postback_id},
    )


class Enqueuer:
    """Steps 2 and 3 of a redrive: send the delivery to the deliveries queue, then mark the record."""

    def __init__(
        self,
        deliveries_queue: Queue,
        repository: DeliveryRepository,
        pacer: Pacer,
        clock: Callable[[], datetime],
        on_step: StepHook,
    ) -> None:
        self._queue = deliveries_queue
        self._repository = repository
        self._pacer = pacer
        self._clock = clock
        self._on_step = on_step

    def enqueue(self, record: Delivery, token: str) -> None:
        self._pacer.wait()
        self._queue.send(
            delivery_message(record.delivery_id),
            attributes={"affiliate_id": record.affiliate_id, "postback_id": record.postback_id},
        )
        self._on_step(Step.SENT, record.delivery_id)
        # False: the sender already dead-lettered it again (a newer entry, left alone) or it was marked.
        self._repository.mark_enqueued(record.delivery_id, token, self._clock())
        self._on_step(Step.MARKED, record.delivery_id)


class DeliveryDeadLetters(DeadLetterQueue[DeadLetterEntry]):
    GROUPS = ("reason", "kind", "affiliate", "postback", "target_host", "status_code")

    def __init__(
        self,
        dlq: Queue,
        deliveries_queue: Queue,
        repository: DeliveryRepository,
        *,
        on_step: StepHook = _no_hook,
        **options: Unpack[ScanOptions],
    ) -> None:
        super().__init__(dlq, **options)
        self._deliveries_queue = deliveries_queue
        self._repository = repository
        self._on_step = on_step

    def _entry(self, message: ReceivedMessage) -> DeadLetterEntry:
        return parse_delivery_dead_letter(
            message.message_id, message.body, message.attributes, message.message_attributes
        )

    def _selects(self, selection: DeadLetterFilter, entry: DeadLetterEntry) -> bool:
        return selection.matches(entry)

    def _item_id(self, entry: DeadLetterEntry) -> str | None:
        return entry.delivery_id

    def _identifiers(self, entry: DeadLetterEntry) -> tuple[str | None, ...]:
        return (entry.message_id, entry.delivery_id)

    def _group_values(self, entry: DeadLetterEntry) -> tuple[str, ...]:
        status_code = str(entry.last_status_code) if entry.last_status_code else "-"
        return (
            entry.reason,
            entry.kind.value,
            entry.affiliate_id or "-",
            entry.postback_id or "-",
            entry.target_host or "-",
            status_code,
        )

    def record(self, delivery_id: str) -> Delivery | None:
        return self._repository.get(delivery_id)

    def purge(self, selection: DeadLetterFilter, options: RunOptions) -> RedriveReport:
        """Delete the selected DLQ messages, but never the only message of an active delivery.

        A message the queue's redrive policy moved while its delivery was still `pending`/`retrying`
        is queued again on the deliveries queue before its copy is deleted (`decide_for_purge`).
        Dead-lettered records stay in the table: `recover` still finds them.
        """

        def purge_one(scan: QueueScan, message: ReceivedMessage, entry: DeadLetterEntry) -> Outcome:
            delivery_id = entry.delivery_id
            record = self._repository.get(delivery_id) if delivery_id is not None and entry.kind.redrivable else None
            decision = decide_for_purge(entry, record, self._clock().timestamp())
            requeue_first = decision.action is Action.REQUEUE and record is not None
            if options.dry_run:
                result = Result.WOULD_REQUEUE if requeue_first else Result.WOULD_DELETE
                return Outcome(delivery_id, entry.message_id, result, decision.why)
            if requeue_first and record is not None:
                try:
                    requeue(self._deliveries_queue, options.pacer, record)
                except (ClientError, BotoCoreError) as error:
                    why = f"send failed: {_queue_error_text(error)}; the copy is kept"
                    return Outcome(delivery_id, entry.message_id, Result.FAILED, why)
            scan.delete(message)
            return Outcome(
                delivery_id, entry.message_id, Result.REQUEUED if requeue_first else Result.DELETED, decision.why
            )

        return self._act(selection, purge_one, options)

    def redrive(self, selection: DeadLetterFilter, options: RunOptions) -> RedriveReport:
        enqueuer = Enqueuer(self._deliveries_queue, self._repository, options.pacer, self._clock, self._on_step)
        handled: set[str] = set()

        def redrive_one(scan: QueueScan, message: ReceivedMessage, entry: DeadLetterEntry) -> Outcome:
            return self._redrive_one(scan, message, entry, enqueuer, handled, options.dry_run)

        return self._act(selection, redrive_one, options)

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
            record = self._repository.get(delivery_id) if delivery_id is not None and entry.kind.redrivable else None
            decision = decide_for_message(entry, record, self._clock().timestamp())
            if delivery_id in handled and decision.action in (Action.CLAIM, Action.RESEND):
                # The sender dead-lettered it again while this run went on: left for the next run.
                why = "dead-lettered again after this run redrove it"
                return Outcome(delivery_id, entry.message_id, Result.LEFT_IN_DLQ, why)
            if dry_run:
                return Outcome(delivery_id, entry.message_id, Result.would(decision.action), decision.why)
            if decision.action is Action.LEAVE:  # nothing a re-run could send: not a partial run
                return Outcome(delivery_id, entry.message_id, Result.LEFT_IN_DLQ, decision.why)
            if decision.action in (Action.SKIP_MISSING, Action.SKIP_BUSY, Action.SKIP_UNREADABLE):
                return Outcome(delivery_id, entry.message_id, Result.SKIPPED, decision.why)
            if decision.action is Action.DROP:
                scan.delete(message)
                return Outcome(delivery_id, entry.message_id, Result.DROPPED, decision.why)
            if decision.action is Action.FINISH and delivery_id is not None:
                self._repository.mark_enqueued(delivery_id, entry.message_id, self._clock())
                scan.delete(message)
                return Outcome(delivery_id, entry.message_id, Result.RESUMED, decision.why)
            if record is None or delivery_id is None:
                return Outcome(delivery_id, entry.message_id, Result.SKIPPED, "no delivery record")
            if decision.action is Action.CLAIM:
                if not self._repository.claim(record, entry.message_id, self._clock()):
                    continue  # someone else changed it first: read again, decide again
                self._on_step(Step.CLAIMED, delivery_id)
            handled.add(delivery_id)
            try:
                enqueuer.enqueue(record, entry.message_id)
            except (ClientError, BotoCoreError) as error:
                # The DLQ copy stays; the record says "claimed by this message": a re-run resends.
                return Outcome(delivery_id, entry.message_id, Result.FAILED, f"send failed: {_queue_error_text(error)}")
            scan.delete(message)
            result = Result.RESUMED if decision.action is Action.RESEND else Result.REDRIVEN
            return Outcome(delivery_id, entry.message_id, result, decision.why)
        return Outcome(delivery_id, entry.message_id, Result.SKIPPED, "the record kept changing; run again")


class Recovery:
    """`recover`: bring back dead-lettered deliveries found in the table, whether or not a DLQ copy is left.

    A DLQ copy of a recovered delivery is later recognised by `dlq redrive` (another token, the
    record no longer dead-lettered) and dropped without sending.
    """

    def __init__(
        self,
        deliveries_queue: Queue,
        repository: DeliveryRepository,
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

    def run(self, selection: DeadLetterFilter, options: RunOptions) -> RedriveReport:
        """Recover the selected deliveries dead-lettered in [selection.since, selection.until)."""
        enqueuer = Enqueuer(self._deliveries_queue, self._repository, options.pacer, self._clock, self._on_step)
        return act_on_selected(
            self._distinct(self._repository.dead_lettered(selection.since, selection.until)),
            selection.matches_record,
            lambda candidate: self._recover_one(candidate, enqueuer, options),
            options,
        )

    @staticmethod
    def _distinct(records: Iterable[Delivery]) -> Iterator[Delivery]:
        """Each delivery once (the index may list one in both partitions)."""
        seen: set[str] = set()
        for record in records:
            if record.delivery_id not in seen:
                seen.add(record.delivery_id)
                yield record

    def _requeue(self, record: Delivery, options: RunOptions, why: str) -> Outcome:
        try:
            requeue(self._deliveries_queue, options.pacer, record)
        except (ClientError, BotoCoreError) as error:
            return Outcome(record.delivery_id, None, Result.FAILED, f"send failed: {_queue_error_text(error)}")
        return Outcome(record.delivery_id, None, Result.REQUEUED, why)

    def _recover_one(self, candidate: Delivery, enqueuer: Enqueuer, options: RunOptions) -> Outcome:
        dry_run = options.dry_run
        record: Delivery | None = candidate
        for _ in range(MAX_CLAIM_ROUNDS):
            if record is None:
                return Outcome(candidate.delivery_id, None, Result.SKIPPED, "the record is gone")
            decision = decide_for_record(record, self._clock(), self._abandoned_after)
            if dry_run:
                return Outcome(record.delivery_id, None, Result.would(decision.action), decision.why)
            if decision.action is Action.DROP:
                return Outcome(record.delivery_id, None, Result.DROPPED, decision.why)
            if decision.action is Action.REQUEUE:
                return self._requeue(record, options, decision.why)
            if decision.action is Action.FINISH and record.redrive_token is not None:
                self._repository.mark_enqueued(record.delivery_id, record.redrive_token, self._clock())
                return Outcome(record.delivery_id, None, Result.RESUMED, decision.why)
            if decision.action is not Action.CLAIM and decision.action is not Action.RESEND:
                return Outcome(record.delivery_id, None, Result.SKIPPED, decision.why)
            token = self._token if decision.action is Action.CLAIM else (record.redrive_token or self._token)
            if decision.action is Action.CLAIM:
                if not self._repository.claim(record, token, self._clock()):
                    record = self._repository.get(record.delivery_id)  # the index copy was stale: read, decide again
                    continue
                self._on_step(Step.CLAIMED, record.delivery_id)
            try:
                enqueuer.enqueue(record, token)
            except (ClientError, BotoCoreError) as error:
                return Outcome(record.delivery_id, None, Result.FAILED, f"send failed: {_queue_error_text(error)}")
            result = Result.RESUMED if decision.action is Action.RESEND else Result.REDRIVEN
            return Outcome(record.delivery_id, None, result, decision.why)
        return Outcome(candidate.delivery_id, None, Result.SKIPPED, "the record kept changing; run again")
