"""Rules of the on-call tools: what a dead-letter message says, which ones a filter selects, and
what a redrive or a recovery must do with each delivery. Pure: no AWS, no clock of its own.

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

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from functions.core.model import Delivery, DeliveryState, format_timestamp, parse_timestamp

DEAD_PARTITION = "dead"
REDRIVING_PARTITION = "redriving"
# Reason given to a DLQ message the queue's own redrive policy moved (maxReceiveCount, a crash loop).
MAX_RECEIVES_REASON = "max_receives_exceeded"

CLAIMABLE_STATES = frozenset({DeliveryState.DEAD_LETTERED, DeliveryState.FAILED})
FINISHED_STATES = frozenset({DeliveryState.DELIVERED, DeliveryState.CANCELLED})
ACTIVE_STATES = frozenset({DeliveryState.PENDING, DeliveryState.IN_FLIGHT, DeliveryState.RETRYING})


class MessageKind(StrEnum):
    """What put a message in the deliveries DLQ."""

    DEAD_LETTER = "dead_letter"  # the sender, with reason and history (messages.dead_letter_message)
    MOVED = "moved"  # the queue's redrive policy moved a deliveries-queue message (crash loop)
    # The sender, for a deliveries-queue message it could not act on; the original body is kept.
    MALFORMED_MESSAGE = "malformed_message"  # the body names no delivery
    UNKNOWN_DELIVERY = "unknown_delivery"  # the body names a delivery that had no record

    @property
    def redrivable(self) -> bool:
        """A redrive can bring the delivery back; the other kinds hold nothing to send."""
        return self in (MessageKind.DEAD_LETTER, MessageKind.MOVED)


# The `kind` field of the sender's DLQ bodies; a body without one was moved by the queue itself.
_BODY_KINDS = {
    "delivery": MessageKind.DEAD_LETTER,
    "malformed_message": MessageKind.MALFORMED_MESSAGE,
    "unknown_delivery": MessageKind.UNKNOWN_DELIVERY,
}


def _dead_letter_time(dead_lettered_at: str | None, sent_at: datetime | None) -> datetime | None:
    """When a message was dead-lettered: its body's time, else the time SQS first got it."""
    if dead_lettered_at:
        try:
            return parse_timestamp(dead_lettered_at)
        except ValueError:
            return sent_at
    return sent_at


@dataclass(frozen=True)
class DeadLetterEntry:
    """One deliveries-DLQ message, as far as its body and attributes tell."""

    message_id: str
    kind: MessageKind
    delivery_id: str | None
    affiliate_id: str | None
    postback_id: str | None
    conversion_id: str | None
    conversion_status: str | None
    target_host: str | None
    reason: str
    last_status_code: int | None
    attempts: tuple[dict[str, Any], ...]
    dead_lettered_at: str | None
    sent_at: datetime | None
    receive_count: int
    body: Any = field(repr=False, compare=False, default=None)
    # Malformed / unknown-delivery messages: the deliveries-queue message the sender set aside.
    original_message_id: str | None = None
    original_body: str | None = None

    @property
    def at(self) -> datetime | None:
        """When it was dead-lettered (the body's time, else the time SQS first got it)."""
        return _dead_letter_time(self.dead_lettered_at, self.sent_at)


class ConversionMessageKind(StrEnum):
    """What put a message in the evaluator DLQ."""

    # The evaluator, for one record it could not evaluate (messages.evaluator_dead_letter_message): the record, whole.
    CONVERSION_RECORD = "conversion_record"
    # Lambda's on-failure destination, when the stream mapping gave up on a batch (MaximumRetryAttempts,
    # MaximumRecordAgeInSeconds): no records, only a pointer to a range of one shard of the stream.
    STREAM_BATCH_FAILURE = "stream_batch_failure"


# How long DynamoDB Streams keeps a record; a batch-failure range older than this can no longer be read.
STREAM_RETENTION_HOURS = 24


