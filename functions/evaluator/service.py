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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from functions.core.conversion import MalformedRecordError, is_status_change, parse_change
from functions.core.matching import PlannedDelivery, match_change
from functions.core.messages import delivery_message, evaluator_dead_letter_message
from functions.core.model import ConversionChange, Postback, format_timestamp, utc_now
from functions.evaluator.rules_cache import RulesCache
from functions.storage.deliveries import CreateOutcome
from functions.storage.queues import SQS_BATCH_LIMIT, OutgoingMessage, QueueSendError

if TYPE_CHECKING:
    from functions.storage.postbacks import RulesVersion

logger = logging.getLogger(__name__)


class PostbackSource(Protocol):
    def list_for_affiliate(self, affiliate_id: str) -> list[Postback]: ...


class RulesVersionSource(Protocol):
    def rules_version(self) -> RulesVersion: ...


class DeliveryStore(Protocol):
    def create(self, planned: PlannedDelivery, *, now: datetime, ttl_days: int) -> CreateOutcome: ...


class MessageQueue(Protocol):
    def send(self, body: dict[str, Any], attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str: ...

    def send_batch(self, messages: Iterable[OutgoingMessage]) -> None: ...


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one batch; `failed_sequence_number` is where Lambda must retry from."""

    records: int
    status_changes: int
    deliveries_created: int
    deliveries_enqueued: int
    dead_lettered: int
    failed_sequence_number: str | None

    def as_response(self) -> dict[str, list[dict[str, str]]]:
        if self.failed_sequence_number is None:
            return {"batchItemFailures": []}
        return {"batchItemFailures": [{"itemIdentifier": self.failed_sequence_number}]}


@dataclass(frozen=True)
class _Item:
    index: int
    record: Mapping[str, Any]
    change: ConversionChange | None  # None: nothing to evaluate (REMOVE, no status change, malformed)
    malformed_reason: str | None


@dataclass(frozen=True)
class _Pending:
    index: int
    delivery: PlannedDelivery


@dataclass(frozen=True)
class _Written:
    pending: list[_Pending]
    created: int
    dead_lettered: int
    failed_at: int | None


def sequence_number(record: Mapping[str, Any]) -> str | None:
    stream = record.get("dynamodb")
    value = stream.get("SequenceNumber") if isinstance(stream, Mapping) else None
    return value if isinstance(value, str) else None


def _parse(index: int, record: Mapping[str, Any]) -> _Item:
    try:
        change = parse_change(record)
    except MalformedRecordError as exc:
        return _Item(index, record, None, exc.reason)
    if change is not None and not is_status_change(change):
        change = None
    return _Item(index, record, change, None)


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
    ) -> None:
        """`rules_versions` validates the rules cache (see `RulesCache`); without it the TTL alone applies."""
        self._postbacks = postbacks
        self._versions = rules_versions
        self._deliveries = deliveries
        self._queue = deliveries_queue
        self._dead_letters = dead_letter_queue
        self._rules = rules_cache
        self._ttl_days = delivery_ttl_days
        self._clock = clock

    def process(self, records: Sequence[Mapping[str, Any]]) -> BatchResult:
        now = self._clock()
        items = [_parse(index, record) for index, record in enumerate(records)]
        rules, read_failed_at = self._load_rules(items)
        limit = len(items) if read_failed_at is None else read_failed_at
        written = self._write(items[:limit], rules, now)
        enqueued, enqueue_failed_at = self._enqueue(written.pending)
        failures = [index for index in (read_failed_at, written.failed_at, enqueue_failed_at) if index is not None]
        failed = None
        if failures:
            failed = sequence_number(items[min(failures)].record) or ""
        result = BatchResult(
            records=len(items),
            status_changes=sum(1 for item in items if item.change is not None),
            deliveries_created=written.created,
            deliveries_enqueued=enqueued,
            dead_lettered=written.dead_lettered,
            failed_sequence_number=failed,
        )
        logger.info(
            "evaluated batch: records=%d status_changes=%d affiliates=%d created=%d enqueued=%d "
            "dead_lettered=%d failed_sequence_number=%s",
            result.records,
            result.status_changes,
            len(rules),
            result.deliveries_created,
            result.deliveries_enqueued,
            result.dead_lettered,
            result.failed_sequence_number,
        )
        return result

    def _load_rules(self, items: Sequence[_Item]) -> tuple[dict[str, tuple[Postback, ...]], int | None]:
        """Each distinct affiliate's postbacks, once, in record order; stop at the first failing read."""
        rules: dict[str, tuple[Postback, ...]] = {}
        if any(item.change is not None for item in items):
            self._observe_rules_version()
        for item in items:
            if item.change is None:
                continue
            affiliate_id = item.change.conversion.affiliate_id
            if affiliate_id in rules:
                continue
            try:
                rules[affiliate_id] = self._rules.get(affiliate_id, self._postbacks.list_for_affiliate)
            except Exception:
                logger.exception("reading postbacks failed: affiliate_id=%s", affiliate_id)
                return rules, item.index
        return rules, None

    def _observe_rules_version(self) -> None:
        """Tell the rules cache the table's rules version (one GetItem); unknown if the read fails."""
        if self._versions is None or not self._rules.enabled:
            return
        try:
            version = self._versions.rules_version()
        except Exception:
            # Not a batch failure: this batch falls back to the TTL (the cache's own bound).
            logger.warning("reading the rules version failed; rules cache on its TTL for this batch", exc_info=True)
            self._rules.observe(None)
            return
        self._rules.observe(version.number, version.changed_at)

    def _write(self, items: Sequence[_Item], rules: Mapping[str, tuple[Postback, ...]], now: datetime) -> _Written:
        """Dead letters and conditional writes, in record order, up to the first record that fails."""
        pending: list[_Pending] = []
        seen: set[str] = set()
        created = dead_lettered = 0
        for item in items:
            try:
                if item.malformed_reason is not None:
                    self._dead_letter(item.record, item.malformed_reason, now)
                    dead_lettered += 1
                    continue
                if item.change is None:
                    continue
                match = match_change(item.change, rules[item.change.conversion.affiliate_id])
                for failure in match.failures:
                    self._dead_letter(item.record, f"{failure.reason} (postback {failure.postback_id})", now)
                    dead_lettered += 1
                for delivery in match.deliveries:
                    # A flip-flop or a duplicate record within the batch: one write, one message.
                    if delivery.delivery_id in seen:
                        continue
                    outcome = self._deliveries.create(delivery, now=now, ttl_days=self._ttl_days)
                    seen.add(delivery.delivery_id)
                    if outcome is CreateOutcome.CREATED:
                        created += 1
                    if outcome is not CreateOutcome.EXISTS_HANDLED:
                        pending.append(_Pending(item.index, delivery))
            except Exception:
                logger.exception(
                    "evaluating record failed: sequence_number=%s; reporting it for retry", sequence_number(item.record)
                )
                # Deliveries of this record already written stay pending: the retry enqueues them.
                kept = [p for p in pending if p.index < item.index]
                return _Written(kept, created, dead_lettered, item.index)
        return _Written(pending, created, dead_lettered, None)

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
                    )
                    for p in chunk
                )
            except QueueSendError as exc:
                failed = set(exc.failed_ids)
                unsent = [p for p in chunk if p.delivery.delivery_id in failed] or list(chunk)
                sent += len(chunk) - len(unsent)
                logger.error("enqueueing deliveries failed: %d not sent (%s)", len(unsent), exc)
                return sent, min(p.index for p in unsent)
            except Exception:
                logger.exception("enqueueing deliveries failed: %d not sent", len(chunk))
                return sent, min(p.index for p in chunk)
            sent += len(chunk)
        return sent, None

    def _dead_letter(self, record: Mapping[str, Any], reason: str, now: datetime) -> None:
        stream = record.get("dynamodb")
        logger.warning(
            "dead-lettering conversion record: sequence_number=%s reason=%s",
            stream.get("SequenceNumber") if isinstance(stream, Mapping) else None,
            reason,
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
