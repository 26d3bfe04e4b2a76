"""The product's metrics: names, units, dimensions, and CloudWatch embedded metric format (EMF) lines.

The one definition of every metric the functions emit. The template's dashboard and alarms
(`infrastructure/template.json`) refer to the same names; a test keeps the two from drifting.

    batch = MetricsBatch(stage="prod")
    batch.count(Metric.DELIVERIES_DELIVERED)
    batch.count(Metric.DELIVERIES_DEAD_LETTERED, reason="http_404")
    batch.duration(Metric.GET_DURATION, 182.4)
    batch.flush()        # once per invocation: one EMF JSON line per distinct reason (and one without)

Every metric carries the dimension `Stage`; the metrics of `REASON_METRICS` carry `Reason` too and
are published under both dimension sets, `[Stage]` (the total) and `[Stage, Reason]`.
In Lambda a line printed to stdout that is an EMF document becomes metrics without any API call;
elsewhere (the local stack, tests) it is just a JSON line.

Pure apart from the writer and clock `MetricsBatch` is given (stdout and `time.time` by default).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

NAMESPACE = "Postbacks"
# CloudWatch limits per EMF document.
MAX_METRICS_PER_DOCUMENT = 100
MAX_VALUES_PER_METRIC = 100


class Unit(StrEnum):
    COUNT = "Count"
    MILLISECONDS = "Milliseconds"


class Dimension(StrEnum):
    STAGE = "Stage"
    REASON = "Reason"


class Metric(StrEnum):
    # Sender: outcomes of deliveries.
    DELIVERIES_DELIVERED = "DeliveriesDelivered"
    DELIVERIES_RETRIED = "DeliveriesRetried"
    DELIVERIES_DEAD_LETTERED = "DeliveriesDeadLettered"  # Reason: the dead-letter reason (http_404, gone, ...)
    DELIVERIES_CANCELLED = "DeliveriesCancelled"
    GET_DURATION = "GetDuration"
    DELIVERY_PROCESSING_FAILURES = "DeliveryProcessingFailures"  # messages reported as batch item failures
    HOST_PAUSES = "HostPauses"  # a host paused (docs/contract.md §6, tracker protection)
    # Evaluator: the conversions stream.
    EVALUATOR_RECORDS = "EvaluatorRecords"
    STATUS_CHANGES = "StatusChanges"
    DELIVERIES_CREATED = "DeliveriesCreated"
    RECORDS_DEAD_LETTERED = "RecordsDeadLettered"  # Reason: RecordDeadLetterReason
    EVALUATOR_RECORDS_REPORTED_FAILED = "EvaluatorRecordsReportedFailed"  # records Lambda will retry
    # Repairs (on-call tools and the reliability sweeps).
    DELIVERIES_RE_ENQUEUED = "DeliveriesReEnqueued"
    DEAD_LETTER_COPIES_RESENT = "DeadLetterCopiesResent"


class RecordDeadLetterReason(StrEnum):
    """`Reason` of `RecordsDeadLettered`: why the evaluator set a conversion record aside."""

    MALFORMED = "malformed"  # the conversion service wrote a record the parser refuses
    RENDER_FAILED = "render_failed"  # a postback's URL could not be rendered for the conversion
    REJECTED = "rejected"  # a delivery of it can never be written (too large, ValidationException)


UNITS: Mapping[Metric, Unit] = {metric: Unit.COUNT for metric in Metric} | {Metric.GET_DURATION: Unit.MILLISECONDS}
# Metrics that always carry a Reason (and only these may).
REASON_METRICS: frozenset[Metric] = frozenset({Metric.DELIVERIES_DEAD_LETTERED, Metric.RECORDS_DEAD_LETTERED})
METRIC_NAMES: frozenset[str] = frozenset(metric.value for metric in Metric)


class MetricError(ValueError):
    """A metric was recorded with a value or dimensions it cannot have."""


def emf_document(
    values: Mapping[Metric, float | Sequence[float]],
    dimensions: Mapping[str, str],
    timestamp_ms: int,
    *,
    dimension_sets: Sequence[Sequence[str]] | None = None,
    namespace: str = NAMESPACE,
) -> dict[str, Any]:
    """One EMF document: the metrics' values (a number or a list of up to 100) under `dimensions`.

    `dimension_sets` are the sets of dimension names to publish under (default: all of
    `dimensions` as one set); each name must be a key of `dimensions`.
    """
    if not values:
        raise MetricError("an EMF document needs at least one metric")
    if len(values) > MAX_METRICS_PER_DOCUMENT:
        raise MetricError(f"at most {MAX_METRICS_PER_DOCUMENT} metrics per document, got {len(values)}")
    sets = [list(names) for names in dimension_sets] if dimension_sets is not None else [list(dimensions)]
    for names in sets:
        unknown = [name for name in names if name not in dimensions]
        if unknown:
            raise MetricError(f"dimension set names {', '.join(unknown)} without a value")
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(timestamp_ms),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": sets,
                    "Metrics": [{"Name": metric.value, "Unit": UNITS[metric].value} for metric in values],
                }
            ],
        },
        **{str(name): str(value) for name, value in dimensions.items()},
    }
    for metric, value in values.items():
        if isinstance(value, int | float):
            document[metric.value] = value
            continue
        numbers = list(value)
        if not 0 < len(numbers) <= MAX_VALUES_PER_METRIC:
            raise MetricError(f"{metric.value}: 1 to {MAX_VALUES_PER_METRIC} values per document, got {len(numbers)}")
        document[metric.value] = numbers
    return document


def _write_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class MetricsBatch:
    """Counts and durations of one invocation, written as EMF lines by `flush()`.

    Counts are summed; durations are kept as values (CloudWatch computes percentiles from them).
    Safe to share between threads (the sender's GETs of one batch record into one batch).
    """

    stage: str
    write: Callable[[str], None] = _write_stdout
    clock: Callable[[], float] = time.time
    _counts: dict[tuple[Metric, str | None], float] = field(default_factory=dict, init=False, repr=False)
    _values: dict[tuple[Metric, str | None], list[float]] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _key(self, metric: Metric, reason: str | None, unit: Unit) -> tuple[Metric, str | None]:
        if UNITS[metric] is not unit:
            raise MetricError(f"{metric.value} is measured in {UNITS[metric].value}, not {unit.value}")
        if metric in REASON_METRICS:
            if not reason:
                raise MetricError(f"{metric.value} needs a reason")
            return metric, str(reason)
        if reason is not None:
            raise MetricError(f"{metric.value} has no Reason dimension")
        return metric, None

    def count(self, metric: Metric, n: float = 1, *, reason: str | None = None) -> None:
        """Add `n` (≥ 0) to a count metric; `reason` is required for, and only for, `REASON_METRICS`."""
        if n < 0:
            raise MetricError(f"{metric.value}: a count cannot go down ({n})")
        key = self._key(metric, reason, Unit.COUNT)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def duration(self, metric: Metric, milliseconds: float) -> None:
        """Record one duration of a Milliseconds metric (every value is kept)."""
        if milliseconds < 0:
            raise MetricError(f"{metric.value}: a duration cannot be negative ({milliseconds})")
        key = self._key(metric, None, Unit.MILLISECONDS)
        with self._lock:
            self._values.setdefault(key, []).append(float(milliseconds))

    def __bool__(self) -> bool:
        return bool(self._counts or self._values)

    def documents(self) -> list[dict[str, Any]]:
        """The EMF documents of what was recorded: one per reason, one for the rest (more past limits)."""
        timestamp_ms = int(self.clock() * 1000)
        grouped: dict[str | None, dict[Metric, float | list[float]]] = {}
        for (metric, reason), total in self._counts.items():
            grouped.setdefault(reason, {})[metric] = total
        for (metric, reason), values in self._values.items():
            grouped.setdefault(reason, {})[metric] = values
        documents: list[dict[str, Any]] = []
        for reason in sorted(grouped, key=lambda value: (value is not None, value or "")):
            dimensions = {Dimension.STAGE.value: self.stage}
            sets: list[list[str]] = [[Dimension.STAGE.value]]
            if reason is not None:
                dimensions[Dimension.REASON.value] = reason
                sets.append([Dimension.STAGE.value, Dimension.REASON.value])
            for chunk in _chunks(grouped[reason]):
                documents.append(emf_document(chunk, dimensions, timestamp_ms, dimension_sets=sets))
        return documents

    def flush(self) -> list[str]:
        """Write the EMF lines of what was recorded (nothing when empty), start over; returns the lines."""
        with self._lock:
            lines = [json.dumps(document, separators=(",", ":")) for document in self.documents()]
            self._counts.clear()
            self._values.clear()
        for line in lines:
            self.write(line)
        return lines


def _chunks(values: Mapping[Metric, float | list[float]]) -> Iterable[dict[Metric, float | list[float]]]:
    """Split values into documents within CloudWatch's limits (100 metrics, 100 values per metric)."""
    pending = dict(values)
    while pending:
        chunk: dict[Metric, float | list[float]] = {}
        for metric in list(pending)[:MAX_METRICS_PER_DOCUMENT]:
            value = pending[metric]
            if isinstance(value, list) and len(value) > MAX_VALUES_PER_METRIC:
                chunk[metric] = value[:MAX_VALUES_PER_METRIC]
                pending[metric] = value[MAX_VALUES_PER_METRIC:]
            else:
                chunk[metric] = value
                del pending[metric]
        yield chunk
