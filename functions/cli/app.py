"""`python -m functions.cli`: the on-call tools (contract §7, runbook in docs/runbook.md).

Trigger: an engineer at a terminal. Contract: `main(argv) -> int`; human tables on stdout,
`--json` for scripts, progress and errors on stderr. Exit codes: 0 success, 1 failure
(AWS error, not found), 2 usage (bad arguments, missing confirmation), 3 partial (some selected
items were skipped or failed; a re-run picks them up). Resource names come from
`functions.settings`, so `AWS_ENDPOINT_URL=http://127.0.0.1:5000` points the tools at `make run`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from functions import settings as settings_module
from functions.cli.conversions import ConversionDeadLetters
from functions.cli.deliveries import DeliveryDeadLetters, Recovery
from functions.cli.dlq import QueueStats, RedriveReport
from functions.cli.output import Progress, format_age, render_json, render_table
from functions.cli.pacing import Pacer, RateArgumentError, parse_rate
from functions.cli.timeargs import TimeArgumentError, parse_time
from functions.core.model import Delivery, utc_now
from functions.core.redrive import ConversionDeadLetterEntry, DeadLetterEntry, DeadLetterFilter
from functions.settings import Settings, SettingsError, load_settings
from functions.storage.queues import Queue
from functions.storage.redrive import DeliveryRedriveRepository

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
MAX_TABLE_ROWS = 200
QUEUE_CHOICES = ("deliveries", "evaluator")
DELIVERY_LIST_COLUMNS = (
    "delivery",
    "kind",
    "affiliate",
    "postback",
    "host",
    "reason",
    "code",
    "tries",
    "dead-lettered",
    "message",
)
EVALUATOR_LIST_COLUMNS = (
    "message",
    "kind",
    "conversion",
    "affiliate",
    "event",
    "reason",
    "shard",
    "sequence",
    "records",
    "arrived",
    "dead-lettered",
)


class UsageError(Exception):
    """Arguments that parse but make no sense together."""


@dataclass
class Services:
    """What the commands work on; `build_services` wires the real ones, tests may pass their own."""

    deliveries: DeliveryDeadLetters
    conversions: ConversionDeadLetters
    recovery: Recovery
    clock: Callable[[], datetime]


def build_services(config: Settings) -> Services:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "sqs",
        region_name=config.region,
        config=Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 5}),
    )
    repository = DeliveryRedriveRepository()
    deliveries_queue = Queue(config.deliveries_queue, client)
    return Services(
        deliveries=DeliveryDeadLetters(Queue(config.deliveries_dlq, client), deliveries_queue, repository),
        conversions=ConversionDeadLetters(
            Queue(config.evaluator_dlq, client),
            stream_arn=settings_module.CONVERSIONS_STREAM_ARN,
            region=config.region,
        ),
        recovery=Recovery(deliveries_queue, repository, run_id=uuid.uuid4().hex),
        clock=utc_now,
    )


# ---------------------------------------------------------------- arguments


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _rate(text: str) -> float:
    try:
        return parse_rate(text)
    except RateArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _status_code(text: str) -> int:
    if not text.isdigit() or not 100 <= int(text) <= 599:
        raise argparse.ArgumentTypeError(f"{text!r} is not an HTTP status code")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    output.add_argument("--progress", action="store_true", help="show progress on stderr even when not a terminal")

    queue = argparse.ArgumentParser(add_help=False)
    queue.add_argument(
        "--queue",
        choices=QUEUE_CHOICES,
        default="deliveries",
        help="deliveries: the sender's DLQ (default); evaluator: conversion records and stream batch failures",
    )

    filters = argparse.ArgumentParser(add_help=False)
    group = filters.add_argument_group("filters (repeat a flag for OR; different flags AND)")
    group.add_argument("--affiliate", action="append", default=[], metavar="A", help="affiliate id")
    group.add_argument("--postback", action="append", default=[], metavar="P", help="postback id (deliveries only)")
    group.add_argument(
        "--status-code",
        action="append",
        default=[],
        type=_status_code,
        metavar="N",
        help="last HTTP status code (deliveries only)",
    )
    group.add_argument("--reason", action="append", default=[], metavar="R", help="dead-letter reason, e.g. gone")
    group.add_argument(
        "--since",
        metavar="T",
        help="dead-lettered at or after T (ISO 8601, or 30m / 2h / 1d ago); evaluator batch failures: "
        "their first record arrived at or after T",
    )
    group.add_argument(
        "--until",
        metavar="T",
        help="dead-lettered before T (ISO 8601, or 30m / 2h / 1d ago); evaluator batch failures: "
        "their first record arrived before T",
    )

    limit = argparse.ArgumentParser(add_help=False)
    limit.add_argument("--limit", type=_positive_int, metavar="N", help="act on at most N selected items")

    parser = argparse.ArgumentParser(
        prog="python -m functions.cli",
        description="On-call tools for postbacks: inspect the dead-letter queues, redrive, purge, recover.",
        epilog="Runbook: docs/runbook.md. Exit codes: 0 ok, 1 failure, 2 usage, 3 partial.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dlq = commands.add_parser("dlq", help="the dead-letter queues", description="Inspect and act on a DLQ.")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    stats = dlq_commands.add_parser(
        "stats",
        parents=[output],
        help="depth, oldest age and breakdown of each DLQ",
        description="Depth and age of the oldest message of each DLQ (or one, with --queue), grouped by "
        "reason, affiliate, postback and target host. Reads every message without consuming it.",
    )
    stats.add_argument("--queue", choices=QUEUE_CHOICES, help="only this DLQ (default: both)")

    dlq_commands.add_parser(
        "list",
        parents=[output, queue, filters, limit],
        help="list dead-lettered messages",
        description="One line per DLQ message: why it failed, its attempts, its last status code.",
    )

    show = dlq_commands.add_parser(
        "show",
        parents=[output, queue],
        help="one message in full: reason, attempts, last response",
        description="Show one DLQ message by delivery id or SQS message id (evaluator: message id, "
        "conversion id or sequence number), with the delivery record's attempts and last response.",
    )
    show.add_argument("id", metavar="ID", help="delivery id or SQS message id")

    redrive = dlq_commands.add_parser(
        "redrive",
        parents=[output, queue, filters, limit],
        help="move selected messages back to the deliveries queue (evaluator: replay them)",
        description="Deliveries: reset each selected delivery's schedule (id and history kept), put it back "
        "on the deliveries queue, then delete the DLQ copy. Safe to interrupt and re-run, and to run "
        "twice at once. Evaluator: replay each stored record through the evaluator, and each stream batch "
        "failure by reading its range back from the stream (not_replayable once the stream has dropped it, "
        "after 24 h); replays never double a delivery. Messages not selected stay in the DLQ untouched.",
    )
    redrive.add_argument(
        "--rate", type=_rate, metavar="N/s", help="at most N redrives per second (evaluator: N evaluator invocations)"
    )
    redrive.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")

    purge = dlq_commands.add_parser(
        "purge",
        parents=[output, queue, filters, limit],
        help="delete messages from a DLQ (needs --yes)",
        description="Delete the selected DLQ messages (all without filters). Deliveries stay dead-lettered "
        "in the table, so `recover` can still bring them back. Refuses without --yes.",
    )
    purge.add_argument("--yes", action="store_true", help="confirm the deletion")
    purge.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")

    recover = commands.add_parser(
        "recover",
        parents=[output, limit],
        help="re-queue dead-lettered deliveries from the deliveries table",
        description="Re-queue deliveries dead-lettered in [--since, --until) found in the deliveries table "
        "(works after the DLQ copy has expired). Same reset as a redrive; DLQ copies of recovered "
        "deliveries are later dropped by `dlq redrive` without sending.",
    )
    recover.add_argument("--since", required=True, metavar="T", help="ISO 8601, or 30m / 2h / 1d ago")
    recover.add_argument("--until", metavar="T", help="ISO 8601, or 30m / 2h / 1d ago (default: now)")
    recover.add_argument("--affiliate", action="append", default=[], metavar="A")
    recover.add_argument("--postback", action="append", default=[], metavar="P")
    recover.add_argument("--reason", action="append", default=[], metavar="R")
    recover.add_argument("--status-code", action="append", default=[], type=_status_code, metavar="N")
    recover.add_argument("--rate", type=_rate, metavar="N/s", help="at most N re-queues per second")
    recover.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
    return parser


def _selection(args: argparse.Namespace, now: datetime) -> DeadLetterFilter:
    since = parse_time(args.since, now) if getattr(args, "since", None) else None
    until = parse_time(args.until, now) if getattr(args, "until", None) else None
    if since is not None and until is not None and since >= until:
        raise UsageError("--since must be before --until")
    if getattr(args, "queue", None) == "evaluator" and (args.postback or args.status_code):
        raise UsageError("--postback and --status-code do not apply to the evaluator DLQ (it holds conversion records)")
    return DeadLetterFilter(
        affiliate_ids=frozenset(getattr(args, "affiliate", [])),
        postback_ids=frozenset(getattr(args, "postback", [])),
        reasons=frozenset(getattr(args, "reason", [])),
        status_codes=frozenset(getattr(args, "status_code", [])),
        since=since,
        until=until,
    )


# ---------------------------------------------------------------- rendering


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _stats_text(stats: QueueStats) -> str:
    lines = [
        f"{stats.queue}: depth {stats.visible + stats.in_flight} (visible {stats.visible}, in flight "
        f"{stats.in_flight}); oldest message {format_age(stats.oldest_age_seconds)} old "
        f"({_time(stats.oldest_sent_at) or 'none'}); scanned {stats.scanned}"
    ]
    for name, counts in stats.groups.items():
        if not counts:
            continue
        top = list(counts.items())[:10]
        rest = len(counts) - len(top)
        lines.append("")
        lines.append(render_table([f"by {name.replace('_', ' ')}", "messages"], top))
        if rest > 0:
            lines.append(f"… and {rest} more (use --json for all)")
    return "\n".join(lines)


def _delivery_entry_dict(entry: DeadLetterEntry) -> dict[str, Any]:
    result: dict[str, Any] = {
        "message_id": entry.message_id,
        "kind": entry.kind.value,
        "delivery_id": entry.delivery_id,
        "affiliate_id": entry.affiliate_id,
        "postback_id": entry.postback_id,
        "conversion_id": entry.conversion_id,
        "conversion_status": entry.conversion_status,
        "target_host": entry.target_host,
        "reason": entry.reason,
        "last_status_code": entry.last_status_code,
        "attempt_count": len(entry.attempts),
        "dead_lettered_at": entry.dead_lettered_at,
        "sent_at": _time(entry.sent_at),
        "receive_count": entry.receive_count,
    }
    if not entry.kind.redrivable:  # set aside by the sender: the deliveries-queue message it kept
        result["original_message_id"] = entry.original_message_id
        result["original_body"] = entry.original_body
    return result


def _conversion_entry_dict(entry: ConversionDeadLetterEntry, with_record: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {
        "message_id": entry.message_id,
        "kind": entry.kind.value,
        "conversion_id": entry.conversion_id,
        "affiliate_id": entry.affiliate_id,
        "event_name": entry.event_name,
        "reason": entry.reason,
        "sequence_number": entry.sequence_number,
        "event_source_arn": entry.event_source_arn,
        "dead_lettered_at": entry.dead_lettered_at,
        "sent_at": _time(entry.sent_at),
        "receive_count": entry.receive_count,
        # stream_batch_failure: the range of the stream Lambda gave up on (condition, shard, sequence
        # numbers, batch size, arrival times); null for a stored record.
        "batch": entry.batch.as_dict() if entry.batch is not None else None,
    }
    if with_record:
        result["record"] = entry.record
        if entry.batch is not None:
            result["destination_record"] = entry.body
    return result


def _evaluator_row(entry: ConversionDeadLetterEntry) -> tuple[Any, ...]:
    batch = entry.batch
    if batch is None:
        return (
            entry.message_id,
            entry.kind.value,
            entry.conversion_id,
            entry.affiliate_id,
            entry.event_name,
            entry.reason,
            None,
            entry.sequence_number,
            1 if entry.record is not None else None,
            None,
            entry.dead_lettered_at or _time(entry.sent_at),
        )
    arrived = batch.first_arrival
    if batch.last_arrival and batch.last_arrival != batch.first_arrival:
        arrived = f"{batch.first_arrival or '?'} .. {batch.last_arrival}"
    return (
        entry.message_id,
        entry.kind.value,
        None,
        None,
        None,
        entry.reason,
        batch.shard_id,
        batch.sequence_range,
        batch.batch_size,
        arrived,
        entry.dead_lettered_at or _time(entry.sent_at),
    )


def _conversion_show_text(entry: ConversionDeadLetterEntry, as_dict: dict[str, Any]) -> str:
    nested = ("record", "batch", "destination_record")
    lines = [f"{k}: {v}" for k, v in as_dict.items() if k not in nested]
    if entry.batch is None:
        return "\n".join([*lines, "record:", render_json(entry.record)])
    lines += [f"{k}: {v}" for k, v in entry.batch.as_dict().items()]
    lines += [
        "",
        "Lambda gave up on this range of the stream; the message holds no records. `dlq redrive --queue evaluator` "
        "reads them back from the stream while it still holds them (24 h).",
        "destination record:",
        render_json(entry.body),
    ]
    return "\n".join(lines)


def _record_dict(record: Delivery) -> dict[str, Any]:
    return {
        "delivery_id": record.delivery_id,
        "state": record.state.value,
        "reason": record.reason,
        "affiliate_id": record.affiliate_id,
        "postback_id": record.postback_id,
        "conversion_id": record.conversion_id,
        "conversion_status": record.conversion_status,
        "target_host": record.target_host,
        "redrive_count": record.redrive_count,
        "dead_lettered_at": record.dead_lettered_at,
        "enqueued_at": record.enqueued_at,
        "next_attempt_at": record.next_attempt_at,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "attempts": [attempt.logged() for attempt in record.attempts],
    }


def _attempts_table(attempts: Sequence[dict[str, Any]]) -> str:
    rows = [
        (
            a.get("number"),
            a.get("at"),
            a.get("outcome"),
            a.get("status_code"),
            a.get("error"),
            a.get("duration_ms"),
            a.get("location") or a.get("retry_after"),
            a.get("response_excerpt"),
        )
        for a in attempts
    ]
    return render_table(["#", "at", "outcome", "code", "error", "ms", "location/retry-after", "response"], rows)


def _report_text(report: RedriveReport, verb: str) -> str:
    counts = ", ".join(f"{name} {count}" for name, count in sorted(report.counts().items())) or "nothing to do"
    head = f"{'dry run: ' if report.dry_run else ''}{verb}: examined {report.examined}, selected {report.matched}"
    lines = [f"{head}; {counts}"]
    if report.outcomes:
        rows = [(o.item_id, o.message_id, o.result, o.why) for o in report.outcomes[:MAX_TABLE_ROWS]]
        lines.append(render_table(["id", "message", "result", "why"], rows, max_width=80))
        if len(report.outcomes) > MAX_TABLE_ROWS:
            lines.append(f"… and {len(report.outcomes) - MAX_TABLE_ROWS} more (use --json for all)")
    return "\n".join(lines)


# ---------------------------------------------------------------- commands


class Command:
    def __init__(self, services: Services, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> None:
        self.services = services
        self.args = args
        self.stdout = stdout
        self.stderr = stderr

    def progress(self, label: str, total: int | None = None) -> Progress:
        enabled = bool(getattr(self.args, "progress", False)) or self.stderr.isatty()
        return Progress(label, self.stderr, enabled, total)

    def emit(self, value: Any, text: str) -> None:
        print(render_json(value) if self.args.json else text, file=self.stdout)

    def pacer(self) -> Pacer:
        return Pacer(getattr(self.args, "rate", None))

    def dlq_stats(self) -> int:
        queues = [self.args.queue] if self.args.queue else list(QUEUE_CHOICES)
        results = []
        for name in queues:
            target = self.services.deliveries if name == "deliveries" else self.services.conversions
            results.append(target.stats(self.progress(f"scanning {target.queue_name}")))
        self.emit({"queues": [s.as_dict() for s in results]}, "\n\n".join(_stats_text(s) for s in results))
        return EXIT_OK

    def dlq_list(self) -> int:
        selection = _selection(self.args, self.services.clock())
        if self.args.queue == "evaluator":
            conversions = self.services.conversions.entries(selection, self.args.limit, self.progress("scanning"))
            table = render_table(EVALUATOR_LIST_COLUMNS, [_evaluator_row(e) for e in conversions])
            self.emit({"messages": [_conversion_entry_dict(e) for e in conversions]}, table)
            return EXIT_OK
        deliveries = self.services.deliveries.entries(selection, self.args.limit, self.progress("scanning"))
        rows = [
            (
                e.delivery_id,
                e.kind.value,
                e.affiliate_id,
                e.postback_id,
                e.target_host,
                e.reason,
                e.last_status_code,
                len(e.attempts),
                e.dead_lettered_at or _time(e.sent_at),
                e.message_id,
            )
            for e in deliveries
        ]
        self.emit(
            {"messages": [_delivery_entry_dict(e) for e in deliveries]}, render_table(DELIVERY_LIST_COLUMNS, rows)
        )
        return EXIT_OK

    def dlq_show(self) -> int:
        identifier = self.args.id
        if self.args.queue == "evaluator":
            found = self.services.conversions.find(identifier)
            if found is None:
                print(f"error: no message {identifier!r} in {self.services.conversions.queue_name}", file=self.stderr)
                return EXIT_FAILURE
            as_dict = _conversion_entry_dict(found, with_record=True)
            self.emit(as_dict, _conversion_show_text(found, as_dict))
            return EXIT_OK
        entry = self.services.deliveries.find(identifier)
        delivery_id = entry.delivery_id if entry is not None else identifier
        record = self.services.deliveries.record(delivery_id) if delivery_id else None
        if entry is None and record is None:
            print(
                f"error: {identifier!r} is neither a message in {self.services.deliveries.queue_name} "
                "nor a delivery id in the deliveries table",
                file=self.stderr,
            )
            return EXIT_FAILURE
        attempts = (
            [a.logged() for a in record.attempts] if record is not None else list(entry.attempts if entry else ())
        )
        value: dict[str, Any] = {
            "in_dlq": entry is not None,
            "message": _delivery_entry_dict(entry) if entry is not None else None,
            "record": _record_dict(record) if record is not None else None,
            "last_response": attempts[-1] if attempts else None,
        }
        lines = []
        if entry is not None:
            lines += [f"{k}: {v}" for k, v in _delivery_entry_dict(entry).items()]
        else:
            lines.append("in DLQ: no (the delivery record is shown)")
        if record is not None:
            lines += [
                f"state: {record.state.value}",
                f"record reason: {record.reason}",
                f"redrive count: {record.redrive_count}",
                f"created at: {record.created_at}",
            ]
        elif entry is not None and not entry.kind.redrivable:
            lines.append(f"delivery record: none (the sender set this message aside: {entry.kind.value})")
        else:
            lines.append("delivery record: not found (expired after its retention?)")
        lines += ["", f"attempts ({len(attempts)}):", _attempts_table(attempts)]
        if attempts:
            last = attempts[-1]
            lines += [
                "",
                f"last response: status {last.get('status_code')} error {last.get('error')} "
                f"location {last.get('location')}",
                f"  excerpt: {last.get('response_excerpt')}",
            ]
        self.emit(value, "\n".join(lines))
        return EXIT_OK

    def dlq_redrive(self) -> int:
        selection = _selection(self.args, self.services.clock())
        if self.args.queue == "evaluator":
            run, verb, label = self.services.conversions.replay, "replay", "replaying"
        else:
            run, verb, label = self.services.deliveries.redrive, "redrive", "redriving"
        report = run(
            selection,
            limit=self.args.limit,
            pacer=self.pacer(),
            dry_run=self.args.dry_run,
            progress=self.progress(label),
        )
        self.emit(report.as_dict(), _report_text(report, verb))
        return self._exit_for(report)

    def dlq_purge(self) -> int:
        if not self.args.yes and not self.args.dry_run:
            print(
                "error: refusing to purge without --yes (nothing was deleted). Preview with --dry-run; "
                "delivery records stay in the table, so `recover` can bring purged deliveries back.",
                file=self.stderr,
            )
            return EXIT_USAGE
        selection = _selection(self.args, self.services.clock())
        target = self.services.conversions if self.args.queue == "evaluator" else self.services.deliveries
        report = target.purge(
            selection, limit=self.args.limit, dry_run=self.args.dry_run, progress=self.progress("purging")
        )
        self.emit(report.as_dict(), _report_text(report, f"purge {target.queue_name}"))
        return EXIT_OK

    def recover(self) -> int:
        now = self.services.clock()
        selection = _selection(self.args, now)
        report = self.services.recovery.run(
            selection,
            since=selection.since,
            until=selection.until,
            limit=self.args.limit,
            pacer=self.pacer(),
            dry_run=self.args.dry_run,
            progress=self.progress("recovering"),
        )
        self.emit(report.as_dict(), _report_text(report, "recover"))
        return self._exit_for(report)

    def _exit_for(self, report: RedriveReport) -> int:
        if not report.incomplete:
            return EXIT_OK
        gone = report.not_replayable
        if gone:
            print(
                f"{gone} stream range(s) are no longer in the conversions stream (24 h retention) and were left in "
                "the DLQ: recover those conversions from the conversion service's records (docs/runbook.md), "
                "then purge the messages",
                file=self.stderr,
            )
        if any(outcome.result in ("failed", "skipped") for outcome in report.outcomes):
            print("some selected items were skipped or failed (see above); a re-run picks them up", file=self.stderr)
        return EXIT_PARTIAL

    def run(self) -> int:
        if self.args.command == "recover":
            return self.recover()
        handlers: dict[str, Callable[[], int]] = {
            "stats": self.dlq_stats,
            "list": self.dlq_list,
            "show": self.dlq_show,
            "redrive": self.dlq_redrive,
            "purge": self.dlq_purge,
        }
        return handlers[self.args.dlq_command]()


def main(
    argv: Sequence[str] | None = None,
    *,
    services: Services | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2), message already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        active = services if services is not None else build_services(load_settings())
        return Command(active, args, out, err).run()
    except (UsageError, TimeArgumentError) as error:
        print(f"error: {error}", file=err)
        return EXIT_USAGE
    except SettingsError as error:
        print(f"error: configuration: {error}", file=err)
        return EXIT_FAILURE
    except ClientError as error:
        details = error.response.get("Error", {})
        print(f"error: AWS {details.get('Code', 'error')}: {details.get('Message', error)}", file=err)
        return EXIT_FAILURE
    except BotoCoreError as error:
        print(f"error: AWS: {error}", file=err)
        return EXIT_FAILURE
    except ImportError as error:
        print(f"error: cannot load the evaluator to replay records: {error}", file=err)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted: nothing is lost; a re-run picks up where this one stopped", file=err)
        return 130
