"""The evaluator's dead-letter queue: conversions stream records that could not be evaluated.

It holds two kinds of messages (`functions.cli.dlq_messages.ConversionMessageKind`):

- `conversion_record` — the evaluator's own copy of one record it could not evaluate (malformed,
  unrenderable), the record whole;
- `stream_batch_failure` — Lambda's on-failure destination record, sent when the stream mapping
  gave up on a batch (MaximumRetryAttempts, MaximumRecordAgeInSeconds): no records, only the
  shard and the range of sequence numbers (`DDBStreamBatchInfo`).

A replay (`dlq redrive --queue evaluator`) hands records, as Lambda-shaped DynamoDB stream events,
to the real evaluator handler (`functions.evaluator.handler.on_conversion_change`, imported only
when needed), exactly as Lambda would. The evaluator records deliveries with a conditional write
keyed by (postback, conversion, status), so a replay never doubles a delivery.

A stored record is replayed as a one-record event:
- The handler reports the record in `batchItemFailures`, or raises: the DLQ copy stays.
- Otherwise the DLQ copy is deleted. If the record is still malformed, the evaluator itself
  dead-letters it again (a new DLQ message, reported as success) and the old copy is deleted:
  the record is never lost, and this run does not replay the new copy a second time.

A batch failure is replayed from the stream: the records of its range are read back
(GetShardIterator AT_SEQUENCE_NUMBER, GetRecords up to the end of the range) and fed in order, in
batches of up to 100 (the mapping's BatchSize). A batch the handler reports a failure in (or that
raises) stops the range and the DLQ message stays; a re-run replays the whole range again, safely.
The message is deleted only once the whole range was replayed. A range the stream no longer holds
(24 h retention) is left in the DLQ as `not_replayable`: only the conversion service's own records
can recover it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Unpack

from botocore.exceptions import BotoCoreError, ClientError

from functions.cli.dlq import DeadLetterQueue, Outcome, RedriveReport, Result, RunOptions, ScanOptions
from functions.cli.dlq_messages import (
    ConversionDeadLetterEntry,
    ConversionMessageKind,
    StreamBatchFailure,
    parse_conversion_dead_letter,
)
from functions.cli.pacing import Pacer
from functions.cli.scanning import QueueScan
from functions.core.model import utc_now
from functions.core.redrive import DeadLetterFilter
from functions.invocation import (
    Handler,
    LambdaContext,
    failed_item_identifiers,
    lambda_stream_record,
    resolve_handler,
)
from functions.storage.queues import Queue, ReceivedMessage
from functions.storage.streams import StreamRangeReader, StreamRangeUnavailable

EVALUATOR_HANDLER = "functions.evaluator.handler.on_conversion_change"
# The context a replay hands the evaluator: the name and the timeout (seconds) of each invocation.
REPLAY_FUNCTION_NAME = "postbacks-cli-replay"
REPLAY_TIMEOUT_SECONDS = 300.0
# Records per handler invocation when a stream range is replayed: the event source mapping's BatchSize.
REPLAY_BATCH_SIZE = 100


def load_evaluator_handler() -> Handler:
    """The evaluator's Lambda entry point, by the same handler string Lambda uses."""
    return resolve_handler(EVALUATOR_HANDLER)


def lambda_stream_event(entry: ConversionDeadLetterEntry, default_arn: str, region: str) -> dict[str, Any]:
    """A one-record DynamoDB stream event of a stored record, as Lambda delivers it. What the copy lacks is
    taken from the message: the stream ARN, the sequence number, the creation time (when SQS got it)."""
    record = dict(entry.record or {})
    record.setdefault("eventID", f"replay-{entry.message_id}")
    dynamodb = dict(record["dynamodb"]) if isinstance(record.get("dynamodb"), dict) else {}
    if dynamodb.get("ApproximateCreationDateTime") is None:
        dynamodb["ApproximateCreationDateTime"] = entry.sent_at or utc_now()
    dynamodb.setdefault("SequenceNumber", entry.sequence_number or f"replay-{entry.message_id}")
    record["dynamodb"] = dynamodb
    stream_arn = record.get("eventSourceARN") or entry.event_source_arn or default_arn
    return {"Records": [lambda_stream_record(record, stream_arn, region)]}


