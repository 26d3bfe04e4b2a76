"""The evaluator's dead-letter queue: conversions stream records that could not be evaluated.

It holds two kinds of messages (`functions.core.redrive.ConversionMessageKind`):

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

import copy
import importlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack

from botocore.exceptions import BotoCoreError, ClientError

from functions.cli.dlq import NOT_REPLAYABLE, DeadLetterQueue, Outcome, RedriveReport, ScanOptions
from functions.cli.output import Progress
from functions.cli.pacing import Pacer
from functions.cli.scanning import QueueScan
from functions.core.model import utc_now
from functions.core.redrive import (
    ConversionDeadLetterEntry,
    ConversionMessageKind,
    DeadLetterFilter,
    StreamBatchFailure,
    lambda_stream_record,
    parse_conversion_dead_letter,
)
from functions.storage.queues import Queue, ReceivedMessage
from functions.storage.redrive import StreamRangeReader, StreamRangeUnavailable

EVALUATOR_HANDLER = "functions.evaluator.handler.on_conversion_change"
# Records per handler invocation when a stream range is replayed: the event source mapping's BatchSize.
REPLAY_BATCH_SIZE = 100
StreamHandler = Callable[[dict[str, Any], Any], Any]


def load_evaluator_handler() -> StreamHandler:
    """The evaluator's Lambda entry point, by the same handler string Lambda uses."""
    module_name, _, attribute = EVALUATOR_HANDLER.rpartition(".")
    handler: StreamHandler = getattr(importlib.import_module(module_name), attribute)
    return handler


@dataclass(frozen=True)
class ReplayContext:
    """The part of a Lambda context a handler may read."""

    aws_request_id: str
    function_name: str = "postbacks-cli-replay"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:postbacks-cli-replay"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def lambda_stream_event(entry: ConversionDeadLetterEntry, default_arn: str, region: str) -> dict[str, Any]:
    """A one-record DynamoDB stream event as Lambda delivers it (ARN present, creation time a number)."""
    record = copy.deepcopy(entry.record or {})
    record.setdefault("eventSource", "aws:dynamodb")
    record.setdefault("awsRegion", region)
    record.setdefault("eventVersion", "1.1")
    record.setdefault("eventID", f"replay-{entry.message_id}")
    record["eventSourceARN"] = record.get("eventSourceARN") or entry.event_source_arn or default_arn
    dynamodb = record.setdefault("dynamodb", {})
    if isinstance(dynamodb, dict):
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            dynamodb["ApproximateCreationDateTime"] = created.timestamp()
        elif isinstance(created, str):
            try:
                dynamodb["ApproximateCreationDateTime"] = float(created)
            except ValueError:
                dynamodb["ApproximateCreationDateTime"] = datetime.fromisoformat(
                    created.replace("Z", "+00:00")
                ).timestamp()
        elif created is None:
            dynamodb["ApproximateCreationDateTime"] = (entry.sent_at or utc_now()).timestamp()
        dynamodb.setdefault("SequenceNumber", entry.sequence_number or f"replay-{entry.message_id}")
    return {"Records": [record]}


