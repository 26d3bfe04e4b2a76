"""`status`: the first thing to run when paged — alarms firing, queue depths and oldest ages, deliveries
by state in the last hour, paused hosts, and what the two DLQs hold (docs/cli.md#status).

Each part is read on its own: a part that fails (a missing permission, CloudWatch unreachable) is
shown as unavailable with its error, and the rest is still shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.cli.dlq import QueueStats
from functions.cli.output import Progress, format_age, render_table
from functions.core.host_pause import HostState
from functions.storage.cloudwatch import FiringAlarm, firing_alarms, oldest_message_ages
from functions.storage.delivery_sample import DeliverySampler, StateSample
from functions.storage.hosts import pause_end_text
from functions.storage.queues import Queue

View = tuple[Any, str]
DLQ_TOP_REASONS = 5


@dataclass(frozen=True)
class QueueLine:
    role: str  # deliveries | deliveries DLQ | evaluator DLQ
    name: str
    visible: int | None
    in_flight: int | None
    delayed: int | None
    oldest_age_seconds: float | None
    age_source: str | None  # cloudwatch | scan | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class StatusReport:
    at: datetime
    stage: str
    window_seconds: float
    queues: list[QueueLine] = field(default_factory=list)
    alarms: list[FiringAlarm] | None = None
    deliveries: StateSample | None = None
    paused_hosts: list[HostState] | None = None
    dlqs: list[QueueStats] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # part -> why


@dataclass(frozen=True)
class StatusSources:
    """What `status` reads; `functions.cli.app.build_services` wires them from `functions.bootstrap`."""

    stage: str
    queues: Sequence[tuple[str, Queue]]  # (role, queue): the deliveries queue and both DLQs
    cloudwatch: Callable[[], Any]
    sampler: DeliverySampler
    paused_hosts: Callable[[], list[HostState]] | None
    dlq_stats: Sequence[Callable[[Progress], QueueStats]]


def _error(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', error)}"
    return f"{type(error).__name__}: {error}"


READ_ERRORS = (ClientError, BotoCoreError, OSError, ValueError)


def read_status(
    sources: StatusSources,
    now: datetime,
    *,
    window: timedelta,
    sample: int,
    scan_dlqs: bool,
    progress: Callable[[str], Progress],
) -> StatusReport:
    report = StatusReport(at=now, stage=sources.stage, window_seconds=window.total_seconds())
    try:
        report.alarms = firing_alarms(sources.cloudwatch(), f"postbacks-{sources.stage}-")
    except READ_ERRORS as error:
        report.unavailable["alarms"] = _error(error)
    ages: dict[str, float | None] = {}
    try:
        ages = oldest_message_ages(sources.cloudwatch(), [queue.name for _, queue in sources.queues], now)
    except READ_ERRORS as error:
        report.unavailable["queue ages"] = _error(error)
    if scan_dlqs:
        for stats in sources.dlq_stats:
            try:
                report.dlqs.append(stats(progress("reading a DLQ")))
            except READ_ERRORS as error:
                report.unavailable.setdefault("dlqs", _error(error))
    scanned = {stats.queue: stats for stats in report.dlqs}
    for role, queue in sources.queues:
        age, source = ages.get(queue.name), "cloudwatch" if ages.get(queue.name) is not None else None
        if age is None and queue.name in scanned and scanned[queue.name].oldest_age_seconds is not None:
            age, source = scanned[queue.name].oldest_age_seconds, "scan"
        try:
            counts = queue.counts()
        except READ_ERRORS as error:
            report.queues.append(QueueLine(role, queue.name, None, None, None, age, source, _error(error)))
            continue
        report.queues.append(
            QueueLine(role, queue.name, counts["visible"], counts["in_flight"], counts["delayed"], age, source)
        )
    try:
        report.deliveries = sources.sampler.recent_states(now - window, sample=sample)
    except READ_ERRORS as error:
        report.unavailable["deliveries"] = _error(error)
    if sources.paused_hosts is None:
        report.unavailable["paused hosts"] = "this version has no host pauses"
    else:
        try:
            report.paused_hosts = [host for host in sources.paused_hosts() if host.paused_at(now.timestamp())]
        except READ_ERRORS as error:
            report.unavailable["paused hosts"] = _error(error)
    return report


def _top(groups: dict[str, dict[str, int]], name: str) -> str:
    counts = groups.get(name, {})
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:DLQ_TOP_REASONS]
    return ", ".join(f"{key} {count}" for key, count in top) or "-"


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def status_view(report: StatusReport) -> View:
    hours = report.window_seconds / 3600
    window = f"{hours:g} h" if hours >= 1 else f"{report.window_seconds / 60:g} min"
    lines = [f"postbacks status: stage {report.stage}, {report.at.isoformat(timespec='seconds')}", ""]
    if report.alarms is not None:
        if report.alarms:
            lines.append(f"ALARMS FIRING ({len(report.alarms)}):")
            lines += [f"  {alarm.name} since {alarm.since or '?'}: {alarm.reason}" for alarm in report.alarms]
        else:
            lines.append("alarms: none firing")
        lines.append("")
    lines.append(
        render_table(
            ("queue", "role", "visible", "in flight", "delayed", "oldest"),
            [
                (
                    line.name,
                    line.role,
                    _count(line.visible),
                    _count(line.in_flight),
                    _count(line.delayed),
                    line.error
                    or (f"{format_age(line.oldest_age_seconds)} ({line.age_source})" if line.age_source else "-"),
                )
                for line in report.queues
            ],
        )
    )
    sample = report.deliveries
    if sample is not None:
        lines.append("")
        exact = sample.complete
        shown = sample.states if exact else (sample.estimates or sample.states)
        how = (
            "exact (the whole table was read)"
            if exact
            else f"estimated from a sample of {sample.read:,} of ~{_count(sample.table_items)} records"
        )
        lines.append(f"deliveries updated in the last {window}, by state: {how}, {sample.read_units:g} read units")
        lines.append(
            "  " + (", ".join(f"{state} {count:,}" for state, count in sorted(shown.items())) or "none in the sample")
        )
        more = "+" if sample.dead_lettered_limited else ""
        dead = f"{sample.dead_lettered:,}{more}"
        lines.append(f"  dead-lettered in the last {window} (by_dead_letter index, exact): {dead}")
    if report.paused_hosts is not None:
        lines.append("")
        if report.paused_hosts:
            lines.append(f"paused hosts ({len(report.paused_hosts)}):")
            lines += [
                f"  {host.host} until {pause_end_text(host.paused_until)} ({host.pauses} pause(s) in a row)"
                for host in report.paused_hosts
            ]
        else:
            lines.append("paused hosts: none")
    for stats in report.dlqs:
        lines.append("")
        lines.append(
            f"{stats.queue}: {stats.visible + stats.in_flight:,} message(s), oldest "
            f"{format_age(stats.oldest_age_seconds)}; reasons: {_top(stats.groups, 'reason')}"
        )
        if stats.visible + stats.in_flight:
            lines.append(f"  affiliates: {_top(stats.groups, 'affiliate')}")
    if report.unavailable:
        lines.append("")
        lines += [f"unavailable: {part}: {why}" for part, why in sorted(report.unavailable.items())]
    value = {
        "at": report.at.isoformat(),
        "stage": report.stage,
        "window_seconds": report.window_seconds,
        "alarms": None if report.alarms is None else [vars(alarm) for alarm in report.alarms],
        "queues": [line.as_dict() for line in report.queues],
        "deliveries": None if sample is None else sample.as_dict(),
        "paused_hosts": None
        if report.paused_hosts is None
        else [
            {"host": host.host, "paused_until": pause_end_text(host.paused_until), "pauses": host.pauses}
            for host in report.paused_hosts
        ],
        "dlqs": [stats.as_dict() for stats in report.dlqs],
        "unavailable": report.unavailable,
    }
    return value, "\n".join(lines)