def _first_failure(response: Any, sequence_numbers: Sequence[str]) -> str | None:
    """The first record of a batch the handler reported failed (all of it, for a malformed response, as
    Lambda reads one); None when the whole batch succeeded."""
    failed = failed_item_identifiers(response)
    if failed is None:
        return sequence_numbers[0]
    if not failed:
        return None
    return min(failed, key=lambda number: int(number) if number.isdigit() else 0)


def _stream_record_identity(record: dict[str, Any]) -> str | None:
    """What names one stream record across copies: its eventID, else its sequence number."""
    dynamodb = record.get("dynamodb")
    sequence = dynamodb.get("SequenceNumber") if isinstance(dynamodb, dict) else None
    identity = record.get("eventID") or sequence
    return str(identity) if identity else None


def _record_identity(entry: ConversionDeadLetterEntry) -> str:
    return _stream_record_identity(entry.record or {}) or entry.sequence_number or entry.message_id


def _batches(records: Sequence[dict[str, Any]], size: int) -> list[Sequence[dict[str, Any]]]:
    return [records[index : index + size] for index in range(0, len(records), size)]


def _aws_error_text(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
    return str(error)


class ConversionDeadLetters(DeadLetterQueue[ConversionDeadLetterEntry]):
    GROUPS = ("kind", "reason", "affiliate", "event")

    def __init__(
        self,
        dlq: Queue,
        *,
        stream_arn: str,
        region: str,
        streams: StreamRangeReader,
        handler_loader: Callable[[], Handler] = load_evaluator_handler,
        replay_batch_size: int = REPLAY_BATCH_SIZE,
        **options: Unpack[ScanOptions],
    ) -> None:
        super().__init__(dlq, **options)
        self._stream_arn = stream_arn
        self._region = region
        self._handler_loader = handler_loader
        self._streams = streams
        self._replay_batch_size = replay_batch_size

    def _entry(self, message: ReceivedMessage) -> ConversionDeadLetterEntry:
        return parse_conversion_dead_letter(message.message_id, message.body, message.attributes)

    def _selects(self, selection: DeadLetterFilter, entry: ConversionDeadLetterEntry) -> bool:
        return selection.matches_conversion(entry)

    def _item_id(self, entry: ConversionDeadLetterEntry) -> str | None:
        return entry.item_id

    def _identifiers(self, entry: ConversionDeadLetterEntry) -> tuple[str | None, ...]:
        end = entry.batch.end_sequence_number if entry.batch is not None else None
        return (entry.message_id, entry.conversion_id, entry.sequence_number, end)

    def _group_values(self, entry: ConversionDeadLetterEntry) -> tuple[str, ...]:
        return (entry.kind.value, entry.reason, entry.affiliate_id or "-", entry.event_name or "-")

    def replay(self, selection: DeadLetterFilter, options: RunOptions) -> RedriveReport:
        handler = None if options.dry_run else self._handler_loader()
        pacer = options.pacer
        replayed: set[str] = set()

        def replay_once(scan: QueueScan, message: ReceivedMessage, entry: ConversionDeadLetterEntry) -> Outcome:
            if entry.kind is ConversionMessageKind.STREAM_BATCH_FAILURE and entry.batch is not None:
                return self._replay_range(scan, message, entry, entry.batch, handler, replayed, pacer)
            identity = _record_identity(entry)
            if identity in replayed:
                why = "another copy of a record this run replayed"
                return Outcome(entry.conversion_id, entry.message_id, Result.LEFT_IN_DLQ, why)
            if entry.record is None:
                return Outcome(entry.conversion_id, entry.message_id, Result.SKIPPED, "the message holds no record")
            if handler is None:
                return Outcome(entry.conversion_id, entry.message_id, Result.WOULD_REPLAY, entry.reason)
            replayed.add(identity)
            pacer.wait()
            return self._replay_one(scan, message, entry, handler)

        return self._act(selection, replay_once, options)

    def _replay_one(
        self, scan: QueueScan, message: ReceivedMessage, entry: ConversionDeadLetterEntry, handler: Handler
    ) -> Outcome:
        event = lambda_stream_event(entry, self._stream_arn, self._region)
        identifier = str(event["Records"][0]["dynamodb"]["SequenceNumber"])
        conversion_id, message_id = entry.conversion_id, entry.message_id
        try:
            result = handler(event, self._context())
        except Exception as error:  # the evaluator's own failure: the record stays in the DLQ, reported
            return Outcome(conversion_id, message_id, Result.FAILED, f"evaluator raised {type(error).__name__}")
        if _first_failure(result, [identifier]) is not None:
            return Outcome(conversion_id, message_id, Result.FAILED, "the evaluator reported the record failed")
        scan.delete(message)
        return Outcome(conversion_id, message_id, Result.REPLAYED, entry.reason)

    def _context(self) -> LambdaContext:
        """A fresh context for one invocation of the evaluator."""
        return LambdaContext(REPLAY_FUNCTION_NAME, REPLAY_TIMEOUT_SECONDS, region=self._region)

    def _replay_range(
        self,
        scan: QueueScan,
        message: ReceivedMessage,
        entry: ConversionDeadLetterEntry,
        batch: StreamBatchFailure,
        handler: Handler | None,
        replayed: set[str],
        pacer: Pacer,
    ) -> Outcome:
        """Read the range of a batch failure back from the stream and feed it, in order, to the handler."""
        item_id, message_id = entry.item_id, entry.message_id
        shard, start, end = batch.shard_id, batch.start_sequence_number, batch.end_sequence_number
        if not (batch.readable and shard and start and end):
            why = "the message names no complete stream range (shard, start and end sequence numbers)"
            return Outcome(item_id, message_id, Result.SKIPPED, why)
        if batch.identity in replayed:
            return Outcome(item_id, message_id, Result.LEFT_IN_DLQ, "another copy of a stream range this run replayed")
        stream_arn = batch.stream_arn or self._stream_arn
        try:
            raw = self._streams.read(stream_arn, shard, start, end)
        except StreamRangeUnavailable as gone:
            return Outcome(item_id, message_id, Result.NOT_REPLAYABLE, f"{batch.not_replayable_reason} [{gone}]")
        except (ClientError, BotoCoreError) as error:
            why = f"reading the stream failed: {_aws_error_text(error)}"
            return Outcome(item_id, message_id, Result.FAILED, why)
        condition = batch.condition or "batch failure"
        if handler is None:
            return Outcome(item_id, message_id, Result.WOULD_REPLAY, f"{condition}: {len(raw)} records in the stream")
        replayed.add(batch.identity)
        records = [lambda_stream_record(record, stream_arn, self._region) for record in raw]
        # The evaluator may dead-letter some of them again (a new conversion_record copy): not replayed twice.
        replayed.update(identity for identity in map(_stream_record_identity, records) if identity)
        done = 0
        for chunk in _batches(records, self._replay_batch_size):
            pacer.wait()
            try:
                result = handler({"Records": list(chunk)}, self._context())
            except Exception as error:  # the evaluator's own failure: the message stays, a re-run replays the range
                why = f"evaluator raised {type(error).__name__} after {done} of {len(records)} records; message kept"
                return Outcome(item_id, message_id, Result.FAILED, why)
            first = _first_failure(result, [str(record["dynamodb"]["SequenceNumber"]) for record in chunk])
            if first is not None:
                why = (
                    f"the evaluator reported record {first} failed after {done} of {len(records)} records; message kept"
                )
                return Outcome(item_id, message_id, Result.FAILED, why)
            done += len(chunk)
        scan.delete(message)
        return Outcome(item_id, message_id, Result.REPLAYED, f"{condition}: {len(records)} records replayed")
