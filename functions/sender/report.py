"""What one sender batch reports: a `delivery.outcome` line per message, a `sender.batch` line, its metrics.

Each message ends in one `Outcome` (docs/observability.md): the report writes its log line with the
correlation keys (never the URL), counts it for the batch line, and records the metric that goes
with it. Shared by the batch's worker threads.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from functions.core.metrics import Metric, MetricsBatch
from functions.core.model import Delivery
from functions.logs import Event, Outcome, log_event

logger = logging.getLogger("functions.sender.service")

# The count metric of each outcome (dead letters and set-asides carry their reason); none for `skipped`.
OUTCOME_METRICS: dict[Outcome, Metric] = {
    Outcome.DELIVERED: Metric.DELIVERIES_DELIVERED,
    Outcome.RETRIED: Metric.DELIVERIES_RETRIED,
    Outcome.DEAD_LETTERED: Metric.DELIVERIES_DEAD_LETTERED,
    Outcome.SET_ASIDE: Metric.DELIVERIES_DEAD_LETTERED,
    Outcome.CANCELLED: Metric.DELIVERIES_CANCELLED,
    Outcome.FAILED: Metric.DELIVERY_PROCESSING_FAILURES,
}
_LEVELS = {
    Outcome.DEAD_LETTERED: logging.WARNING,
    Outcome.SET_ASIDE: logging.WARNING,
    Outcome.FAILED: logging.ERROR,
}


def delivery_keys(record: Delivery) -> dict[str, Any]:
    """The correlation keys of a delivery record (never its URL)."""
    return {
        "delivery_id": record.delivery_id,
        "postback_id": record.postback_id,
        "affiliate_id": record.affiliate_id,
        "conversion_id": record.conversion_id,
        "host": record.target_host,
    }


class BatchReport:
    def __init__(self, metrics: MetricsBatch | None = None) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._counts: Counter[Outcome] = Counter()

    def outcome(
        self,
        outcome: Outcome,
        *,
        message_id: str,
        record: Delivery | None = None,
        reason: str | None = None,
        exc_info: bool = False,
        **fields: Any,
    ) -> None:
        """One message's outcome: its log line, its count, its metric."""
        keys = delivery_keys(record) if record is not None else {}
        log_event(
            logger,
            Event.DELIVERY_OUTCOME,
            _LEVELS.get(outcome, logging.INFO),
            exc_info=exc_info,
            message_id=message_id,
            **{**keys, **fields},
            outcome=outcome,
            reason=reason,
        )
        with self._lock:
            self._counts[outcome] += 1
        metric = OUTCOME_METRICS.get(outcome)
        if self._metrics is None or metric is None:
            return
        if metric is Metric.DELIVERIES_DEAD_LETTERED:
            self._metrics.count(metric, reason=reason or "unknown")
        else:
            self._metrics.count(metric)

    def failure(self, message_id: str, error: BaseException | str, **keys: Any) -> None:
        """A message the sender failed to process (`failed`): reason = the exception's type (logged), or `error`."""
        if isinstance(error, BaseException):
            self.outcome(Outcome.FAILED, message_id=message_id, reason=type(error).__name__, exc_info=True, **keys)
        else:
            self.outcome(Outcome.FAILED, message_id=message_id, reason=error, **keys)

    def get_duration(self, milliseconds: float) -> None:
        if self._metrics is not None:
            self._metrics.duration(Metric.GET_DURATION, milliseconds)

    def count(self, metric: Metric, n: float = 1) -> None:
        """A metric that is not a message's outcome (host pauses, repairs)."""
        if self._metrics is not None:
            self._metrics.count(metric, n)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {outcome.value: self._counts[outcome] for outcome in Outcome}

    def batch_line(self, messages: int, backfilled: int = 0) -> None:
        """The `sender.batch` line: how many messages (the event's, and those taken while held), how each ended."""
        counts = self.counts()
        log_event(
            logger,
            Event.SENDER_BATCH,
            logging.INFO,
            messages=messages,
            backfilled=backfilled or None,
            delivered=counts[Outcome.DELIVERED],
            retried=counts[Outcome.RETRIED],
            dead_lettered=counts[Outcome.DEAD_LETTERED],
            cancelled=counts[Outcome.CANCELLED],
            set_aside=counts[Outcome.SET_ASIDE],
            skipped=counts[Outcome.SKIPPED],
            failed=counts[Outcome.FAILED],
        )
