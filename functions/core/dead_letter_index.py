"""The deliveries table's sparse `by_dead_letter` index: its partitions and its range-key bounds.

The storage writes and queries these (`functions.storage.deliveries`, `delivery_safeguards`); the
on-call rules read them (`functions.core.redrive`, which re-exports them). A module of its own so
that the sender and the evaluator, which only write the partitions, do not load the on-call rules.
"""

from __future__ import annotations

from datetime import datetime

from functions.core.model import format_timestamp

# The partitions of the index (`dead_letter_partition`).
DEAD_PARTITION = "dead"
REDRIVING_PARTITION = "redriving"
# An active delivery whose message SQS received so often that the queue's redrive policy may move it
# to the DLQ (written by the sender on that failure path only): `recover` queues it again.
AT_RISK_PARTITION = "at_risk"


def index_bounds(since: datetime | None, until: datetime | None) -> tuple[str | None, str | None]:
    """`by_dead_letter` range-key bounds (ISO text sorts in time order), inclusive since, exclusive until."""
    return (
        format_timestamp(since) if since is not None else None,
        format_timestamp(until) if until is not None else None,
    )
