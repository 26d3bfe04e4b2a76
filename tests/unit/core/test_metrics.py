"""functions.core.metrics: the metric catalogue and the EMF lines MetricsBatch writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.core.metrics import (
    MAX_VALUES_PER_METRIC,
    METRIC_NAMES,
    NAMESPACE,
    REASON_METRICS,
    UNITS,
    Dimension,
    Metric,
    MetricError,
    MetricsBatch,
    RecordDeadLetterReason,
    Unit,
    emf_document,
)

# The names dashboards, alarms and queries use (docs/observability.md).
EXPECTED_NAMES = {
    "DeliveriesDelivered",
    "DeliveriesRetried",
    "DeliveriesDeadLettered",
    "DeliveriesCancelled",
    "GetDuration",
    "EvaluatorRecords",
    "StatusChanges",
    "DeliveriesCreated",
    "RecordsDeadLettered",
    "EvaluatorRecordsReportedFailed",
    "DeliveryProcessingFailures",
    "HostPauses",
    "DeliveriesReEnqueued",
    "DeadLetterCopiesResent",
}


def _batch(lines: list[str], stage: str = "prod", now: float = 1795000000.25) -> MetricsBatch:
    return MetricsBatch(stage=stage, write=lines.append, clock=lambda: now)


def _assert_valid_emf(document: dict[str, Any]) -> None:
    """The EMF specification: every named metric and dimension has a value at the top level."""
    directive = document["_aws"]
    assert isinstance(directive["Timestamp"], int)
    for metrics in directive["CloudWatchMetrics"]:
        assert metrics["Namespace"] == NAMESPACE
        for names in metrics["Dimensions"]:
            assert 1 <= len(names) <= 30
            for name in names:
                assert isinstance(document[name], str)
        for metric in metrics["Metrics"]:
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            assert metric["Unit"] in {unit.value for unit in Unit}


def test_the_catalogue_holds_the_product_metrics_with_their_units() -> None:
    assert METRIC_NAMES == EXPECTED_NAMES
    assert UNITS[Metric.GET_DURATION] is Unit.MILLISECONDS
    assert {metric for metric in Metric if UNITS[metric] is Unit.MILLISECONDS} == {Metric.GET_DURATION}
    assert set(REASON_METRICS) == {Metric.DELIVERIES_DEAD_LETTERED, Metric.RECORDS_DEAD_LETTERED}
    assert RecordDeadLetterReason.MALFORMED.value == "malformed"


def test_counts_are_summed_into_one_line_with_the_stage_dimension() -> None:
    lines: list[str] = []
    batch = _batch(lines)
    batch.count(Metric.DELIVERIES_DELIVERED)
    batch.count(Metric.DELIVERIES_DELIVERED, 2)
    batch.count(Metric.DELIVERIES_RETRIED)
    batch.duration(Metric.GET_DURATION, 120.5)
    batch.duration(Metric.GET_DURATION, 80)
    assert batch.flush() == lines
    [line] = lines
    document = json.loads(line)
    _assert_valid_emf(document)
    assert document["_aws"]["Timestamp"] == 1795000000250
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["Stage"]]
    assert directive["Metrics"] == [
        {"Name": "DeliveriesDelivered", "Unit": "Count"},
        {"Name": "DeliveriesRetried", "Unit": "Count"},
        {"Name": "GetDuration", "Unit": "Milliseconds"},
    ]
    assert (document["Stage"], document["DeliveriesDelivered"], document["DeliveriesRetried"]) == ("prod", 3, 1)
    assert document["GetDuration"] == [120.5, 80.0]
    assert "\n" not in line


def test_reason_metrics_get_one_line_per_reason_under_both_dimension_sets() -> None:
    lines: list[str] = []
    batch = _batch(lines)
    batch.count(Metric.DELIVERIES_DELIVERED)
    batch.count(Metric.DELIVERIES_DEAD_LETTERED, reason="http_404")
    batch.count(Metric.DELIVERIES_DEAD_LETTERED, reason="gone")
    batch.count(Metric.DELIVERIES_DEAD_LETTERED, reason="gone")
    documents = [json.loads(line) for line in batch.flush()]
    for document in documents:
        _assert_valid_emf(document)
    assert [d.get("Reason") for d in documents] == [None, "gone", "http_404"]
    assert documents[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Stage"], ["Stage", "Reason"]]
    assert (documents[1]["DeliveriesDeadLettered"], documents[2]["DeliveriesDeadLettered"]) == (2, 1)
    assert "DeliveriesDeadLettered" not in documents[0]


def test_flush_starts_over_and_writes_nothing_when_nothing_was_recorded() -> None:
    lines: list[str] = []
    batch = _batch(lines)
    assert not batch
    assert batch.flush() == [] and lines == []
    batch.count(Metric.HOST_PAUSES)
    assert batch
    batch.flush()
    assert batch.flush() == [] and len(lines) == 1


def test_more_values_than_one_document_holds_are_split() -> None:
    lines: list[str] = []
    batch = _batch(lines)
    for value in range(MAX_VALUES_PER_METRIC + 5):
        batch.duration(Metric.GET_DURATION, value)
    documents = [json.loads(line) for line in batch.flush()]
    assert [len(d["GetDuration"]) for d in documents] == [MAX_VALUES_PER_METRIC, 5]
    assert documents[0]["GetDuration"] + documents[1]["GetDuration"] == [float(v) for v in range(105)]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (lambda b: b.count(Metric.RECORDS_DEAD_LETTERED), "needs a reason"),
        (lambda b: b.count(Metric.DELIVERIES_DELIVERED, reason="x"), "has no Reason dimension"),
        (lambda b: b.count(Metric.GET_DURATION), "measured in Milliseconds, not Count"),
        (lambda b: b.duration(Metric.DELIVERIES_DELIVERED, 5), "measured in Count, not Milliseconds"),
        (lambda b: b.count(Metric.DELIVERIES_DELIVERED, -1), "cannot go down"),
        (lambda b: b.duration(Metric.GET_DURATION, -0.5), "cannot be negative"),
    ],
)
def test_a_metric_recorded_the_wrong_way_is_refused(record: Any, message: str) -> None:
    batch = _batch([])
    with pytest.raises(MetricError, match=message):
        record(batch)
    assert not batch


def test_emf_document_checks_its_dimension_sets_and_values() -> None:
    document = emf_document({Metric.STATUS_CHANGES: 4}, {"Stage": "dev"}, 1000)
    _assert_valid_emf(document)
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Stage"]]
    with pytest.raises(MetricError, match="without a value"):
        emf_document({Metric.STATUS_CHANGES: 4}, {"Stage": "dev"}, 1000, dimension_sets=[["Stage", "Reason"]])
    with pytest.raises(MetricError, match="at least one metric"):
        emf_document({}, {"Stage": "dev"}, 1000)
    with pytest.raises(MetricError, match="values per document"):
        emf_document({Metric.GET_DURATION: []}, {"Stage": "dev"}, 1000)
    assert {dimension.value for dimension in Dimension} == {"Stage", "Reason"}
