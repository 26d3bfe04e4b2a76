"""The command line of the on-call tools: commands, flags, and the selection they make."""

from __future__ import annotations

import argparse
from datetime import datetime
from enum import StrEnum

from functions import __version__
from functions.cli.pacing import RateArgumentError, parse_rate
from functions.cli.timeargs import parse_time
from functions.core.redrive import DeadLetterFilter


class UsageError(Exception):
    """Arguments that parse but make no sense together."""


class QueueName(StrEnum):
    """`--queue`: which dead-letter queue a command works on."""

    DELIVERIES = "deliveries"  # the sender's DLQ
    EVALUATOR = "evaluator"  # conversion records and stream batch failures


QUEUE_CHOICES = tuple(queue.value for queue in QueueName)


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
        default=QueueName.DELIVERIES.value,
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
        prog="postbacks",
        description="On-call tools for postbacks: the stage's status; inspect the dead-letter queues, redrive, "
        "purge, recover. Paged? Start with `postbacks status`.",
        epilog="Runbook: docs/runbook.md. Exit codes: 0 ok, 1 failure, 2 usage, 3 partial.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--stack",
        metavar="NAME",
        help="read the tables and queues from this CloudFormation stack's outputs (e.g. postbacks-prod) "
        "instead of the POSTBACKS_* variables",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser(
        "status",
        parents=[output],
        help="what is failing now: alarms, queues, deliveries of the last hour, paused hosts, the DLQs",
        description="Alarms in ALARM; depth and oldest message age of the deliveries queue and both DLQs "
        "(ages from CloudWatch, or from reading a DLQ); deliveries updated in the last hour by state (a "
        "bounded sample of the deliveries table, exact dead-letter count from its index); paused tracker "
        "hosts; each DLQ's top reasons. Changes nothing.",
    )
    status.add_argument(
        "--sample",
        type=_positive_int,
        default=2000,
        metavar="N",
        help="read at most N delivery records for the by-state counts (default 2000; cost: docs/cli.md#status)",
    )
    status.add_argument(
        "--no-dlq-scan",
        action="store_true",
        help="do not read the DLQs' messages (depths only; no reasons, no age where CloudWatch has none)",
    )

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

    commands.add_parser(
        "hosts",
        parents=[output],
        help="tracker hosts paused after repeated failures",
        description="List the tracker hosts (name:port) the sender has paused after consecutive failed "
        "attempts: paused, probing, or pause ended (the next attempt probes them).",
    )

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


def selection(args: argparse.Namespace, now: datetime) -> DeadLetterFilter:
    """The filter the arguments of a command select by; `UsageError` when they contradict each other."""
    since = parse_time(args.since, now) if getattr(args, "since", None) else None
    until = parse_time(args.until, now) if getattr(args, "until", None) else None
    if since is not None and until is not None and since >= until:
        raise UsageError("--since must be before --until")
    if getattr(args, "queue", None) == QueueName.EVALUATOR and (args.postback or args.status_code):
        raise UsageError("--postback and --status-code do not apply to the evaluator DLQ (it holds conversion records)")
    return DeadLetterFilter(
        affiliate_ids=frozenset(getattr(args, "affiliate", [])),
        postback_ids=frozenset(getattr(args, "postback", [])),
        reasons=frozenset(getattr(args, "reason", [])),
        status_codes=frozenset(getattr(args, "status_code", [])),
        since=since,
        until=until,
    )
