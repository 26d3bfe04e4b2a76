"""What both dead-letter queues share: reading one (`stats`, `list`, `show`), purging it, and the
report of a run that acts on selected items (redrive, replay, purge, recover).

A queue is read through a `QueueScan` (messages held, then released untouched); a subclass says
how to parse a message into an entry, which entries a filter selects, and how to describe one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypedDict, TypeVar, Unpack

from functions.cli.output import Progress
from functions.cli.pacing import Pacer
from functions.cli.scanning import DEFAULT_MAX_MESSAGES, QueueScan
from functions.core.model import utc_now
from functions.core.redrive import Action, DeadLetterFilter
from functions.storage.queues import Queue, ReceivedMessage


class Result(StrEnum):
    """What a run did with one selected item (`result` of the report's outcomes, and its `counts`)."""

    REDRIVEN = "redriven"  # reset, sent to the deliveries queue, DLQ copy deleted
    RESUMED = "resumed"  # an interrupted redrive finished
    DROPPED = "dropped"  # already back or finished: only the DLQ copy deleted
    REPLAYED = "replayed"  # evaluator DLQ: the evaluator took the record(s)
    DELETED = "deleted"  # purged
    LEFT_IN_DLQ = "left_in_dlq"  # nothing this run can do with it (set aside, handled earlier in the run)
    SKIPPED = "skipped"  # left for a re-run (busy, missing record, kept changing)
    FAILED = "failed"  # an AWS error or the evaluator's own failure; a re-run picks it up
    NOT_REPLAYABLE = "not_replayable"  # evaluator DLQ: the stream no longer holds the range
    REQUEUED = "requeued"  # an active delivery sent a message again (purge, recover), its record untouched
    # --dry-run: what the run would do: would_ + the purge, the replay or the redrive decision (`Action`).
    WOULD_DELETE = "would_delete"
    WOULD_REPLAY = "would_replay"
    WOULD_REDRIVE = "would_redrive"
    WOULD_RESEND = "would_resend"
    WOULD_FINISH = "would_finish"
    WOULD_DROP_STALE_COPY = "would_drop_stale_copy"
    WOULD_SKIP_RECORD_MISSING = "would_skip_record_missing"
    WOULD_SKIP_BUSY = "would_skip_busy"
    WOULD_SKIP_UNREADABLE = "would_skip_unreadable"
    WOULD_LEAVE_IN_DLQ = "would_leave_in_dlq"
    WOULD_REQUEUE = "would_requeue"

    @classmethod
    def would(cls, action: Action) -> Result:
        """The dry-run result of a redrive or recovery decision."""
        return cls(f"would_{action.value}")


# Results that leave a selected item behind: the run is partial.
INCOMPLETE_RESULTS = frozenset({Result.FAILED, Result.SKIPPED, Result.NOT_REPLAYABLE})


@dataclass(frozen=True)
class Outcome:
    item_id: str | None  # the delivery id (the conversion id for the evaluator DLQ)
    message_id: str | None
    result: Result
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "message_id": self.message_id, "result": self.result.value, "why": self.why}


@dataclass
class RedriveReport:
    dry_run: bool
    examined: int = 0
    matched: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(outcome.result.value for outcome in self.outcomes))

    @property
    def incomplete(self) -> bool:
        """Some selected items were neither brought back nor found already handled."""
        return any(outcome.result in INCOMPLETE_RESULTS for outcome in self.outcomes)

    @property
    def not_replayable(self) -> int:
        """Stream ranges the stream no longer holds: a re-run cannot bring them back."""
        return sum(1 for outcome in self.outcomes if outcome.result is Result.NOT_REPLAYABLE)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "examined": self.examined,
            "matched": self.matched,
            "counts": self.counts(),
            "outcomes": [outcome.as_dict() for outcome in self.outcomes],
        }


@dataclass(frozen=True)
class QueueStats:
    queue: str
    visible: int
    in_flight: int
    scanned: int
    oldest_sent_at: datetime | None
    oldest_age_seconds: float | None
    groups: dict[str, dict[str, int]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "approximate_depth": self.visible + self.in_flight,
            "visible": self.visible,
            "in_flight": self.in_flight,
            "scanned": self.scanned,
            "oldest_sent_at": self.oldest_sent_at.isoformat() if self.oldest_sent_at else None,
            "oldest_age_seconds": self.oldest_age_seconds,
            "groups": self.groups,
        }


T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions:
    """How a run that acts on selected items goes (redrive, replay, purge, recover)."""

    limit: int | None  # act on at most this many selected items
    pacer: Pacer  # paces the sends (`--rate`)
    dry_run: bool  # say what would happen, change nothing
    progress: Progress


