"""The messages of the two dead-letter queues, as the on-call tools read them: SQS message bodies
and attributes parsed into entries. Parsing never raises: what cannot be read is left empty.

Deliveries DLQ (`DeadLetterEntry`): the sender's dead letters (`functions.core.messages`), the
deliveries-queue messages it set aside whole (malformed, unknown delivery), and messages the
queue's own redrive policy moved (no `kind`). Evaluator DLQ (`ConversionDeadLetterEntry`): the
evaluator's copy of one record it could not evaluate, or Lambda's on-failure destination record
for a batch of the conversions stream it gave up on (`StreamBatchFailure`).

What the redrive rules decide about an entry is `functions.core.redrive`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from functions.core.messages import REASON_MALFORMED_MESSAGE, REASON_UNKNOWN_DELIVERY
from functions.core.model import parse_timestamp
from functions.core.redrive import MessageKind

# Reason given to a DLQ message the queue's own redrive policy moved (maxReceiveCount, a crash loop).
MAX_RECEIVES_REASON = "max_receives_exceeded"

# The `kind` field of the sender's DLQ bodies; a body without one was moved by the queue itself.
_BODY_KINDS = {
    "delivery": MessageKind.DEAD_LETTER,
    REASON_MALFORMED_MESSAGE: MessageKind.MALFORMED_MESSAGE,
    REASON_UNKNOWN_DELIVERY: MessageKind.UNKNOWN_DELIVERY,
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
