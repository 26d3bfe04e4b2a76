"""functions.logs: event lines carry only known keys, never a LogRecord attribute; the local stack's
readable form of events and EMF lines."""

from __future__ import annotations

import logging

import pytest

from functions.core.metrics import Metric, MetricsBatch
from functions.logs import (
    CORRELATION_KEYS,
    FIELDS,
    Event,
    LogFieldError,
    ReadableFormatter,
    event_fields,
    log_event,
    readable_metrics,
)

pytestmark = pytest.mark.unit


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> tuple[logging.Logger, Records]:
    logger = logging.getLogger("tests.logs")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = Records()
    logger.handlers = [handler]
    return logger, handler


def test_no_field_can_overwrite_a_log_record_attribute(captured: tuple[logging.Logger, Records]) -> None:
    logger, handler = captured
    log_event(logger, Event.SENDER_BATCH, **dict.fromkeys(FIELDS, 1))  # logging raises on a clash
    assert event_fields(handler.records[0]) == dict.fromkeys(FIELDS, 1)
    assert set(CORRELATION_KEYS) <= FIELDS


def test_an_unknown_key_such_as_url_is_refused(captured: tuple[logging.Logger, Records]) -> None:
    logger, handler = captured
    with pytest.raises(LogFieldError, match="url"):
        log_event(logger, Event.DELIVERY_OUTCOME, delivery_id="d-1", url="https://x.example/?click=1")
    assert handler.records == []


def test_the_message_is_the_event_and_none_values_are_left_out(captured: tuple[logging.Logger, Records]) -> None:
    logger, handler = captured
    log_event(logger, Event.DELIVERY_OUTCOME, logging.WARNING, delivery_id="d-1", reason=None, duration_ms=12.34567)
    (record,) = handler.records
    assert (record.getMessage(), record.levelno) == ("delivery.outcome", logging.WARNING)
    assert event_fields(record) == {"delivery_id": "d-1", "duration_ms": 12.346}


def test_readable_lines_have_time_level_event_and_pairs(captured: tuple[logging.Logger, Records]) -> None:
    logger, handler = captured
    log_event(logger, Event.DELIVERY_OUTCOME, delivery_id="d-1", outcome="retried", reason="http 503")
    logger.info("plain %s", "text")
    event, plain = (ReadableFormatter().format(record) for record in handler.records)
    clock, level, rest = event.split(" ", 2)
    assert len(clock) == len("10:42:07.123") and level == "INFO"
    assert rest.strip() == 'delivery.outcome delivery_id=d-1 outcome=retried reason="http 503"'
    assert plain.endswith("INFO    tests.logs: plain text")


def test_emf_lines_read_as_dimensions_and_values() -> None:
    lines: list[str] = []
    batch = MetricsBatch(stage="local", write=lines.append, clock=lambda: 0.0)
    batch.count(Metric.DELIVERIES_DELIVERED, 2)
    batch.count(Metric.DELIVERIES_DEAD_LETTERED, reason="http_404")
    batch.duration(Metric.GET_DURATION, 12.5)
    batch.flush()
    assert [readable_metrics(line) for line in lines] == [
        "metrics Stage=local DeliveriesDelivered=2 GetDuration=[12.5]",
        "metrics Reason=http_404 Stage=local DeliveriesDeadLettered=1",
    ]
