"""Evaluator Lambda: the conversions table's stream -> matched deliveries -> deliveries queue.

Trigger: DynamoDB stream of the conversions table (NEW_AND_OLD_IMAGES), batches of up to 100,
from TRIM_HORIZON; deployed with the handler string `functions.evaluator.handler.on_conversion_change`
(this module, never `app.py`). The local stream poller calls the same callable with a Lambda-shaped
event dict and a context, as Lambda does.

Contract: each record whose status changed (docs/contract.md §2) creates one delivery per matching postback
(a conditional write keyed by postback, conversion and status) and enqueues it; REMOVE records and
updates that leave the status unchanged fire nothing; malformed records (docs/contract.md §3) are sent whole,
with the reason and stream position, to the evaluator dead-letter queue and do not block the shard.

Failure semantics: returns `{"batchItemFailures": [{"itemIdentifier": <SequenceNumber>}]}` naming
the earliest record whose work is not complete (a throttled write, an SQS error, any unexpected
error, a dead letter that could not be sent); Lambda retries from it. Records before it are fully
written and enqueued; work redone on the retry is idempotent. The event source mapping must enable
`ReportBatchItemFailures` (set in the merge template).

Observability: one `evaluator.batch` log line per invocation (and a line per record set aside or
failed, `functions.logs`), and the evaluator's EMF metrics (`functions.core.metrics`) flushed once
per invocation, error paths included.
"""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, DynamoDBEvent

from functions import bootstrap, settings

evaluator = Blueprint(__name__)


@evaluator.on_dynamodb_record(
    stream_arn=settings.CONVERSIONS_STREAM_ARN, batch_size=100, starting_position="TRIM_HORIZON"
)
def on_conversion_change(event: DynamoDBEvent) -> dict[str, Any]:
    records = event.to_dict().get("Records") or []
    metrics = bootstrap.new_metrics_batch()
    try:
        return bootstrap.conversion_evaluator().process(records, metrics).as_response()
    finally:
        metrics.flush()  # one EMF line per reason, also when the batch raised
