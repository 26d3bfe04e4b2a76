"""The evaluator's batch logic: stream records -> matched deliveries -> deliveries queue.

One batch is processed in three phases, so that the AWS requests stay at the floor (one postbacks
read per distinct affiliate, one conditional write per new delivery, one SendMessageBatch per ten
deliveries) while a failure can still be reported as one stream position:

1. parse every record (pure); read the table's rules version once (if the batch has a status
   change and the rules cache is on) and then each distinct affiliate's postbacks once, through
   the rules cache, in record order;
2. in record order: send malformed records (and render failures) to the evaluator DLQ, match,
   render and create the deliveries (conditional writes);
3. enqueue the new deliveries (and existing ones still `pending`, see `DeliveryRepository`) in
   record order, ten per SendMessageBatch.

Failure semantics (Lambda `ReportBatchItemFailures` on a stream): Lambda retries from the lowest
reported sequence number, so the result names at most one record — the earliest record whose work
is not complete. Every record before it has its deliveries written *and* enqueued (or its dead
letter sent); for records from it on, whatever was done is safe to do again (the conditional write
refuses a second delivery; a `pending` delivery is enqueued again and the sender's lease makes the
duplicate message harmless).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from functions.core.matching import (
    DEFAULT_MAX_URL_BYTES,
    NOTHING,
    REASON_URL_TOO_LONG,
    MatchResult,
    earlier_deliveries,
    latest_edit,
    match_change,
)
from functions.core.messages import (
    dead_letter_attributes,
    delivery_message,
    evaluator_dead_letter_message,
    unsent_delivery_dead_letter,
)
from functions.core.metrics import Metric, MetricsBatch, RecordDeadLetterReason
from functions.core.model import PlannedDelivery, Postback, format_timestamp, utc_now
from functions.evaluator.ports import (
    BatchResult,
    DeliveryStore,
    MessageQueue,
    PostbackSource,
    RulesVersionSource,
    WriteMap,
)
from functions.evaluator.records import RecordItem, parse_record, record_ids, sequence_number
from functions.evaluator.rules_cache import RulesCache
from functions.logs import Event, log_event
from functions.storage.deliveries import CreateOutcome
from functions.storage.errors import permanent_failure
from functions.storage.queues import SQS_BATCH_LIMIT, OutgoingMessage, QueueSendError

logger = logging.getLogger(__name__)


# A named tuple made for every record or delivery is made with `tuple.__new__` (as its `_make`
# does), about two-thirds of the cost of calling the class (its `__new__` is a Python function).
_new_tuple = tuple.__new__


class _Pending(NamedTuple):  # one per delivery
    """A planned delivery and the position in the batch of the record it came from."""

    position: int
    delivery: PlannedDelivery


class _Planned(NamedTuple):
    """What phase 1 read and what the batch's status changes match (the pure part of phase 2)."""

    rules: dict[str, tuple[Postback, ...]]  # each affiliate's postbacks, read once
    matches: dict[int, MatchResult | Exception]  # by record index; a match that raised keeps its exception
    deliveries: dict[str, PlannedDelivery]  # to write, by ID, in record order
    read_failed_at: int | None  # the index of the record whose affiliate's read failed (None: none)


@dataclass(frozen=True)
class _Written:
    """What writing a batch created, and the index of the first record whose write failed (None: none)."""

    pending: list[_Pending]
    created: int
    dead_lettered: int
    failed_at: int | None