def _sequence(value: str | None) -> int | None:
    """A stream sequence number (digits only) as a number, for ordering; None when it is not one."""
    return int(value) if value is not None and value.isdigit() else None


@dataclass(frozen=True)
class StreamBatchFailure:
    """The `DDBStreamBatchInfo` and context of a Lambda on-failure destination record."""

    shard_id: str | None
    start_sequence_number: str | None
    end_sequence_number: str | None
    first_arrival: str | None  # approximateArrivalOfFirstRecord (ISO 8601)
    last_arrival: str | None
    batch_size: int | None
    stream_arn: str | None
    condition: str | None  # e.g. RetryAttemptsExhausted
    approximate_invoke_count: int | None
    function_arn: str | None
    function_error: str | None
    request_id: str | None
    failed_at: str | None  # the record's `timestamp`: when Lambda gave up on the batch

    @property
    def start(self) -> int | None:
        return _sequence(self.start_sequence_number)

    @property
    def end(self) -> int | None:
        return _sequence(self.end_sequence_number)

    @property
    def readable(self) -> bool:
        """Names a shard and an ordered range of sequence numbers: something a replay can read."""
        start, end = self.start, self.end
        return bool(self.shard_id) and start is not None and end is not None and start <= end

    @property
    def sequence_range(self) -> str:
        return f"{self.start_sequence_number or '?'}..{self.end_sequence_number or '?'}"

    @property
    def identity(self) -> str:
        """The same range named by two copies of a message."""
        return f"range:{self.stream_arn}|{self.shard_id}|{self.sequence_range}"

    @property
    def not_replayable_reason(self) -> str:
        return (
            f"the stream no longer holds sequence numbers {self.sequence_range} ({STREAM_RETENTION_HOURS} h "
            "retention); recover from the conversion service's records"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "shard_id": self.shard_id,
            "start_sequence_number": self.start_sequence_number,
            "end_sequence_number": self.end_sequence_number,
            "batch_size": self.batch_size,
            "approximate_arrival_of_first_record": self.first_arrival,
            "approximate_arrival_of_last_record": self.last_arrival,
            "stream_arn": self.stream_arn,
            "approximate_invoke_count": self.approximate_invoke_count,
            "function_error": self.function_error,
            "function_arn": self.function_arn,
            "request_id": self.request_id,
            "failed_at": self.failed_at,
        }


@dataclass(frozen=True)
class ConversionDeadLetterEntry:
    """One evaluator-DLQ message: a conversions stream record that could not be evaluated, or (kind
    `stream_batch_failure`) Lambda's pointer to a range of the stream it gave up on."""

    message_id: str
    reason: str  # stream_batch_failure: the condition (RetryAttemptsExhausted, ...)
    record: dict[str, Any] | None
    event_source_arn: str | None
    sequence_number: str | None  # stream_batch_failure: the start of the range
    dead_lettered_at: str | None  # stream_batch_failure: when Lambda gave up (`timestamp`)
    sent_at: datetime | None
    receive_count: int
    conversion_id: str | None
    affiliate_id: str | None
    event_name: str | None
    kind: ConversionMessageKind = ConversionMessageKind.CONVERSION_RECORD
    batch: StreamBatchFailure | None = None
    body: Any = field(repr=False, compare=False, default=None)

    @property
    def at(self) -> datetime | None:
        """When it was dead-lettered; for a batch failure, when its first record arrived in the stream."""
        if self.batch is not None and self.batch.first_arrival:
            return _dead_letter_time(self.batch.first_arrival, self.sent_at)
        return _dead_letter_time(self.dead_lettered_at, self.sent_at)

    @property
    def item_id(self) -> str | None:
        """What a run report names: the conversion id, or the sequence range of a batch failure."""
        if self.batch is not None:
            return self.batch.sequence_range
        return self.conversion_id


def _sent_at(attributes: dict[str, str]) -> datetime | None:
    raw = attributes.get("SentTimestamp")
    if raw is None or not raw.isdigit():
        return None
    return datetime.fromtimestamp(int(raw) / 1000, UTC)


