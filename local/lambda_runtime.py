"""What the local pollers borrow from Lambda: one `LocalFunction` per function, invoked by handler
string with a fresh context per invocation, and the Lambda shape of SQS event source records.

Handler resolution, the context object, the Lambda shape of DynamoDB stream records and the reading
of partial batch responses are `functions.invocation`, shared with the on-call CLI's replay.
Handlers are resolved from their handler strings (`functions.sender.handler.on_delivery_message`)
with importlib, exactly as the Lambda runtime does, so a handler that only works when `app.py`
was imported first fails here as it would in AWS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import md5
from typing import Any

from functions.invocation import Handler, LambdaContext, resolve_handler
from local.config import REGION

__all__ = ["Invocation", "LambdaContext", "LocalFunction", "resolve_handler", "sqs_event_record"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Invocation:
    response: Any
    error: BaseException | None
    duration_seconds: float


class LocalFunction:
    """One function, invoked by handler string with a fresh context per invocation.

    The first invocation runs alone (a cold start initialises module-level state once, as one
    Lambda execution environment would); later ones may run concurrently, as Lambda scales out.
    """

    def __init__(self, name: str, handler_string: str, timeout_seconds: float, memory_mb: int = 512) -> None:
        self.name = name
        self.handler_string = handler_string
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self._handler: Handler | None = None
        self._cold_start = threading.Lock()
        self._warm = threading.Event()

    def _resolve(self) -> Handler:
        if self._handler is None:
            self._handler = resolve_handler(self.handler_string)
        return self._handler

    def invoke(self, event: dict[str, Any]) -> Invocation:
        context = LambdaContext(self.name, self.timeout_seconds, self.memory_mb, region=REGION)
        started = time.monotonic()
        try:
            if self._warm.is_set():
                response = self._resolve()(event, context)
            else:
                with self._cold_start:
                    response = self._resolve()(event, context)
                    self._warm.set()
        except Exception as exc:  # the invocation failed: Lambda reports a function error
            logger.exception("%s failed (request %s)", self.name, context.aws_request_id)
            return Invocation(None, exc, time.monotonic() - started)
        duration = time.monotonic() - started
        if duration > self.timeout_seconds:
            logger.warning("%s ran %.1f s, beyond its %.0f s timeout", self.name, duration, self.timeout_seconds)
            return Invocation(None, TimeoutError(f"{self.name} timed out"), duration)
        return Invocation(response, None, duration)


def sqs_event_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """A ReceiveMessage message in the shape Lambda delivers."""
    body = str(message["Body"])
    attributes = {key: str(value) for key, value in message.get("Attributes", {}).items()}
    message_attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody") or md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