class ConversionEvaluator:
    def __init__(
        self,
        *,
        postbacks: PostbackSource,
        deliveries: DeliveryStore,
        deliveries_queue: MessageQueue,
        dead_letter_queue: MessageQueue,
        rules_cache: RulesCache,
        delivery_ttl_days: int,
        clock: Callable[[], datetime] = utc_now,
        rules_versions: RulesVersionSource | None = None,
        deliveries_dead_letters: MessageQueue | None = None,
        max_url_bytes: int = DEFAULT_MAX_URL_BYTES,
        write_map: WriteMap = map,
    ) -> None:
        """`rules_versions` validates the rules cache (see `RulesCache`); without it the TTL alone applies.

        `deliveries_dead_letters` (the deliveries DLQ) takes the copy of a delivery recorded
        `url_too_long` (over `max_url_bytes`); without it such a record is reported for retry.
        """
        self._postbacks = postbacks
        self._delivery_dead_letters = deliveries_dead_letters
        self._max_url_bytes = max_url_bytes
        self._versions = rules_versions
        self._deliveries = deliveries
        self._queue = deliveries_queue
        self._dead_letters = dead_letter_queue
        self._rules = rules_cache
        self._ttl_days = delivery_ttl_days
        self._clock = clock
        self._write_map = write_map

    def process(self, records: Sequence[Mapping[str, Any]], metrics: MetricsBatch | None = None) -> BatchResult:
        """Evaluate one batch; counts go to `metrics` (the handler flushes it), one `evaluator.batch` line."""
        now = self._clock()
        items = [parse_record(index, record) for index, record in enumerate(records)]
        status_changes = len(items) - [item.change for item in items].count(None)
        planned = self._plan(items)
        limit = len(items) if planned.read_failed_at is None else planned.read_failed_at
        attempts = self._create_all(planned.deliveries, now)
        written = self._write(items[:limit], planned, attempts, now, metrics)
        enqueued, enqueue_failed_at = self._enqueue(written.pending)
        failures = [i for i in (planned.read_failed_at, written.failed_at, enqueue_failed_at) if i is not None]
        failed = None
        if failures:
            failed = sequence_number(items[min(failures)].record) or ""
        rules = planned.rules
        result = BatchResult(
            records=len(items),
            status_changes=status_changes,
            deliveries_created=written.created,
            deliveries_enqueued=enqueued,
            dead_lettered=written.dead_lettered,
            failed_sequence_number=failed,
        )
        if metrics is not None:
            metrics.count(Metric.EVALUATOR_RECORDS, result.records)
            metrics.count(Metric.STATUS_CHANGES, result.status_changes)
            metrics.count(Metric.DELIVERIES_CREATED, result.deliveries_created)
            metrics.count(Metric.EVALUATOR_RECORDS_REPORTED_FAILED, len(result.as_response()["batchItemFailures"]))
        log_event(
            logger,
            Event.EVALUATOR_BATCH,
            logging.INFO if failed is None else logging.WARNING,
            records=result.records,
            status_changes=result.status_changes,
            affiliates=len(rules),
            deliveries_created=result.deliveries_created,
            enqueued=result.deliveries_enqueued,
            dead_lettered=result.dead_lettered,
            failed_sequence_number=result.failed_sequence_number,
        )
        return result

    def _plan(self, items: Sequence[RecordItem]) -> _Planned:
        """Phase 1 and the pure part of phase 2, in one pass in record order: each distinct affiliate's
        postbacks, once (stopping at the first failing read), each status change's match, and the
        deliveries to write (once per ID; not those over the URL limit)."""
        rules: dict[str, tuple[Postback, ...]] = {}
        matches: dict[int, MatchResult | Exception] = {}
        planned: dict[str, PlannedDelivery] = {}
        too_long: set[str] = set()
        changes = [item for item in items if item.change is not None]
        if changes:
            self._observe_rules_version()
        get_rules = self._rules.get
        load = self._postbacks.list_for_affiliate
        max_url_bytes = self._max_url_bytes
        for item in changes:
            change = item.change
            assert change is not None
            affiliate_id = change.conversion.affiliate_id
            postbacks = rules.get(affiliate_id)
            if postbacks is None:
                try:
                    postbacks = rules[affiliate_id] = get_rules(affiliate_id, load)
                except Exception as exc:
                    log_event(
                        logger,
                        Event.RULES_READ_FAILED,
                        logging.ERROR,
                        exc_info=True,
                        affiliate_id=affiliate_id,
                        conversion_id=change.conversion.conversion_id,
                        sequence_number=sequence_number(item.record),
                        reason=type(exc).__name__,
                    )
                    return _Planned(rules, matches, planned, item.position)
            try:
                match = match_change(change, postbacks, max_url_bytes)
            except Exception as exc:
                matches[item.position] = exc
                continue
            matches[item.position] = match
            if match is NOTHING:
                continue
            if match.too_long:
                too_long.update(delivery.delivery_id for delivery in match.too_long)
            for delivery in match.deliveries:
                if delivery.delivery_id not in too_long:
                    planned.setdefault(delivery.delivery_id, delivery)
        return _Planned(rules, matches, planned, None)

    def _observe_rules_version(self) -> None:
        """Tell the rules cache the table's rules version (one GetItem); unknown if the read fails."""
        if self._versions is None or not self._rules.enabled:
            return
        try:
            version = self._versions.rules_version()
        except Exception as exc:
            # Not a batch failure: this batch falls back to the TTL (the cache's own bound).
            log_event(
                logger, Event.RULES_VERSION_READ_FAILED, logging.WARNING, exc_info=True, reason=type(exc).__name__
            )
            self._rules.observe(None)
            return
        self._rules.observe(version.number, version.changed_at)

    def _write(
        self,
        items: Sequence[RecordItem],
        planned: _Planned,
        attempts: Mapping[str, CreateOutcome | Exception],
        now: datetime,
        metrics: MetricsBatch | None,
    ) -> _Written:
        """Dead letters and conditional writes, in record order, up to the first record that fails.

        The conditional writes of the whole batch are made first, through `write_map` (concurrently
        in Lambda: each is a network round trip, and they are independent); their outcomes are
        then taken in record order, exactly as if each had been made in its turn. A write made for
        a record after the first failing one is safe to make again (see the module docstring).
        """
        rules, matches = planned.rules, planned.matches
        pending: list[_Pending] = []
        seen: set[str] = set()
        edits: dict[str, float] = {}  # per affiliate: its newest postback save (epoch seconds)
        created = dead_lettered = 0
        staleness = self._rules.max_staleness_seconds
        for item in items:
            try:
                if item.malformed_reason is not None:
                    malformed = RecordDeadLetterReason.MALFORMED
                    self._dead_letter(item.record, item.malformed_reason, now, malformed, metrics)
                    dead_lettered += 1
                    continue
                change = item.change
                if change is None:
                    continue
                affiliate_id = change.conversion.affiliate_id
                postbacks = rules[affiliate_id]
                match = matches[item.position]
                if match is not NOTHING:  # (most status changes fire nothing)
                    if isinstance(match, Exception):
                        raise match
                    for failure in match.failures:
                        self._dead_letter(
                            item.record,
                            f"{failure.reason} (postback {failure.postback_id})",
                            now,
                            RecordDeadLetterReason.RENDER_FAILED,
                            metrics,
                            postback_id=failure.postback_id,
                        )
                        dead_lettered += 1
                    for delivery in match.too_long:
                        if delivery.delivery_id not in seen:
                            seen.add(delivery.delivery_id)
                            self._record_url_too_long(delivery, now, metrics)
                    for delivery in match.deliveries:
                        # A flip-flop or a duplicate record within the batch: one write, one message.
                        if delivery.delivery_id in seen:
                            continue
                        attempt = attempts[delivery.delivery_id]
                        outcome = (
                            self._create(item, delivery, attempt, metrics, now)
                            if isinstance(attempt, Exception)
                            else attempt
                        )
                        seen.add(delivery.delivery_id)
                        if outcome is None:
                            dead_lettered += 1
                            continue
                        if outcome is CreateOutcome.CREATED:
                            created += 1
                        if outcome is not CreateOutcome.EXISTS_HANDLED:
                            pending.append(_new_tuple(_Pending, (item.position, delivery)))
                edited_at = edits.get(affiliate_id)
                if edited_at is None:
                    edited_at = edits[affiliate_id] = latest_edit(postbacks)
                if edited_at <= change.changed_at - staleness:
                    continue  # no edit recent enough to have changed what fires (`_requeue_earlier`)
                stranded = self._requeue_earlier(item, match, postbacks, edited_at, seen)
                pending.extend(stranded)
                if metrics is not None and stranded:
                    metrics.count(Metric.DELIVERIES_RE_ENQUEUED, len(stranded))
            except Exception as exc:
                if self._dead_letter_poison(item, exc, now, metrics):
                    dead_lettered += 1
                    continue
                log_event(
                    logger,
                    Event.RECORD_FAILED,
                    logging.ERROR,
                    exc_info=True,
                    sequence_number=sequence_number(item.record),
                    reason=type(exc).__name__,
                    **record_ids(item.record),
                )
                # Deliveries of this record already written stay pending: the retry enqueues them.
                kept = [p for p in pending if p.position < item.position]
                return _Written(kept, created, dead_lettered, item.position)
        return _Written(pending, created, dead_lettered, None)

    def _create_all(
        self, planned: Mapping[str, PlannedDelivery], now: datetime
    ) -> dict[str, CreateOutcome | Exception]:
        """The conditional write of each delivery the batch matches (once per ID), through `write_map`."""
        outcomes = self._write_map(lambda delivery: self._attempt_create(delivery, now), list(planned.values()))
        return dict(zip(planned, outcomes, strict=True))

    def _attempt_create(self, delivery: PlannedDelivery, now: datetime) -> CreateOutcome | Exception:
        try:
            return self._deliveries.create(delivery, now=now, ttl_days=self._ttl_days)
        except Exception as exc:
            return exc

    def _create(
        self,
        item: RecordItem,
        delivery: PlannedDelivery,
        attempt: CreateOutcome | Exception,
        metrics: MetricsBatch | None,
        now: datetime,
    ) -> CreateOutcome | None:
        """The write's outcome; None when DynamoDB refused this delivery for good (the record is dead-lettered)."""
        if not isinstance(attempt, Exception):
            return attempt  # (the caller takes a successful write's outcome itself)
        reason = permanent_failure(attempt)
        if reason is None:
            raise attempt
        self._dead_letter(
            item.record,
            f"delivery_rejected: {reason} (postback {delivery.postback_id})",
            now,
            RecordDeadLetterReason.REJECTED,
            metrics,
            postback_id=delivery.postback_id,
        )
        return None

    def _dead_letter_poison(
        self, item: RecordItem, exc: Exception, now: datetime, metrics: MetricsBatch | None
    ) -> bool:
        """A failure that can never pass for this record: set it aside in the evaluator DLQ, go on (True).
        Transient failures (throttling, 5xx, timeouts, anything unknown): False, the record is reported."""
        reason = permanent_failure(exc)
        if reason is None:
            return False
        try:
            reason = f"evaluation_failed: {reason}"
            self._dead_letter(item.record, reason, now, RecordDeadLetterReason.REJECTED, metrics)
        except Exception:
            logger.warning("the evaluator DLQ refused a record that cannot be evaluated", exc_info=True)
            return False
        return True

    def _record_url_too_long(self, delivery: PlannedDelivery, now: datetime, metrics: MetricsBatch | None) -> None:
        """A match whose URL is over the limit: recorded `dead_lettered` (`url_too_long`), a copy in the deliveries DLQ.

        The copy is confirmed on the record (`dlq_copy_sent`) only after it is sent; an exception
        (the copy not sent) reports the record, and the retry sends the copy the record still owes.
        """
        if not self._deliveries.create_dead_lettered(delivery, REASON_URL_TOO_LONG, now=now, ttl_days=self._ttl_days):
            return
        if self._delivery_dead_letters is None:
            raise RuntimeError("no deliveries DLQ to send the url_too_long copy to")
        self._delivery_dead_letters.send(
            unsent_delivery_dead_letter(delivery, REASON_URL_TOO_LONG, format_timestamp(now)),
            dead_letter_attributes(delivery.affiliate_id, delivery.postback_id, REASON_URL_TOO_LONG, None),
        )
        self._deliveries.mark_dlq_copy_sent(delivery.delivery_id, now)
        log_event(
            logger,
            Event.DELIVERY_OUTCOME,
            logging.WARNING,
            delivery_id=delivery.delivery_id,
            postback_id=delivery.postback_id,
            affiliate_id=delivery.affiliate_id,
            conversion_id=delivery.conversion_id,
            outcome="dead_lettered",
            reason=REASON_URL_TOO_LONG,
        )
        if metrics is not None:
            metrics.count(Metric.DELIVERIES_DEAD_LETTERED, reason=REASON_URL_TOO_LONG)

    def _requeue_earlier(
        self, item: RecordItem, match: MatchResult, postbacks: Sequence[Postback], edited_at: float, seen: set[str]
    ) -> list[_Pending]:
        """Still-`pending` deliveries an earlier evaluation made for postbacks that no longer fire (edited since):
        queued again. Reads nothing unless the affiliate's newest save (`edited_at`) is that recent."""
        change = item.change
        assert change is not None
        staleness = self._rules.max_staleness_seconds
        if edited_at <= change.changed_at - staleness:
            return []
        fired = {d.postback_id for d in (*match.deliveries, *match.too_long)}
        fired.update(failure.postback_id for failure in match.failures)
        candidates = [d for d in earlier_deliveries(change, postbacks, fired, staleness) if d not in seen]
        if not candidates:
            return []
        found = self._deliveries.pending_among(candidates)
        seen.update(delivery.delivery_id for delivery in found)
        return [_new_tuple(_Pending, (item.position, delivery)) for delivery in found]

    def _enqueue(self, pending: Sequence[_Pending]) -> tuple[int, int | None]:
        """Send in record order, ten per call; return (sent, index of the first record not fully sent)."""
        sent = 0
        chunks = math.ceil(len(pending) / SQS_BATCH_LIMIT)
        for number in range(chunks):
            chunk = pending[number * SQS_BATCH_LIMIT : (number + 1) * SQS_BATCH_LIMIT]
            try:
                self._queue.send_batch(
                    OutgoingMessage(
                        id=p.delivery.delivery_id,
                        body=delivery_message(p.delivery.delivery_id),
                        attributes={"affiliate_id": p.delivery.affiliate_id, "postback_id": p.delivery.postback_id},
                        # The postback's fire delay (0-900 s, within SQS's DelaySeconds limit).
                        delay_seconds=p.delivery.delay_seconds,
                    )
                    for p in chunk
                )
            except QueueSendError as exc:
                failed = set(exc.failed_ids)
                unsent = [p for p in chunk if p.delivery.delivery_id in failed] or list(chunk)
                sent += len(chunk) - len(unsent)
                log_event(logger, Event.ENQUEUE_FAILED, logging.ERROR, not_sent=len(unsent), reason="send_failed")
                return sent, min(p.position for p in unsent)
            except Exception as exc:
                log_event(
                    logger,
                    Event.ENQUEUE_FAILED,
                    logging.ERROR,
                    exc_info=True,
                    not_sent=len(chunk),
                    reason=type(exc).__name__,
                )
                return sent, min(p.position for p in chunk)
            sent += len(chunk)
        return sent, None

    def _dead_letter(
        self,
        record: Mapping[str, Any],
        reason: str,
        now: datetime,
        kind: RecordDeadLetterReason,
        metrics: MetricsBatch | None,
        postback_id: str | None = None,
    ) -> None:
        """Send the record whole to the evaluator DLQ with its `reason` (which the log line leaves out:
        a malformed value may be a placeholder value; the line names the `kind` and the ids)."""
        log_event(
            logger,
            Event.RECORD_DEAD_LETTERED,
            logging.WARNING,
            sequence_number=sequence_number(record),
            postback_id=postback_id,
            reason=kind,
            **record_ids(record),
        )
        source_arn = record.get("eventSourceARN")
        self._dead_letters.send(
            evaluator_dead_letter_message(
                record=dict(record),
                reason=reason,
                event_source_arn=source_arn if isinstance(source_arn, str) else None,
                sequence_number=sequence_number(record),
                at=format_timestamp(now),
            ),
            attributes={"kind": "conversion_record"},
        )
        if metrics is not None:
            metrics.count(Metric.RECORDS_DEAD_LETTERED, reason=kind)
