"""What each command prints: the table (or text) a person reads, and the JSON `--json` gives scripts.
Each view returns both, as (value, text)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from functions.cli.dlq import QueueStats, RedriveReport
from functions.cli.dlq_messages import ConversionDeadLetterEntry, DeadLetterEntry
from functions.cli.output import format_age, render_json, render_table
from functions.core.model import Delivery

View = tuple[Any, str]

MAX_TABLE_ROWS = 200
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


def report_view(report: RedriveReport, verb: str) -> View:
    counts = ", ".join(f"{name} {count}" for name, count in sorted(report.counts().items())) or "nothing to do"
    head = f"{'dry run: ' if report.dry_run else ''}{verb}: examined {report.examined}, selected {report.matched}"
    lines = [f"{head}; {counts}"]
    if report.outcomes:
        rows = [(o.item_id, o.message_id, o.result.value, o.why) for o in report.outcomes[:MAX_TABLE_ROWS]]
        lines.append(render_table(["id", "message", "result", "why"], rows, max_width=80))
        if len(report.outcomes) > MAX_TABLE_ROWS:
            lines.append(f"… and {len(report.outcomes) - MAX_TABLE_ROWS} more (use --json for all)")
    return report.as_dict(), "\n".join(lines)


def stats_view(stats: Sequence[QueueStats]) -> View:
    return {"queues": [s.as_dict() for s in stats]}, "\n\n".join(_stats_text(s) for s in stats)


def _delivery_row(entry: DeadLetterEntry) -> tuple[Any, ...]:
    return (
        entry.delivery_id,
        entry.kind.value,
        entry.affiliate_id,
        entry.postback_id,
        entry.target_host,
        entry.reason,
        entry.last_status_code,
        len(entry.attempts),
        entry.dead_lettered_at or _time(entry.sent_at),
        entry.message_id,
    )


def delivery_list_view(entries: Sequence[DeadLetterEntry]) -> View:
    return (
        {"messages": [_delivery_entry_dict(e) for e in entries]},
        render_table(DELIVERY_LIST_COLUMNS, [_delivery_row(e) for e in entries]),
    )


def evaluator_list_view(entries: Sequence[ConversionDeadLetterEntry]) -> View:
    return (
        {"messages": [_conversion_entry_dict(e) for e in entries]},
        render_table(EVALUATOR_LIST_COLUMNS, [_evaluator_row(e) for e in entries]),
    )


def evaluator_show_view(entry: ConversionDeadLetterEntry) -> View:
    as_dict = _conversion_entry_dict(entry, with_record=True)
    return as_dict, _conversion_show_text(entry, as_dict)


def delivery_show_view(entry: DeadLetterEntry | None, record: Delivery | None) -> View:
    """A DLQ message and/or its delivery record, with the attempts and the last response."""
    attempts = [a.logged() for a in record.attempts] if record is not None else list(entry.attempts if entry else ())
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
    return value, "\n".join(lines)