def _failed_identifiers(result: Any) -> set[str]:
    if not isinstance(result, dict):
        return set()
    failures = result.get("batchItemFailures") or []
    return {str(item.get("itemIdentifier")) for item in failures if isinstance(item, dict)}


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
        handler_loader: Callable[[], StreamHandler] = load_evaluator_handler,
        streams: StreamRangeReader | None = None,
        replay_batch_size: int = REPLAY_BATCH_SIZE,
        **options: Unpack[ScanOptions],
    ) -> None:
        super().__init__(dlq, **options)
        self._stream_arn = stream_arn
        self._region = region
        self._handler_loader = handler_loader
        self._streams = streams if streams is not None else StreamRangeReader(region=region)
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

    def replay(
        self,
        selection: DeadLetterFilter,
        *,
        limit: int | None,
        pacer: Pacer,
        dry_run: bool,
        progress: Progress,
    ) -> RedriveReport:
        handler = None if dry_run else self._handler_loader()
        replayed: set[str] = set()

        def replay_once(scan: QueueScan, message: ReceivedMessage, entry: ConversionDeadLetterEntry) -> Outcome:
            if entry.kind is ConversionMessageKind.STREAM_BATCH_FAILURE and entry.batch is not None:
                return self._replay_range(scan, message, entry, entry.batch, handler, replayed, pacer)
            identity = _record_identity(entry)
            if identity in replayed:
                why = "another copy of a record this run replayed"
                return Outcome(entry.conversion_id, entry.message_id, "left_in_dlq", why)
            if entry.record is None:
                return Outcome(entry.conversion_id, entry.message_id, "skipped", "the message holds no record")
            if handler is None:
                return Outcome(entry.conversion_id, entry.message_id, "would_replay", entry.reason)
            replayed.add(identity)
            pacer.wait()
            return self._replay_one(scan, message, entry, handler)

        return self._act(selection, replay_once, dry_run=dry_run, limit=limit, progress=progress)

    def _replay_one(
        self, scan: QueueScan, message: ReceivedMessage, entry: ConversionDeadLetterEntry, handler: StreamHandler
    ) -> Outcome:
        event = lambda_stream_event(entry, self._stream_arn, self._region)
        identifier = str(event["Records"][0]["dynamodb"]["SequenceNumber"])
        try:
            result = handler(event, ReplayContext(aws_request_id=str(uuid.uuid4())))
        except Exception as error:  # the evaluator's own failure: the record stays in the DLQ, reported
            return Outcome(entry.conversion_id, entry.message_id, "failed", f"evaluator raised {type(error).__name__}")
        if identifier in _failed_identifiers(result):
            return Outcome(entry.conversion_id, entry.message_id, "failed", "the evaluator reported the record failed")
        scan.delete(message)
        return Outcome(entry.conversion_id, entry.message_id, "replayed", entry.reason)

    def _replay_range(
        self,
        scan: QueueScan,
        message: ReceivedMessage,
        entry: ConversionDeadLetterEntry,
        batch: StreamBatchFailure,
        handler: StreamHandler | None,
        replayed: set[str],
        pacer: Pacer,
    ) -> Outcome:
        """Read the range of a batch failure back from the stream and feed it, in order, to the handler."""
        item_id, message_id = entry.item_id, entry.message_id
        shard, start, end = batch.shard_id, batch.start_sequence_number, batch.end_sequence_number
        if not (batch.readable and shard and start and end):
            why = "the message names no complete stream range (shard, start and end sequence numbers)"
            return Outcome(item_id, message_id, "skipped", why)
        if batch.identity in replayed:
            return Outcome(item_id, message_id, "left_in_dlq", "another copy of a stream range this run replayed")
        stream_arn = batch.stream_arn or self._stream_arn
        try:
            raw = self._streams.read(stream_arn, shard, start, end)
        except StreamRangeUnavailable as gone:
            return Outcome(item_id, message_id, NOT_REPLAYABLE, f"{batch.not_replayable_reason} [{gone}]")
        except (ClientError, BotoCoreError) as error:
            return Outcome(item_id, message_id, "failed", f"reading the stream failed: {_aws_error_text(error)}")
        condition = batch.condition or "batch failure"
        if handler is None:
            return Outcome(item_id, message_id, "would_replay", f"{condition}: {len(raw)} records in the stream")
        replayed.add(batch.identity)
        records = [lambda_stream_record(record, stream_arn, self._region) for record in raw]
        # The evaluator may dead-letter some of them again (a new conversion_record copy): not replayed twice.
        replayed.update(identity for identity in map(_stream_record_identity, records) if identity)
        done = 0
        for chunk in _batches(records, self._replay_batch_size):
            pacer.wait()
            try:
                result = handler({"Records": list(chunk)}, ReplayContext(aws_request_id=str(uuid.uuid4())))
            except Exception as error:  # the evaluator's own failure: the message stays, a re-run replays the range
                why = f"evaluator raised {type(error).__name__} after {done} of {len(records)} records; message kept"
                return Outcome(item_id, message_id, "failed", why)
            failed = _failed_identifiers(result)
            if failed:
                first = min(failed, key=lambda number: int(number) if number.isdigit() else 0)
                why = (
                    f"the evaluator reported record {first} failed after {done} of {len(records)} records; message kept"
                )
                return Outcome(item_id, message_id, "failed", why)
            done += len(chunk)
        scan.delete(message)
        return Outcome(item_id, message_id, "replayed", f"{condition}: {len(records)} records replayed")
