"""The sender: a batch of deliveries-queue messages -> GETs -> delivered, retried, dead-lettered or cancelled.

A batch goes through three phases (docs/sender.md, one batch step by step):

1. parse each body; a malformed one goes to the deliveries DLQ (`malformed_message`) and is
   acknowledged: it is never lost and never blocks the queue;
2. take the leases, concurrently: one conditional UpdateItem per delivery that returns the record
   (`ReturnValues ALL_NEW`), so the happy path reads no delivery record. A refused lease is
   explained by one consistent read: no record -> DLQ (`unknown_delivery`); finished ->
   acknowledged without a GET; not yet due (a duplicate message) -> the message hidden for the
   remaining wait; leased elsewhere -> left alone, so a message seen twice never produces two GETs;
3. read every distinct postback of the leased deliveries with one consistent BatchGetItem -- after
   the leases, so a delete or disable that lands before a lease is always seen -- then, per delivery:
   deleted or disabled -> `cancelled`; otherwise wait for a slot of its host (at most
   `per_host_concurrency` GETs at a time per host), read the postback again if the batch read is
   older than `POSTBACK_RECHECK_SECONDS` by then, GET through the pinned HTTP client, classify,
   log the attempt on the record (conditional on the lease) and act: delivered -> acknowledge
   (postback health written only when it changes, `success_changes_health`); retryable ->
   `retrying`, the message hidden for the wait (ChangeMessageVisibility) and reported as a batch
   item failure so it comes back then; terminal, exhausted or past the deadline -> `dead_lettered`,
   a copy with reason and history sent to the DLQ, acknowledged.

Per batch on the happy path: one UpdateItem per delivery for the lease, one BatchGetItem of the
postbacks, one UpdateItem per delivery for the outcome, a health UpdateItem only when the health
changes. Paused hosts (`sender.hosts`) get no GET; a slow GET's invocation backfills (`sender.backfill`).

"Acknowledged" means reported as a success of the batch: Lambda (or the local poller) deletes it.
Any other failure of one message reports that message only; its lease expires and the message
returns after the queue's visibility timeout.
"""

from __future__ import annotations

import json
import logging
import math
import random
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from functions.core.attempts import HttpGetter, HttpOutcomeView, attempt_of, header, with_next
from functions.core.classification import REASON_POSTBACK_DELETED, REASON_POSTBACK_DISABLED, classify
from functions.core.messages import (
    REASON_MALFORMED_MESSAGE,
    REASON_UNKNOWN_DELIVERY,
    delivery_id_of,
    malformed_message_dead_letter,
    set_aside_attributes,
    unknown_delivery_dead_letter,
)
from functions.core.metrics import Metric, MetricsBatch
from functions.core.model import (
    TERMINAL_STATES,
    Attempt,
    Delivery,
    DeliveryState,
    Postback,
    format_timestamp,
    parse_timestamp,
    utc_now,
)
from functions.core.schedule import RetryPolicy, Uniform, decide_retry, parse_retry_after
from functions.core.signing import attempt_url
from functions.logs import Event, Outcome, log_event
from functions.sender.backfill import Backfill, SlowGets
from functions.sender.batch import BatchState, HostLimits
from functions.sender.hosts import Hold, HostGuard
from functions.sender.ports import (
    DeadLetterPort,
    DeliveryStore,
    Disposition,
    HealthStore,
    IncomingMessage,
    PostbackReader,
    VisibilityPort,
)
from functions.sender.report import BatchReport
from functions.sender.safeguards import SenderSafeguards
from functions.storage.deliveries import LeaseLost
from functions.storage.postback_health import PostbackHealthError

logger = logging.getLogger(__name__)

# `reason` of a message whose processing failed, or left for lack of time or for a slow GET to its host
# in this invocation (docs/observability.md#logs).
READ, LOST, LATE, HOST_SLOW = "postbacks_read_failed", "lease_lost", "out_of_time", "host_slow"
# A delivery due within this much is sent now: SQS visibility has a granularity of one second.
DUE_TOLERANCE_SECONDS = 1.0
# Do not start a GET unless the invocation has this much time left beyond the GET's own deadline.
INVOCATION_MARGIN_SECONDS = 5.0
# A GET that starts later than this after the batch read of the postbacks (it waited for a host
# slot) reads its postback again first, so a delete or disable stops it however long it waited.
POSTBACK_RECHECK_SECONDS = 1.0


