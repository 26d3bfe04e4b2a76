"""Sender Lambda: the deliveries queue -> one GET per delivery -> delivered, retried, dead-lettered or cancelled.

Trigger: SQS, the deliveries queue, batches of up to 10; deployed with the handler string
`functions.sender.handler.on_delivery_message` (this module, never `app.py`). The local queue
poller calls the same callable with a Lambda-shaped event dict and a context, as Lambda does.

Contract: each message body is `{"v": 1, "delivery_id": ...}`; the delivery record is the truth
(`functions.sender.service` describes the steps). The GETs of a batch go out concurrently.

Failure semantics: returns `{"batchItemFailures": [{"itemIdentifier": <messageId>}]}` naming the
messages to keep: deliveries waiting for a retry (their visibility already set to the wait), and
messages whose processing failed (they return after the queue's visibility timeout). Every other
message — delivered, cancelled, already finished, dead-lettered (copy sent to the DLQ first) or
malformed (sent to the DLQ) — is reported as a success, so Lambda deletes it. The event source
mapping must enable `ReportBatchItemFailures` (set in the merge template): without it a retry
would be deleted with the batch.

Observability: one `delivery.outcome` log line per message and one `sender.batch` line per
invocation (`functions.logs`), and the sender's EMF metrics (`functions.core.metrics`) flushed
once per invocation, error paths included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice.app import Blueprint, SQSEvent

from functions import bootstrap, settings

sender = Blueprint(__name__)

# What `bootstrap.delivery_sender` builds from (the sender service, the pinned HTTP client on
# urllib3, the pynamodb models, the SQS adapter) is imported when the handler runs: `app.py`
# imports this module only to register the blueprint, and the API and authorizer Lambdas must not
# load the sender's stack for that. In the sender's own Lambda (the runtime's handler string names
# this module) it is imported here, in the init phase of the cold start, so that the first
# invocation does not pay for it.
if settings.LAMBDA_HANDLER.startswith(__name__ + "."):
    import functions.egress_http
    import functions.sender.service
    import functions.storage.postbacks
    import functions.storage.queues  # noqa: F401


def _receive_count(raw: dict[str, Any]) -> int:
    """SQS's `ApproximateReceiveCount` of a Lambda SQS record (1 when absent or unreadable)."""
    attributes = raw.get("attributes")
    value = attributes.get("ApproximateReceiveCount") if isinstance(attributes, dict) else None
    return int(value) if isinstance(value, str) and value.isdigit() else 1


def _remaining_ms(context: Any) -> Callable[[], int] | None:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter if callable(getter) else None


@sender.on_sqs_message(queue=settings.DELIVERIES_QUEUE, batch_size=10)
def on_delivery_message(event: SQSEvent) -> dict[str, Any]:
    from functions.sender.ports import IncomingMessage

    messages = [
        IncomingMessage(
            message_id=raw["messageId"],
            receipt_handle=raw["receiptHandle"],
            body=raw["body"],
            receive_count=_receive_count(raw),
        )
        for raw in (record.to_dict() for record in event)
    ]
    metrics = bootstrap.new_metrics_batch()
    try:
        failed = bootstrap.delivery_sender().process_batch(messages, _remaining_ms(event.context), metrics)
    finally:
        metrics.flush()  # one EMF line per reason, also when the batch raised
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
