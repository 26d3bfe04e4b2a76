"""The evaluator's dead-letter queue: conversions stream records that could not be evaluated.

A replay (`dlq redrive --queue evaluator`) hands each stored record, as a one-record
Lambda-shaped DynamoDB stream event, to the real evaluator handler
(`functions.evaluator.handler.on_conversion_change`, imported only when needed), exactly as
Lambda would. The evaluator records deliveries with a conditional write keyed by (postback,
conversion, status), so a replay never doubles a delivery.

- The handler reports the record in `batchItemFailures`, or raises: the DLQ copy stays.
- Otherwise the DLQ copy is deleted. If the record is still malformed, the evaluator itself
  dead-letters it again (a new DLQ message, reported as success) and the old copy is deleted:
  the record is never lost, and this run does not replay the new copy a second time.
"""

from __future__ import annotations

import copy
import importlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack

from functions.cli.dlq import DeadLetterQueue, Outcome, RedriveReport, ScanOptions
from functions.cli.output import Progress
from functions.cli.pacing import Pacer
from functions.cli.scanning import QueueScan
from functions.core.model import utc_now
from functions.core.redrive import ConversionDeadLetterEntry, DeadLetterFilter, parse_conversion_dead_letter
from functions.storage.queues import Queue, ReceivedMessage

EVALUATOR_HANDLER = "functions.evaluator.handler.on_conversion_change"
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


def _record_identity(entry: ConversionDeadLetterEntry) -> str:
    record = entry.record or {}
    return str(record.get("eventID") or entry.sequence_number or entry.message_id)


class ConversionDeadLetters(DeadLetterQueue[ConversionDeadLetterEntry]):
    GROUPS = ("reason", "affiliate", "event")

    def __init__(
        self,
        dlq: Queue,
        *,
        stream_arn: str,
        region: str,
        handler_loader: Callable[[], StreamHandler] = load_evaluator_handler,
        **options: Unpack[ScanOptions],
    ) -> None:
        super().__init__(dlq, **options)
        self._stream_arn = stream_arn
        self._region = region
        self._handler_loader = handler_loader

    def _entry(self, message: ReceivedMessage) -> ConversionDeadLetterEntry:
        return parse_conversion_dead_letter(message.message_id, message.body, message.attributes)

    def _selects(self, selection: DeadLetterFilter, entry: ConversionDeadLetterEntry) -> bool:
        return selection.matches_conversion(entry)

    def _item_id(self, entry: ConversionDeadLetterEntry) -> str | None:
        return entry.conversion_id

    def _identifiers(self, entry: ConversionDeadLetterEntry) -> tuple[str | None, ...]:
        return (entry.message_id, entry.conversion_id, entry.sequence_number)

    def _group_values(self, entry: ConversionDeadLetterEntry) -> tuple[str, ...]:
        return (entry.reason, entry.affiliate_id or "-", entry.event_name or "-")

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