class DeliverySender:
    def __init__(
        self,
        *,
        deliveries: DeliveryStore,
        postbacks: PostbackReader,
        health: HealthStore,
        http: HttpGetter,
        queue: VisibilityPort,
        dead_letters: DeadLetterPort,
        policy: RetryPolicy,
        hosts: HostGuard | None = None,
        backfill: Backfill | None = None,
        max_concurrency: int = 50,
        per_host_concurrency: int = 10,
        lease_seconds: float = 30.0,
        request_deadline_seconds: float = 10.0,
        clock: Callable[[], datetime] = utc_now,
        uniform: Uniform = random.uniform,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._deliveries = deliveries
        self._guards = SenderSafeguards(
            deliveries=deliveries, dead_letters=dead_letters, queue=queue, clock=clock, sleep=sleep
        )
        self._postbacks = postbacks
        self._health = health
        self._http = http
        self._queue = queue
        self._dead_letters = dead_letters
        self._policy = policy
        self._hosts = hosts  # the host pause (docs/sender.md); None: no pausing
        self._backfill = backfill  # work taken while a slow GET holds the invocation; None: none
        self._max_concurrency = max(1, max_concurrency)
        self._per_host = max(1, per_host_concurrency)
        self._lease_seconds = lease_seconds
        self._request_deadline_seconds = request_deadline_seconds
        self._min_remaining_ms = (request_deadline_seconds + INVOCATION_MARGIN_SECONDS) * 1000
        self._clock = clock
        self._uniform = uniform
        self._monotonic = monotonic

    def process_batch(
        self,
        messages: Sequence[IncomingMessage],
        remaining_ms: Callable[[], int] | None = None,
        metrics: MetricsBatch | None = None,
    ) -> list[str]:
        """Process a batch; the IDs of the messages to report as batch item failures, in batch order.

        Each message's outcome is logged (`delivery.outcome`) and counted in `metrics` (the handler
        flushes it); one `sender.batch` line at the end.
        """
        report = BatchReport(metrics)
        after = self._backfill.after_seconds if self._backfill else None
        gets = SlowGets(after, self._request_deadline_seconds, self._monotonic)
        own = partial(self._handle, messages, remaining_ms, report, gets)
        if self._backfill is None:
            failed, taken = own(), 0
        else:  # while a slow GET holds the invocation, it takes more messages from the queue
            handle = partial(self._handle, remaining_ms=remaining_ms, report=report, gets=gets)
            failed, taken = self._backfill.run(own, handle, gets, partial(self._out_of_time, remaining_ms))
        report.batch_line(len(messages), taken)
        if metrics is not None and self._hosts is not None:  # hosts this container paused since the last batch
            metrics.count(Metric.HOST_PAUSES, self._hosts.drain_pauses())
        return [message.message_id for message in messages if message.message_id in failed]

    def _handle(
        self,
        messages: Sequence[IncomingMessage],
        remaining_ms: Callable[[], int] | None,
        report: BatchReport,
        gets: SlowGets,
    ) -> set[str]:
        """Process messages as one batch; the IDs of those not to acknowledge."""
        batch_start = self._clock()
        received = [m if m.received_at else replace(m, received_at=batch_start) for m in messages]
        failed: set[str] = set()
        parsed: list[tuple[IncomingMessage, str]] = []
        for message in received:
            delivery_id = self._delivery_id(message)
            if delivery_id is None:
                if not self._guarded(message, partial(self._dead_letter_malformed, message, report), report, None):
                    failed.add(message.message_id)
                continue
            parsed.append((message, delivery_id))
        if parsed:
            failed.update(self._process_parsed(parsed, remaining_ms, report, gets))
        return failed

    def _process_parsed(
        self,
        parsed: list[tuple[IncomingMessage, str]],
        remaining_ms: Callable[[], int] | None,
        report: BatchReport,
        gets: SlowGets,
    ) -> list[str]:
        workers = min(self._max_concurrency, len(parsed))
        lease_seconds = self._batch_lease_seconds(len(parsed))
        failed: list[str] = []
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sender") as pool:
            # Phase 2: the leases.
            lease_futures = [
                (message, pool.submit(self._lease_guarded, message, delivery_id, lease_seconds, remaining_ms, report))
                for message, delivery_id in parsed
            ]
            leases: list[_Lease] = []
            for message, lease_future in lease_futures:
                outcome = lease_future.result()
                if isinstance(outcome, _Lease):
                    leases.append(outcome)
                elif outcome is not Disposition.ACKNOWLEDGE:
                    failed.append(message.message_id)
            if not leases:
                return failed
            # Phase 3: the postbacks, read after the leases and before any GET; then the GETs.
            try:
                postback_ids = list(dict.fromkeys(lease.record.postback_id for lease in leases))
                if self._hosts is None:
                    postbacks = self._postbacks.get_many(postback_ids)
                else:  # the same BatchGetItem reads the states of the batch's hosts
                    postbacks = self._hosts.read_with_postbacks(postback_ids, [lease.record.url for lease in leases])
            except Exception as exc:
                log_event(logger, Event.POSTBACKS_READ_FAILED, logging.ERROR, exc_info=True, reason=type(exc).__name__)
                for lease in leases:
                    report.failure(lease.message.message_id, READ, record=lease.record)
                return failed + [lease.message.message_id for lease in leases]
            batch = BatchState(HostLimits(self._per_host), self._monotonic(), remaining_ms, gets)
            send_futures = [
                (
                    lease.message,
                    pool.submit(
                        self._guarded,
                        lease.message,
                        partial(self._send, lease, postbacks.get(lease.record.postback_id), batch, report),
                        report,
                        lease.record,
                    ),
                )
                for lease in leases
            ]
            failed.extend(message.message_id for message, send_future in send_futures if not send_future.result())
        return failed

    def _batch_lease_seconds(self, deliveries: int) -> float:
        """The lease covers the wait for a host slot: one GET deadline per wave ahead (all on one host at worst)."""
        waves = math.ceil(deliveries / min(self._per_host, self._max_concurrency))
        return self._lease_seconds + (waves - 1) * self._request_deadline_seconds

    # One message.

    def _guarded(
        self, message: IncomingMessage, work: Callable[[], Disposition], report: BatchReport, record: Delivery | None
    ) -> bool:
        """Run the work for one message; True to acknowledge it. A failure affects this message only."""
        try:
            return work() is Disposition.ACKNOWLEDGE
        except Exception as exc:
            report.failure(message.message_id, exc, record=record)
            return False

    def _delivery_id(self, message: IncomingMessage) -> str | None:
        try:
            return delivery_id_of(json.loads(message.body))
        except ValueError:
            return None

    def _dead_letter_malformed(self, message: IncomingMessage, report: BatchReport) -> Disposition:
        at = format_timestamp(self._clock())
        self._dead_letters.send(
            malformed_message_dead_letter(message.message_id, message.body, at),
            set_aside_attributes(REASON_MALFORMED_MESSAGE),
        )
        report.outcome(Outcome.SET_ASIDE, message_id=message.message_id, reason=REASON_MALFORMED_MESSAGE)
        return Disposition.ACKNOWLEDGE

    def _lease_guarded(
        self,
        message: IncomingMessage,
        delivery_id: str,
        lease_seconds: float,
        remaining_ms: Callable[[], int] | None,
        report: BatchReport,
    ) -> _Lease | Disposition:
        try:
            return self._lease(message, delivery_id, lease_seconds, remaining_ms, report)
        except Exception as exc:
            report.failure(message.message_id, exc, delivery_id=delivery_id)
            return Disposition.RETURN_LATER

    def _lease(
        self,
        message: IncomingMessage,
        delivery_id: str,
        lease_seconds: float,
        remaining_ms: Callable[[], int] | None,
        report: BatchReport,
    ) -> _Lease | Disposition:
        if self._out_of_time(remaining_ms):
            # Not enough time left for a GET: let the message come back at once, unleased.
            self._queue.change_visibility(message.receipt_handle, 0)
            report.outcome(Outcome.SKIPPED, message_id=message.message_id, delivery_id=delivery_id, reason=LATE)
            return Disposition.RETURN_LATER
        now = self._clock()
        self._guards.note_receive(delivery_id, message.receive_count)
        owner = f"{message.message_id}:{secrets.token_hex(8)}"
        leased = self._deliveries.acquire_lease(
            delivery_id, owner, now, lease_seconds, now + timedelta(seconds=DUE_TOLERANCE_SECONDS)
        )
        if leased is None:
            return self._lease_refused(message, delivery_id, report)
        return _Lease(message, leased, owner)

    def _lease_refused(self, message: IncomingMessage, delivery_id: str, report: BatchReport) -> Disposition:
        """Why the lease was refused, from one consistent read of the record, and what to do about it."""
        current = self._deliveries.get(delivery_id)
        if current is None:
            return self._dead_letter_unknown(message, delivery_id, report)
        skipped = partial(report.outcome, Outcome.SKIPPED, message_id=message.message_id, record=current)
        if current.state in TERMINAL_STATES:
            if self._guards.owes_copy(current) and not self._guards.send_owed_copy(current):
                skipped(reason="dlq_copy_owed")  # not acknowledged until the copy is sent
                return Disposition.RETURN_LATER
            skipped(reason=f"already_{current.state.value}")
            return Disposition.ACKNOWLEDGE
        if current.next_attempt_at is not None:
            remaining = (parse_timestamp(current.next_attempt_at) - self._clock()).total_seconds()
            if remaining > DUE_TOLERANCE_SECONDS:
                hidden = self._guards.hide(message.receipt_handle, remaining, message.received_at)
                skipped(reason="not_due", retry_in_seconds=hidden)
                return Disposition.RETURN_LATER
        if self._guards.duplicate_of_live_lease(message.message_id, current, self._clock()):
            skipped(reason="duplicate_message")  # the lease holder's message carries the delivery on
            return Disposition.ACKNOWLEDGE
        skipped(reason="leased_elsewhere")
        return Disposition.RETURN_LATER

    def _out_of_time(self, remaining_ms: Callable[[], int] | None) -> bool:
        return remaining_ms is not None and remaining_ms() < self._min_remaining_ms

    def _send(self, lease: _Lease, postback: Postback | None, batch: BatchState, report: BatchReport) -> Disposition:
        message, record, owner = lease.message, lease.record, lease.owner
        if postback is None or not postback.enabled:
            return self._cancel(lease, postback, report)
        # Read with the batch's postbacks (one BatchGetItem); a re-read below does not read it again.
        secret = postback.signing_secret
        with batch.limits.slot(record.target_host):
            if self._out_of_time(batch.remaining_ms):
                # The wait for a slot used up the invocation: give the lease back, the message returns at once.
                return self._give_back(lease, report, LATE, 0.0)
            if self._monotonic() - batch.postbacks_read_at > POSTBACK_RECHECK_SECONDS:
                postback = self._postbacks.get(record.postback_id)
                if postback is None or not postback.enabled:
                    return self._cancel(lease, postback, report)
            hold = Hold.SEND if self._hosts is None else self._hosts.hold(record, owner, message.receipt_handle)
            if hold is not Hold.SEND:  # its host is paused: no GET, no attempt spent
                waited = hold is Hold.WAITING
                outcome_of_hold = Outcome.SKIPPED if waited else Outcome.DEAD_LETTERED
                reason = "host_paused" if waited else "retry_deadline_passed"
                report.outcome(outcome_of_hold, message_id=message.message_id, record=record, reason=reason)
                return Disposition.RETURN_LATER if waited else Disposition.ACKNOWLEDGE
            # After the pause's gate: its wait is the longer one, and a pause outlasts this invocation.
            slow_wait = batch.gets.slow_wait(record.url)
            if slow_wait is not None:  # this invocation already had a slow GET to the host: none more
                return self._give_back(lease, report, HOST_SLOW, slow_wait + 1.0)
            started = self._clock()
            with batch.gets.tracking(record.url) as tracked:
                # `{timestamp}` and `{signature}` are filled for this attempt only; the record keeps them unfilled.
                outcome = self._http.get(attempt_url(record.url, secret, int(started.timestamp())))
                tracked.answered = outcome.status_code is not None
            report.get_duration(outcome.duration_ms)  # the HTTP client's own measure of the GET
            if self._hosts is not None:  # counted before the next GET to the host takes the slot
                self._hosts.record(record.url, outcome.status_code, outcome.error, self._clock())
        try:
            return self._conclude(message, record, owner, started, outcome, postback, batch, report)
        except LeaseLost:
            report.failure(message.message_id, LOST, record=record, attempt=len(record.attempts) + 1)
            return Disposition.RETURN_LATER

    def _give_back(self, lease: _Lease, report: BatchReport, reason: str, seconds: float) -> Disposition:
        """No GET now: the lease given back (no attempt spent), the message hidden for `seconds` (0: back at once)."""
        record, message = lease.record, lease.message
        released = DeliveryState.RETRYING if record.cycle_attempts > 0 else DeliveryState.PENDING
        self._deliveries.release_lease(record.delivery_id, lease.owner, released, self._clock())
        hidden = self._guards.hide(message.receipt_handle, seconds, message.received_at)
        report.outcome(
            Outcome.SKIPPED, message_id=message.message_id, record=record, reason=reason, retry_in_seconds=hidden
        )
        return Disposition.RETURN_LATER

    def _cancel(self, lease: _Lease, postback: Postback | None, report: BatchReport) -> Disposition:
        reason = REASON_POSTBACK_DELETED if postback is None else REASON_POSTBACK_DISABLED
        self._deliveries.cancel(lease.record.delivery_id, lease.owner, reason, self._clock())
        report.outcome(Outcome.CANCELLED, message_id=lease.message.message_id, record=lease.record, reason=reason)
        return Disposition.ACKNOWLEDGE

    def _conclude(
        self,
        message: IncomingMessage,
        record: Delivery,
        owner: str,
        started: datetime,
        outcome: HttpOutcomeView,
        postback: Postback,
        batch: BatchState,
        report: BatchReport,
    ) -> Disposition:
        classification = classify(outcome.status_code, outcome.error)
        finished = self._clock()
        retry_after_raw = header(outcome.headers, "Retry-After")
        number = len(record.attempts) + 1
        base = attempt_of(number, started, classification, outcome)
        concluded = partial(
            report.outcome,
            message_id=message.message_id,
            record=record,
            attempt=number,
            status_code=outcome.status_code,
            duration_ms=base.duration_ms,
        )
        if classification.delivered:
            self._guards.write_outcome(
                record, partial(self._deliveries.record_delivered, record.delivery_id, owner, base, finished)
            )
            concluded(Outcome.DELIVERED)
            if batch.health.success_to_write(postback, finished):
                self._update_health(record.postback_id, None, finished)
            return Disposition.ACKNOWLEDGE
        if classification.retryable:
            retry_after = parse_retry_after(retry_after_raw, finished) if classification.honours_retry_after else None
            decision = decide_retry(
                self._policy,
                attempts_made=record.cycle_attempts + 1,
                schedule_started_at=parse_timestamp(record.schedule_started_at or base.at),
                now=finished,
                apply_floor=classification.applies_floor,
                retry_after_seconds=retry_after,
                uniform=self._uniform,
            )
            if decision.wait_seconds is not None:
                next_at = finished + timedelta(seconds=decision.wait_seconds)
                attempt = with_next(base, format_timestamp(next_at))
                write = partial(self._deliveries.record_retry, record.delivery_id, owner, attempt, next_at, finished)
                self._guards.write_outcome(record, write)
                self._guards.hide(message.receipt_handle, decision.wait_seconds, message.received_at)
                concluded(Outcome.RETRIED, reason=classification.reason, retry_in_seconds=decision.wait_seconds)
                return Disposition.RETURN_LATER
            assert decision.stop_reason is not None
            disposition = self._dead_letter(record, owner, base, decision.stop_reason.value, finished, batch)
            concluded(Outcome.DEAD_LETTERED, reason=decision.stop_reason.value)
            return disposition
        reason = classification.reason or "terminal"
        disposition = self._dead_letter(record, owner, base, reason, finished, batch)
        concluded(Outcome.DEAD_LETTERED, reason=reason)
        return disposition

    def _dead_letter(
        self,
        record: Delivery,
        owner: str,
        attempt: Attempt,
        reason: str,
        now: datetime,
        batch: BatchState,
    ) -> Disposition:
        """The DLQ copy, then the record (`SenderSafeguards.dead_letter`); acknowledged only with the copy sent."""
        done = self._guards.dead_letter(record, owner, attempt, reason, now)
        batch.health.failure_written(record.postback_id)
        self._update_health(record.postback_id, reason, now)
        return Disposition.ACKNOWLEDGE if done.copy_sent else Disposition.RETURN_LATER

    def _dead_letter_unknown(self, message: IncomingMessage, delivery_id: str, report: BatchReport) -> Disposition:
        at = format_timestamp(self._clock())
        body = unknown_delivery_dead_letter(message.message_id, message.body, delivery_id, at)
        self._dead_letters.send(body, set_aside_attributes(REASON_UNKNOWN_DELIVERY))
        unknown = REASON_UNKNOWN_DELIVERY
        report.outcome(Outcome.SET_ASIDE, message_id=message.message_id, delivery_id=delivery_id, reason=unknown)
        return Disposition.ACKNOWLEDGE

    def _update_health(self, postback_id: str, failure_reason: str | None, at: datetime) -> None:
        """Best effort: the delivery's outcome is already recorded; health is a summary of it."""
        try:
            if failure_reason is None:
                self._health.record_success(postback_id, at)
            else:
                self._health.record_failure(postback_id, failure_reason, at)
        except PostbackHealthError as exc:
            failure = {"postback_id": postback_id, "reason": type(exc).__name__}
            log_event(logger, Event.HEALTH_NOT_UPDATED, logging.WARNING, exc_info=True, **failure)


@dataclass(frozen=True)
class _Lease:
    """A delivery this worker holds the lease on: the record as the lease wrote it."""

    message: IncomingMessage
    record: Delivery
    owner: str