def act_on_selected(
    candidates: Iterable[T], selected: Callable[[T], bool], act: Callable[[T], Outcome], options: RunOptions
) -> RedriveReport:
    """Count every candidate, act on the selected ones (at most `options.limit`), record each outcome."""
    report = RedriveReport(dry_run=options.dry_run)
    limit, progress = options.limit, options.progress
    for candidate in candidates:
        report.examined += 1
        if not selected(candidate):
            continue
        report.matched += 1
        outcome = act(candidate)
        report.outcomes.append(outcome)
        progress.advance(note=outcome.result)
        if limit is not None and report.matched >= limit:
            break
    progress.close()
    return report


class Entry(Protocol):
    """What every DLQ entry tells."""

    @property
    def message_id(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def sent_at(self) -> datetime | None: ...


E = TypeVar("E", bound=Entry)


class ScanOptions(TypedDict, total=False):
    """How a DLQ is read: the clock ages are measured by, and the `QueueScan` settings."""

    clock: Callable[[], datetime]
    hold_seconds: int
    max_messages: int
    wait_seconds: int


class DeadLetterQueue(ABC, Generic[E]):
    """One DLQ read without consuming it; E is what a message of it parses into."""

    # The breakdowns of `stats`, in order; `_group_values` gives an entry's value in each.
    GROUPS: ClassVar[tuple[str, ...]]

    def __init__(self, dlq: Queue, **options: Unpack[ScanOptions]) -> None:
        self._dlq = dlq
        self._clock = options.get("clock", utc_now)
        self._hold_seconds = options.get("hold_seconds", 300)
        self._max_messages = options.get("max_messages", DEFAULT_MAX_MESSAGES)
        self._wait_seconds = options.get("wait_seconds", 1)

    @abstractmethod
    def _entry(self, message: ReceivedMessage) -> E:
        """Parse a message; never raises."""

    @abstractmethod
    def _selects(self, selection: DeadLetterFilter, entry: E) -> bool: ...

    @abstractmethod
    def _item_id(self, entry: E) -> str | None:
        """The id an outcome names (delivery id, conversion id)."""

    @abstractmethod
    def _identifiers(self, entry: E) -> tuple[str | None, ...]:
        """The ids `show` finds the entry by, the message id first."""

    @abstractmethod
    def _group_values(self, entry: E) -> tuple[str, ...]:
        """The entry's value in each of `GROUPS`."""

    @property
    def queue_name(self) -> str:
        return self._dlq.name

    def _scan(self) -> QueueScan:
        return QueueScan(
            self._dlq, hold_seconds=self._hold_seconds, max_messages=self._max_messages, wait_seconds=self._wait_seconds
        )

    def _messages(self, scan: QueueScan) -> Iterator[tuple[ReceivedMessage, E]]:
        for message in scan:
            yield message, self._entry(message)

    def stats(self, progress: Progress) -> QueueStats:
        depth = self._dlq.depth()
        groups: dict[str, Counter[str]] = {name: Counter() for name in self.GROUPS}
        oldest: datetime | None = None
        with self._scan() as scan:
            for _, entry in self._messages(scan):
                for name, value in zip(self.GROUPS, self._group_values(entry), strict=True):
                    groups[name][value] += 1
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

    def entries(self, selection: DeadLetterFilter, limit: int | None, progress: Progress) -> list[E]:
        found: list[E] = []
        with self._scan() as scan:
            for _, entry in self._messages(scan):
                progress.advance()
                if self._selects(selection, entry):
                    found.append(entry)
                    if limit is not None and len(found) >= limit:
                        break
        progress.close()
        return found

    def find(self, identifier: str) -> E | None:
        """The message with this message id, or the oldest whose other ids include it."""
        matches: list[E] = []
        with self._scan() as scan:
            for _, entry in self._messages(scan):
                if identifier in self._identifiers(entry):
                    matches.append(entry)
                    if entry.message_id == identifier:
                        break
        if not matches:
            return None
        return min(matches, key=lambda e: e.sent_at.timestamp() if e.sent_at else 0.0)

    def _act(
        self,
        selection: DeadLetterFilter,
        act: Callable[[QueueScan, ReceivedMessage, E], Outcome],
        options: RunOptions,
    ) -> RedriveReport:
        """Act on each selected message of one scan; what is not deleted is released when it ends."""
        with self._scan() as scan:
            return act_on_selected(
                self._messages(scan),
                lambda pair: self._selects(selection, pair[1]),
                lambda pair: act(scan, *pair),
                options,
            )

    def purge(self, selection: DeadLetterFilter, options: RunOptions) -> RedriveReport:
        """Delete the selected DLQ messages (deliveries: records stay dead-lettered, `recover` still finds them)."""
        dry_run = options.dry_run

        def delete(scan: QueueScan, message: ReceivedMessage, entry: E) -> Outcome:
            if not dry_run:
                scan.delete(message)
            return Outcome(
                self._item_id(entry), entry.message_id, Result.WOULD_DELETE if dry_run else Result.DELETED, entry.reason
            )

        return self._act(selection, delete, options)
