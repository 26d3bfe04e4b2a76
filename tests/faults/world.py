"""One scenario, simulated end to end: the stream, the evaluator, the queues, the sender, the
trackers and the on-call engineer, on one simulated clock.

The real `ConversionEvaluator`, `DeliverySender`, `Queue` adapter and on-call tools
(`DeliveryDeadLetters` redrive and purge, `Recovery`, `ConversionDeadLetters` replay) run against
the simulated stores, SQS and trackers, every port wrapped by the scenario's `FaultInjector`.
Lambda is played as the template configures it:

- **stream** (the evaluator's mapping): two shards, batches of up to 100 records available a
  moment after they are written; a reported record is retried from (records before it are done),
  a crash retries the whole batch; after `MaximumRetryAttempts` (100) or `MaximumRecordAgeInSeconds`
  (12 h) the batch goes to the on-failure destination (the evaluator DLQ, AWS's
  `DDBStreamBatchInfo` shape) and the shard moves on. The stream keeps records 24 h.
- **deliveries queue** (the sender's mapping): batches of up to 10, the queue's visibility timeout
  (180 s), `maxReceiveCount` 20 into the deliveries DLQ, 4 days' retention; a message reported as a
  batch item failure stays, the others are deleted; a crashed invocation deletes nothing. The sender
  runs with one worker thread, so the order of its calls — and the faults drawn for them — is the
  same on every run.

The on-call engineer replays the evaluator DLQ two hours after a stream batch fails, and at the end
(once every schedule is over and the DOWN trackers are back) clears the deliveries DLQ the
scenario's way; a command that stops part way (a crash, a partial run) is run again ten minutes
later, up to ten times. Then the system runs until it is quiet, and the checker reads the result.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from functions.cli.conversions import ConversionDeadLetters
from functions.cli.deliveries import DeliveryDeadLetters, Recovery
from functions.cli.dlq import RedriveReport, RunOptions
from functions.cli.output import Progress
from functions.cli.pacing import Pacer
from functions.core.model import format_timestamp
from functions.core.redrive import DeadLetterFilter
from functions.core.schedule import RetryPolicy
from functions.evaluator.rules_cache import RulesCache
from functions.evaluator.service import ConversionEvaluator
from functions.sender.ports import IncomingMessage
from functions.sender.service import DeliverySender
from functions.storage.queues import Queue
from functions.storage.streams import StreamRangeUnavailable
from tests.faults.clock import EPOCH_START, SimClock
from tests.faults.faults import FaultInjector, Faulty, SimulatedCrash, dynamodb_error, health_error
from tests.faults.scenarios import INDEX_LAG_SECONDS, Change, Edit, OnCall, Scenario
from tests.faults.sqs import SimMessage, SimulatedSqs
from tests.faults.store import SimDeliveries, SimPostbacks
from tests.faults.trackers import GetLedger, SimulatedTrackers
from tests.support.conversions import conversion
from tests.support.fakes import InMemoryHealth
from tests.support.streams import DEFAULT_REGION, DEFAULT_STREAM_ARN, stream_record

DELIVERIES = "postback-deliveries"
DELIVERIES_DLQ = "postback-deliveries-dlq"
EVALUATOR_DLQ = "postback-evaluator-dlq"
TEMPLATE = Path(__file__).resolve().parents[2] / "infrastructure" / "template.json"


@dataclass(frozen=True)
class QueueSettings:
    """The deliveries queue as the template declares it (read from it, so the campaign follows it)."""

    visibility_timeout: int
    retention_seconds: int
    max_receive_count: int
    dlq_retention_seconds: int


@functools.cache
def queue_settings() -> QueueSettings:
    resources = json.loads(TEMPLATE.read_text())["Resources"]
    queue = resources["DeliveriesQueue"]["Properties"]
    return QueueSettings(
        visibility_timeout=int(queue["VisibilityTimeout"]),
        retention_seconds=int(queue["MessageRetentionPeriod"]),
        max_receive_count=int(queue["RedrivePolicy"]["maxReceiveCount"]),
        dlq_retention_seconds=int(resources["DeliveriesDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]),
    )


SENDER_TIMEOUT_SECONDS = 30.0
STREAM_MAX_RETRIES = 100
STREAM_MAX_RECORD_AGE = 43_200
STREAM_RETENTION = 86_400
REPLAY_AFTER_SECONDS = 7_200
ON_CALL_ROUNDS = 10
HORIZON_SECONDS = 12 * 86_400
MAX_STEPS = 20_000


@dataclass
class Shard:
    shard_id: str
    records: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (available at, record)
    checkpoint: int = 0
    retries: int = 0
    next_try_at: float = 0.0

    def next_at(self) -> float | None:
        if self.checkpoint >= len(self.records):
            return None
        return max(self.next_try_at, self.records[self.checkpoint][0])

    def batch(self, now: float) -> list[dict[str, Any]]:
        """The records from the checkpoint on, in shard order, that have arrived (at most 100)."""
        batch: list[dict[str, Any]] = []
        for available, record in self.records[self.checkpoint : self.checkpoint + 100]:
            if available > now:
                break
            batch.append(record)
        return batch


@dataclass
class Timeline:
    """What happened, for the checker and the report."""

    evaluator_invocations: int = 0
    sender_invocations: int = 0
    stream_batch_failures: int = 0
    on_call_runs: list[str] = field(default_factory=list)
    stuck: bool = False
    purged_at: str | None = None  # when the on-call engineer first purged the deliveries DLQ
    # Exceptions that escaped a handler (Lambda counts a function error and retries): findings, not faults.
    unhandled: list[str] = field(default_factory=list)


class StreamReader:
    """The conversions stream as the replay reads it back (`StreamRangeReader.read`): 24 h retention."""

    def __init__(self, world: World) -> None:
        self._world = world

    def read(self, stream_arn: str, shard_id: str, start: str, end: str) -> list[dict[str, Any]]:
        now = self._world.clock.epoch()
        shard = next(s for s in self._world.shards if s.shard_id == shard_id)
        found = [r for _, r in shard.records if int(start) <= int(r["dynamodb"]["SequenceNumber"]) <= int(end)]
        if not found or any(
            now - float(r["dynamodb"]["ApproximateCreationDateTime"]) > STREAM_RETENTION for r in found
        ):
            raise StreamRangeUnavailable(f"{start}..{end} trimmed")
        return found


class World:
    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.rng = random.Random(f"world:{seed}:{scenario.index}")
        self.clock = SimClock(EPOCH_START)
        self.injector = FaultInjector(self.rng, scenario.kind, scenario.rate)
        self.ledger = GetLedger()
        self.sqs = SimulatedSqs(self.clock, self.injector)
        template = queue_settings()
        self.sqs.create_queue(EVALUATOR_DLQ, retention_seconds=template.dlq_retention_seconds)
        self.sqs.create_queue(DELIVERIES_DLQ, retention_seconds=template.dlq_retention_seconds)
        self.sqs.create_queue(
            DELIVERIES,
            visibility_timeout=template.visibility_timeout,
            retention_seconds=template.retention_seconds,
            dead_letter=DELIVERIES_DLQ,
            max_receives=template.max_receive_count,
        )
        self.store = SimDeliveries(self.ledger)
        self.postbacks = SimPostbacks(self.clock)
        self.trackers = SimulatedTrackers(self.clock, self.injector, self.ledger)
        self.timeline = Timeline()
        self.shards = [Shard("shard-0"), Shard("shard-1")]
        self._sequence = 0
        self._events: list[tuple[float, str, Callable[[], None]]] = []
        self._pending_edits = {plan.postback.id: plan for plan in scenario.postbacks if plan.edit is not None}
        for plan in scenario.postbacks:
            self.trackers.hosts[plan.postback.url.split("/")[2]] = plan.behaviour
            self.postbacks.save(plan.postback, at=self.clock.epoch() - 86_400)
        self.evaluator = self._evaluator()
        sender_options: dict[str, Any] = {}
        if "sleep" in inspect.signature(DeliverySender).parameters:
            sender_options["sleep"] = self.clock.sleep  # the outcome write's retry pauses: simulated time
        self.sender = DeliverySender(
            deliveries=self._faulty_deliveries(),
            postbacks=Faulty(self.postbacks, "postbacks", self.injector, dynamodb_error),
            health=Faulty(InMemoryHealth(), "health", self.injector, health_error),
            http=self.trackers,
            queue=self.queue(DELIVERIES),
            dead_letters=self.queue(DELIVERIES_DLQ),
            policy=RetryPolicy(base_seconds=30, max_attempts=13),
            max_concurrency=1,
            per_host_concurrency=10,
            lease_seconds=30,
            request_deadline_seconds=10,
            clock=self.clock,
            uniform=self.rng.uniform,
            monotonic=self.clock.epoch,
            **sender_options,
        )
        self._write_changes()

    # Wiring.

    def queue(self, name: str) -> Queue:
        return Queue(name, self.sqs)

    def _faulty_deliveries(self) -> Faulty:
        return Faulty(self.store, "deliveries", self.injector, dynamodb_error)

    def _evaluator(self) -> ConversionEvaluator:
        faulty_postbacks = Faulty(self.postbacks, "postbacks", self.injector, dynamodb_error)
        optional: dict[str, Any] = {}
        if "deliveries_dead_letters" in inspect.signature(ConversionEvaluator).parameters:
            optional["deliveries_dead_letters"] = self.queue(DELIVERIES_DLQ)
        return ConversionEvaluator(
            postbacks=faulty_postbacks,
            rules_versions=faulty_postbacks,
            deliveries=self._faulty_deliveries(),
            deliveries_queue=self.queue(DELIVERIES),
            dead_letter_queue=self.queue(EVALUATOR_DLQ),
            rules_cache=RulesCache(5, clock=self.clock.epoch, wall_clock=self.clock.epoch),
            delivery_ttl_days=90,
            clock=self.clock,
            **optional,
        )

    def _write_changes(self) -> None:
        """The conversion service's writes, each a stream record available 0.2-2 s later."""
        start = self.clock.epoch()
        keep_edit_at: float | None = None
        for change in self.scenario.changes:
            written = start + change.offset_seconds
            self._sequence += 1
            record = self._record(change, written)
            available = written + self.rng.uniform(0.2, 2.0)
            self.shards[change.shard].records.append((available, record))
            keep_edit_at = written + 0.1 if keep_edit_at is None else keep_edit_at
        for plan in self.scenario.postbacks:
            if plan.edit is Edit.BROADEN and plan.edit_at is not None:
                self.postbacks.index_lag = INDEX_LAG_SECONDS
                self._at(start + plan.edit_at, "edit", lambda plan=plan: self._apply_edit(plan.postback.id))
            if plan.edit is Edit.KEEP and keep_edit_at is not None:
                # Saved after the first change was written, before it reaches the evaluator.
                self._at(keep_edit_at, "edit", lambda plan=plan: self._apply_edit(plan.postback.id))
        for shard in self.shards:
            shard.records.sort(key=lambda pair: int(pair[1]["dynamodb"]["SequenceNumber"]))
            # A shard delivers in order: a record is never available before the one ahead of it.
            latest = 0.0
            for position, (available, record) in enumerate(shard.records):
                latest = max(latest, available)
                shard.records[position] = (latest, record)

    def _record(self, change: Change, written: float) -> dict[str, Any]:
        base = {
            "conversion_id": change.conversion_id,
            "affiliate_id": self.scenario.affiliate_id,
            "offer_id": "offer-1",
            "conversion_type": change.conversion_type,
            "aff_s1": change.aff_s1,
        }
        new = conversion(**base, status=change.new_status)
        old = conversion(**base, status=change.old_status) if change.old_status is not None else None
        return stream_record(
            "INSERT" if old is None else "MODIFY",
            new=new,
            old=old,
            sequence_number=f"{self._sequence:021d}",
            created_at=int(written),
        )

    def _at(self, when: float, name: str, action: Callable[[], None]) -> None:
        self._events.append((when, name, action))
        self._events.sort(key=lambda event: (event[0], event[1]))

    def _apply_edit(self, postback_id: str) -> None:
        plan = self._pending_edits.pop(postback_id, None)
        if plan is None or plan.edited is None:
            return
        edited = replace(plan.edited, updated_at=format_timestamp(self.clock()))
        self.postbacks.save(edited)
        if not edited.enabled:
            # What the API does when a postback is disabled: cancel its waiting deliveries at once.
            self.store.cancel_waiting_for_postback(
                postback_id, "postback_disabled", self.clock(), self.clock() - timedelta(days=4)
            )

    # The run.

    def run(self) -> None:
        self._run_until_quiet()
        self.clock.advance(3_600)
        self.trackers.healed = True
        self._on_call_deliveries()
        self._run_until_quiet()

    def _run_until_quiet(self) -> None:
        horizon = self.clock.epoch() + HORIZON_SECONDS
        for _ in range(MAX_STEPS):
            now = self.clock.epoch()
            if self._events and self._events[0][0] <= now:
                _, _, action = self._events.pop(0)
                action()
                continue
            ready = [shard for shard in self.shards if (shard.next_at() or float("inf")) <= now]
            if ready:
                self._invoke_evaluator(self.rng.choice(ready) if len(ready) > 1 else ready[0])
                continue
            visible = self.sqs.next_visible_at(DELIVERIES)
            if visible is not None and visible <= now:
                self._invoke_sender()
                continue
            upcoming = [
                t
                for t in [*(s.next_at() for s in self.shards), visible, *(e[0] for e in self._events[:1])]
                if t is not None
            ]
            if not upcoming:
                return
            if min(upcoming) > horizon:
                self.timeline.stuck = True
                return
            self.clock.advance_to(min(upcoming))
        self.timeline.stuck = True

    def _invoke_evaluator(self, shard: Shard) -> None:
        now = self.clock.epoch()
        batch = shard.batch(now)
        self.timeline.evaluator_invocations += 1
        name = f"evaluator-{self.timeline.evaluator_invocations}"
        try:
            with self.injector.invocation_scope(name):
                failed = self.evaluator.process(batch).failed_sequence_number
        except SimulatedCrash:
            failed = batch[0]["dynamodb"]["SequenceNumber"]
        except Exception as error:  # a function error: Lambda retries the whole batch
            self.timeline.unhandled.append(f"evaluator: {type(error).__name__}: {error}")
            failed = batch[0]["dynamodb"]["SequenceNumber"]
        self.clock.advance(0.05)
        if self.timeline.evaluator_invocations == 1:
            for plan in self.scenario.postbacks:
                if plan.edit is Edit.UNMATCH:
                    self._apply_edit(plan.postback.id)
        if failed is None:
            shard.checkpoint += len(batch)
            shard.retries = 0
            return
        position = next(i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] == failed)
        if position > 0:
            shard.checkpoint += position
            shard.retries = 0
        shard.retries += 1
        shard.next_try_at = self.clock.epoch() + min(2.0**shard.retries, 60.0)
        first = shard.records[shard.checkpoint][1]
        age = self.clock.epoch() - float(first["dynamodb"]["ApproximateCreationDateTime"])
        if shard.retries > STREAM_MAX_RETRIES or age > STREAM_MAX_RECORD_AGE:
            self._stream_batch_failure(
                shard,
                batch[position:],
                "RetryAttemptsExhausted" if age <= STREAM_MAX_RECORD_AGE else "RecordAgeExceeded",
            )

    def _stream_batch_failure(self, shard: Shard, batch: list[dict[str, Any]], condition: str) -> None:
        """Lambda's on-failure destination: the range, no records; the shard moves on."""

        def arrival(record: dict[str, Any]) -> str:
            return format_timestamp(
                self.clock().fromtimestamp(
                    float(record["dynamodb"]["ApproximateCreationDateTime"]), self.clock().tzinfo
                )
            )

        body = {
            "requestContext": {
                "requestId": f"req-{self._sequence}",
                "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:evaluator",
                "condition": condition,
                "approximateInvokeCount": shard.retries,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": format_timestamp(self.clock()),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": batch[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": batch[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": arrival(batch[0]),
                "approximateArrivalOfLastRecord": arrival(batch[-1]),
                "batchSize": len(batch),
                "streamArn": DEFAULT_STREAM_ARN,
            },
        }
        self.sqs.send_message(self.sqs.queue(EVALUATOR_DLQ).url, json.dumps(body))
        shard.checkpoint += len(batch)
        shard.retries = 0
        self.timeline.stream_batch_failures += 1
        self._at(self.clock.epoch() + REPLAY_AFTER_SECONDS, "replay", self._on_call_replay)

    def _invoke_sender(self) -> None:
        polled = self.sqs.poll(DELIVERIES, 10)
        receipts = {m.message_id: m.receipt or "" for m in polled}
        messages = [self._incoming(m) for m in polled]
        self.timeline.sender_invocations += 1
        name = f"sender-{self.timeline.sender_invocations}"
        started = self.clock.epoch()

        def remaining_ms() -> int:
            return int((SENDER_TIMEOUT_SECONDS - (self.clock.epoch() - started)) * 1000)

        try:
            with self.injector.invocation_scope(name):
                failed = set(self.sender.process_batch(messages, remaining_ms))
        except SimulatedCrash:
            self.ledger.invocation_crashed(name)
        except Exception as error:  # a function error: Lambda deletes nothing, every message comes back
            self.timeline.unhandled.append(f"sender: {type(error).__name__}: {error}")
            self.ledger.invocation_ended(name)
        else:
            self.ledger.invocation_ended(name)
            for message in messages:
                if message.message_id not in failed:
                    self.sqs.ack(DELIVERIES, receipts[message.message_id])
        self.clock.advance(0.05)
        if self.timeline.sender_invocations == 1:
            for plan in self.scenario.postbacks:
                if plan.edit is Edit.DISABLE:
                    self._at(self.clock.epoch() + 45, "disable", lambda plan=plan: self._apply_edit(plan.postback.id))

    def _incoming(self, message: SimMessage) -> IncomingMessage:
        """The message as Lambda's event gives it: id, receipt handle, body and, where the sender reads
        them, `ApproximateReceiveCount` and when it was received."""
        fields = {f.name for f in dataclasses.fields(IncomingMessage)}
        extra: dict[str, Any] = {}
        if "receive_count" in fields:
            extra["receive_count"] = message.receive_count
        if "received_at" in fields and message.received_at is not None:
            extra["received_at"] = datetime.fromtimestamp(message.received_at, UTC)
        return IncomingMessage(message.message_id, message.receipt or "", message.body, **extra)

    # The on-call engineer.

    def _options(self) -> RunOptions:
        return RunOptions(
            limit=None, pacer=Pacer(None), dry_run=False, progress=Progress("", io.StringIO(), enabled=False)
        )

    def _on_call(self, what: str, run: Callable[[], RedriveReport]) -> None:
        for attempt in range(ON_CALL_ROUNDS):
            name = f"on-call {what} #{attempt + 1}"
            try:
                with self.injector.invocation_scope(name):
                    report = run()
            except SimulatedCrash:
                self.timeline.on_call_runs.append(f"{name}: crashed")
            except Exception as error:  # an AWS error the command reports as exit 1
                self.timeline.on_call_runs.append(f"{name}: {type(error).__name__}")
            else:
                self.timeline.on_call_runs.append(f"{name}: {report.counts()}")
                if not report.incomplete:
                    return
            self.clock.advance(600)

    def _on_call_replay(self) -> None:
        if not self.sqs.messages(EVALUATOR_DLQ):
            return
        replayer = self._evaluator()

        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            return replayer.process(event["Records"]).as_response()

        dlq = ConversionDeadLetters(
            self.queue(EVALUATOR_DLQ),
            stream_arn=DEFAULT_STREAM_ARN,
            region=DEFAULT_REGION,
            streams=StreamReader(self),  # type: ignore[arg-type]
            handler_loader=lambda: handler,
            clock=self.clock,
            wait_seconds=0,
        )
        self._on_call("replay", lambda: dlq.replay(DeadLetterFilter(), self._options()))

    def _on_call_deliveries(self) -> None:
        self._on_call_replay()
        repository: Any = self._faulty_deliveries()
        dlq = DeliveryDeadLetters(
            self.queue(DELIVERIES_DLQ), self.queue(DELIVERIES), repository, clock=self.clock, wait_seconds=0
        )
        since = self.clock() - timedelta(days=30)
        runs = 0

        def recover() -> RedriveReport:
            nonlocal runs
            runs += 1
            recovery = Recovery(self.queue(DELIVERIES), repository, run_id=f"run-{runs}", clock=self.clock)
            return recovery.run(DeadLetterFilter(since=since), self._options())

        def redrive() -> RedriveReport:
            return dlq.redrive(DeadLetterFilter(), self._options())

        def purge() -> RedriveReport:
            self.timeline.purged_at = self.timeline.purged_at or format_timestamp(self.clock())
            return dlq.purge(DeadLetterFilter(), self._options())

        plan = {
            OnCall.REDRIVE: [("redrive", redrive)],
            OnCall.PURGE_THEN_RECOVER: [("purge", purge), ("recover", recover)],
            OnCall.RECOVER_THEN_REDRIVE: [("recover", recover), ("redrive", redrive)],
        }[self.scenario.on_call]
        for what, run in plan:
            self._on_call(what, run)
