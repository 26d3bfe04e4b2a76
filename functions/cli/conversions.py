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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.cli.deliveries import Outcome, QueueStats, RedriveReport
from functions.cli.output import Progress
from functions.cli.pacing import Pacer
from functions.cli.scanning import DEFAULT_MAX_MESSAGES, QueueScan
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


class ConversionDeadLetters:
    def __init__(
        self,
        dlq: Queue,
        *,
        stream_arn: str,
        region: str,
        handler_loader: Callable[[], StreamHandler] = load_evaluator_handler,
        clock: Callable[[], datetime] = utc_now,
        hold_seconds: int = 300,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        wait_seconds: int = 1,
    ) -> None:
        self._dlq = dlq
        self._stream_arn = stream_arn
        self._region = region
        self._handler_loader = handler_loader
        self._clock = clock
        self._hold_seconds = hold_seconds
        self._max_messages = max_messages
        self._wait_seconds = wait_seconds

    @property
    def queue_name(self) -> str:
        return self._dlq.name

    def _scan(self) -> QueueScan:
        return QueueScan(
            self._dlq, hold_seconds=self._hold_seconds, max_messages=self._max_messages, wait_seconds=self._wait_seconds
        )

    @staticmethod
    def _entry(message: ReceivedMessage) -> ConversionDeadLetterEntry:
        return parse_conversion_dead_letter(message.message_id, message.body, message.attributes)

    def stats(self, progress: Progress) -> QueueStats:
        depth = self._dlq.depth()
        groups: dict[str, Counter[str]] = {"reason": Counter(), "affiliate": Counter(), "event": Counter()}
        oldest: datetime | None = None
        with self._scan() as scan:
            for message in scan:
                entry = self._entry(message)
                groups["reason"][entry.reason] += 1
                groups["affiliate"][entry.affiliate_id or "-"] += 1
                groups["event"][entry.event_name or "-"] += 1
                if entry.sent_at is not None and (oldest is None or entry.sent_at < oldest):
                    oldest = entry.sent_at
                progress.advance()
            scanned = scan.seen
        progress.close()
        return QueueStats(
            queue=self._dlq.name,
            visible=depth["visible"],
            in_flight=depth["in_flight"],
            scanned=scanned,
            oldest_sent_at=oldest,
            oldest_age_seconds=(self._clock() - oldest).total_seconds() if oldest is not None else None,
            groups={name: dict(counter.most_common()) for name, counter in groups.items()},
        )

    def entries(
        self, selection: DeadLetterFilter, limit: int | None, progress: Progress
    ) -> list[ConversionDeadLetterEntry]:
        found: list[ConversionDeadLetterEntry] = []
        with self._scan() as scan:
            for message in scan:
                progress.advance()
                entry = self._entry(message)
                if selection.matches_conversion(entry):
                    found.append(entry)
                    if limit is not None and len(found) >= limit:
                        break
        progress.close()
        return found

    def find(self, identifier: str) -> ConversionDeadLetterEntry | None:
        """The message with this message id, or the oldest holding a record of this conversion id."""
        matches: list[ConversionDeadLetterEntry] = []
        with self._scan() as scan:
            for message in scan:
                entry = self._entry(message)
                if identifier in (entry.message_id, entry.conversion_id, entry.sequence_number):
                    matches.append(entry)
                    if entry.message_id == identifier:
                        break
        if not matches:
            return None
        return min(matches, key=lambda e: e.sent_at.timestamp() if e.sent_at else 0.0)

    def replay(
        self,
        selection: DeadLetterFilter,
        *,
        limit: int | None,
        pacer: Pacer,
        dry_run: bool,
        progress: Progress,
    ) -> RedriveReport:
        report = RedriveReport(dry_run=dry_run)
        handler = None if dry_run else self._handler_loader()
        replayed: set[str] = set()
        with self._scan() as scan:
            for message in scan:
                report.examined += 1
                entry = self._entry(message)
                if not selection.matches_conversion(entry):
                    continue
                report.matched += 1
                identity = _record_identity(entry)
                if identity in replayed:
                    why = "another copy of a record this run replayed"
                    outcome = Outcome(entry.conversion_id, entry.message_id, "left_in_dlq", why)
                elif entry.record is None:
                    outcome = Outcome(entry.conversion_id, entry.message_id, "skipped", "the message holds no record")
                elif handler is None:
                    outcome = Outcome(entry.conversion_id, entry.message_id, "would_replay", entry.reason)
                else:
                    replayed.add(identity)
                    pacer.wait()
                    outcome = self._replay_one(scan, message, entry, handler)
                report.outcomes.append(outcome)
                progress.advance(note=outcome.result)
                if limit is not None and report.matched >= limit:
                    break
        progress.close()
        return report

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

    def purge(
        self, selection: DeadLetterFilter, *, limit: int | None, dry_run: bool, progress: Progress
    ) -> RedriveReport:
        report = RedriveReport(dry_run=dry_run)
        with self._scan() as scan:
            for message in scan:
                report.examined += 1
                entry = self._entry(message)
                if not selection.matches_conversion(entry):
                    continue
                report.matched += 1
                if not dry_run:
                    scan.delete(message)
                result = "would_delete" if dry_run else "deleted"
                report.outcomes.append(Outcome(entry.conversion_id, entry.message_id, result, entry.reason))
                progress.advance()
                if limit is not None and report.matched >= limit:
                    break
        progress.close()
        return report