def _receive_count(attributes: dict[str, str]) -> int:
    raw = attributes.get("ApproximateReceiveCount", "0")
    return int(raw) if raw.isdigit() else 0


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _status_code(value: Any) -> int | None:
    return _whole_number(value)


def _json_object(body_text: str) -> dict[str, Any]:
    """A message body as a JSON object; empty when it is not one."""
    try:
        body: Any = json.loads(body_text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def parse_delivery_dead_letter(
    message_id: str, body_text: str, attributes: dict[str, str], message_attributes: dict[str, str]
) -> DeadLetterEntry:
    """Read a deliveries-DLQ message. Never raises: an unreadable body yields an entry without a delivery id."""
    body = _json_object(body_text)
    kind = _BODY_KINDS.get(str(body.get("kind")), MessageKind.MOVED)
    is_dead_letter = kind is MessageKind.DEAD_LETTER
    set_aside = not kind.redrivable
    raw_attempts = body.get("attempts") if is_dead_letter else None
    attempts = tuple(a for a in raw_attempts if isinstance(a, dict)) if isinstance(raw_attempts, list) else ()
    reason = _text(body.get("reason")) or _text(message_attributes.get("reason"))
    default_reason = {MessageKind.DEAD_LETTER: "unknown", MessageKind.MOVED: MAX_RECEIVES_REASON}.get(kind, kind.value)
    return DeadLetterEntry(
        message_id=message_id,
        kind=kind,
        delivery_id=_text(body.get("delivery_id")),
        affiliate_id=_text(body.get("affiliate_id")) or _text(message_attributes.get("affiliate_id")),
        postback_id=_text(body.get("postback_id")) or _text(message_attributes.get("postback_id")),
        conversion_id=_text(body.get("conversion_id")),
        conversion_status=_text(body.get("conversion_status")),
        target_host=_text(body.get("target_host")),
        reason=reason or default_reason,
        last_status_code=_status_code(body.get("last_status_code"))
        if is_dead_letter
        else _status_code(message_attributes.get("status_code")),
        attempts=attempts,
        dead_lettered_at=_text(body.get("dead_lettered_at")),
        sent_at=_sent_at(attributes),
        receive_count=_receive_count(attributes),
        body=body,
        original_message_id=_text(body.get("message_id")) if set_aside else None,
        original_body=body.get("body") if set_aside and isinstance(body.get("body"), str) else None,
    )


def _image_string(image: Any, name: str) -> str | None:
    if not isinstance(image, dict):
        return None
    value = image.get(name)
    if isinstance(value, dict):
        return _text(value.get("S"))
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _batch_failure(message_id: str, body: dict[str, Any], attributes: dict[str, str]) -> ConversionDeadLetterEntry:
    info = _dict(body.get("DDBStreamBatchInfo"))
    request = _dict(body.get("requestContext"))
    response = _dict(body.get("responseContext"))
    batch = StreamBatchFailure(
        shard_id=_text(info.get("shardId")),
        start_sequence_number=_text(info.get("startSequenceNumber")),
        end_sequence_number=_text(info.get("endSequenceNumber")),
        first_arrival=_text(info.get("approximateArrivalOfFirstRecord")),
        last_arrival=_text(info.get("approximateArrivalOfLastRecord")),
        batch_size=_whole_number(info.get("batchSize")),
        stream_arn=_text(info.get("streamArn")),
        condition=_text(request.get("condition")),
        approximate_invoke_count=_whole_number(request.get("approximateInvokeCount")),
        function_arn=_text(request.get("functionArn")),
        function_error=_text(response.get("functionError")),
        request_id=_text(request.get("requestId")),
        failed_at=_text(body.get("timestamp")),
    )
    return ConversionDeadLetterEntry(
        message_id=message_id,
        reason=batch.condition or ConversionMessageKind.STREAM_BATCH_FAILURE.value,
        record=None,
        event_source_arn=batch.stream_arn,
        sequence_number=batch.start_sequence_number,
        dead_lettered_at=batch.failed_at,
        sent_at=_sent_at(attributes),
        receive_count=_receive_count(attributes),
        conversion_id=None,
        affiliate_id=None,
        event_name=None,
        kind=ConversionMessageKind.STREAM_BATCH_FAILURE,
        batch=batch,
        body=body,
    )


def parse_conversion_dead_letter(
    message_id: str, body_text: str, attributes: dict[str, str]
) -> ConversionDeadLetterEntry:
    """Read an evaluator-DLQ message. Never raises: what cannot be read is left empty."""
    body = _json_object(body_text)
    if isinstance(body.get("DDBStreamBatchInfo"), dict):
        return _batch_failure(message_id, body, attributes)
    record = body.get("record") if isinstance(body.get("record"), dict) else None
    dynamodb = record.get("dynamodb") if record is not None and isinstance(record.get("dynamodb"), dict) else {}
    image = dynamodb.get("NewImage") or dynamodb.get("OldImage")
    keys = dynamodb.get("Keys")
    return ConversionDeadLetterEntry(
        message_id=message_id,
        reason=_text(body.get("reason")) or "unknown",
        record=record,
        event_source_arn=_text(body.get("event_source_arn"))
        or (_text(record.get("eventSourceARN")) if record else None),
        sequence_number=_text(body.get("sequence_number")) or _text(dynamodb.get("SequenceNumber")),
        dead_lettered_at=_text(body.get("dead_lettered_at")),
        sent_at=_sent_at(attributes),
        receive_count=_receive_count(attributes),
        conversion_id=_image_string(image, "conversion_id") or _image_string(keys, "conversion_id"),
        affiliate_id=_image_string(image, "affiliate_id"),
        event_name=_text(record.get("eventName")) if record else None,
        body=body,
    )


def lambda_stream_record(record: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A record read with DynamoDB Streams GetRecords (boto3) in the shape Lambda delivers it:
    `eventSourceARN` added, `ApproximateCreationDateTime` epoch seconds (boto3 gives a datetime)."""
    converted = dict(record)
    dynamodb = dict(_dict(converted.get("dynamodb")))
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        moment = created if created.tzinfo is not None else created.replace(tzinfo=UTC)
        dynamodb["ApproximateCreationDateTime"] = moment.timestamp()
    converted["dynamodb"] = dynamodb
    converted.setdefault("eventSource", "aws:dynamodb")
    converted.setdefault("awsRegion", region)
    converted["eventSourceARN"] = stream_arn
    return converted


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead-lettered deliveries an on-call engineer picked. Empty fields match everything."""

    affiliate_ids: frozenset[str] = frozenset()
    postback_ids: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    status_codes: frozenset[int] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    @property
    def is_empty(self) -> bool:
        return not (
            self.affiliate_ids or self.postback_ids or self.reasons or self.status_codes or self.since or self.until
        )

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

    def matches(self, entry: DeadLetterEntry) -> bool:
        return (
            self._affiliate_and_reason_match(entry.affiliate_id, entry.reason)
            and self._delivery_fields_match(entry.postback_id, entry.last_status_code)
            and self._time_matches(entry.at)
        )

    def matches_conversion(self, entry: ConversionDeadLetterEntry) -> bool:
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


@dataclass(frozen=True)
class Decision:
    action: Action
    why: str


def decide_for_message(entry: DeadLetterEntry, record: Delivery | None, now_epoch: float) -> Decision:
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


def decide_for_record(record: Delivery, now: datetime, abandoned_after_seconds: float) -> Decision:
    """What a recovery from the deliveries table does with one record of the `by_dead_letter` index."""
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


def index_bounds(since: datetime | None, until: datetime | None) -> tuple[str | None, str | None]:
    """`by_dead_letter` range-key bounds (ISO text sorts in time order), inclusive since, exclusive until."""
    return (
        format_timestamp(since) if since is not None else None,
        format_timestamp(until) if until is not None else None,
    )
