"""The functions' log events: their names, their keys, and how a line is written.

Every line the handlers write about their work is one `logging` record whose message is an event
name (`Event`) and whose fields go in `extra=`. With Lambda's `LoggingConfig.LogFormat: JSON` the
Python runtime writes each record as one JSON object with every `extra` key at the top level, so
Logs Insights filters on them directly (docs/observability.md#logs):

    log_event(logger, Event.DELIVERY_OUTCOME, delivery_id=..., attempt=2, outcome="retried", reason="http_503")
    -> {"timestamp": ..., "level": "INFO", "message": "delivery.outcome", "logger": ..., "requestId": ...,
        "delivery_id": ..., "attempt": 2, "outcome": "retried", "reason": "http_503"}

The correlation keys (`CORRELATION_KEYS`) and a few counters are the only fields an event may carry
(`FIELDS`; `log_event` refuses any other key), so a rendered URL, a secret or a placeholder value can
never reach a line by accident: none of them has a key. `ReadableFormatter` prints the same records
as one readable line each for the local stack (time, level, event, key=value pairs).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Event(StrEnum):
    """The message of every event line; one name per kind of event, in one place."""

    # Evaluator (the conversions stream).
    EVALUATOR_BATCH = "evaluator.batch"  # one per batch: counts and where Lambda retries from
    RECORD_DEAD_LETTERED = "evaluator.record_dead_lettered"  # a record set aside in the evaluator DLQ
    RECORD_FAILED = "evaluator.record_failed"  # a record reported for retry (its work failed)
    RULES_READ_FAILED = "evaluator.rules_read_failed"  # an affiliate's postbacks could not be read
    RULES_VERSION_READ_FAILED = "evaluator.rules_version_read_failed"  # the cache falls back to its TTL
    ENQUEUE_FAILED = "evaluator.enqueue_failed"  # deliveries not sent to the deliveries queue
    # Sender (the deliveries queue).
    SENDER_BATCH = "sender.batch"  # one per batch: counts by outcome
    DELIVERY_OUTCOME = "delivery.outcome"  # one per message: delivered, retried, dead_lettered, ...
    POSTBACKS_READ_FAILED = "sender.postbacks_read_failed"  # the batch read of the postbacks failed
    HEALTH_NOT_UPDATED = "sender.health_not_updated"  # a postback's health summary was not written
    # API.
    API_ERROR = "api.error"  # a request answered with a problem document (4xx, 5xx)


class Outcome(StrEnum):
    """`outcome` of a `delivery.outcome` line."""

    DELIVERED = "delivered"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"
    SET_ASIDE = "set_aside"  # a message naming no delivery, or an unknown one: sent to the DLQ as it was
    SKIPPED = "skipped"  # no GET: already finished, leased elsewhere, not due yet, out of time
    FAILED = "failed"  # the sender's own error: the message returns after its visibility timeout


# The keys that tie lines together across the functions and the delivery log.
CORRELATION_KEYS = (
    "delivery_id",
    "postback_id",
    "affiliate_id",
    "conversion_id",
    "host",
    "attempt",
    "outcome",
    "reason",
)
# Every key an event may carry: the correlation keys, stream and queue positions, counts.
FIELDS = frozenset(
    {
        *CORRELATION_KEYS,
        "sequence_number",
        "message_id",
        "status_code",
        "duration_ms",
        "retry_in_seconds",
        "records",
        "status_changes",
        "affiliates",
        "deliveries_created",
        "enqueued",
        "dead_lettered",
        "not_sent",
        "failed_sequence_number",
        "messages",
        "backfilled",
        "delivered",
        "retried",
        "cancelled",
        "set_aside",
        "skipped",
        "failed",
        "method",
        "route",
        "problem",
    }
)
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class LogFieldError(ValueError):
    """An event was given a key it may not carry."""


def log_event(
    logger: logging.Logger, event: Event, level: int = logging.INFO, *, exc_info: bool = False, **fields: Any
) -> None:
    """Write one event line; `fields` (None values are dropped) become top-level keys in Lambda's JSON."""
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise LogFieldError(f"{event.value}: no log field {', '.join(unknown)}")
    if not logger.isEnabledFor(level):
        return
    extra = {key: _plain(value) for key, value in fields.items() if value is not None}
    logger.log(level, event.value, extra=extra, exc_info=exc_info, stacklevel=2)


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, float):
        return round(value, 3)
    return value


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record, in the order they were given."""
    return {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES}


def readable_line(at: float, level: str, message: str, fields: Mapping[str, Any]) -> str:
    """`10:42:07.123 INFO    delivery.outcome delivery_id=dlv_1 outcome=delivered attempt=1`."""
    clock = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"
    pairs = " ".join(f"{key}={_readable(value)}" for key, value in fields.items())
    return f"{clock} {level:<7} {message}" + (f" {pairs}" if pairs else "")


def _readable(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


class ReadableFormatter(logging.Formatter):
    """One line per record for a terminal (the local stack): time, level, event or message, key=value pairs.

    A record that is not an event (a library's, the local stack's own) keeps its logger name.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message not in _EVENT_NAMES:
            message = f"{record.name}: {message}"
        line = readable_line(record.created, record.levelname, message, event_fields(record))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_EVENT_NAMES = frozenset(event.value for event in Event)


def readable_metrics(line: str) -> str:
    """An EMF line (`functions.core.metrics`) as `metrics Stage=local Reason=http_404 DeliveriesDeadLettered=1`."""
    document = json.loads(line)
    definitions = document.get("_aws", {}).get("CloudWatchMetrics", [{}])[0]
    dimensions = sorted({name for names in definitions.get("Dimensions", []) for name in names})
    names = [metric["Name"] for metric in definitions.get("Metrics", [])]
    pairs = [f"{name}={document[name]}" for name in dimensions] + [
        f"{name}={_readable_value(document[name])}" for name in names
    ]
    return "metrics " + " ".join(pairs)


def _readable_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(f"{number:g}" for number in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)
