"""What the local pollers borrow from Lambda: handler resolution by string, the context object,
and the Lambda-shaped events of DynamoDB stream and SQS event source mappings.

Handlers are resolved from their handler strings (`functions.sender.handler.on_delivery_message`)
with importlib, exactly as the Lambda runtime does, so a handler that only works when `app.py`
was imported first fails here as it would in AWS.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import md5
from typing import Any

from local.config import REGION

ACCOUNT_ID = "123456789012"
logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


def resolve_handler(handler_string: str) -> Handler:
    """`package.module.attribute` -> the callable, imported as the Lambda runtime imports it."""
    module_name, _, attribute = handler_string.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"not a handler string: {handler_string!r}")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute)
    if not callable(handler):
        raise TypeError(f"{handler_string} is not callable")
    return handler  # type: ignore[no-any-return]


@dataclass
class LambdaContext:
    """The attributes and method of the Lambda context object that handlers use."""

    function_name: str
    timeout_seconds: float
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


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
        context = LambdaContext(self.name, self.timeout_seconds, self.memory_mb)
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


def _epoch_seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def stream_event_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record in the shape Lambda delivers (ARN added, numeric creation time)."""
    dynamodb = dict(record["dynamodb"])
    if "ApproximateCreationDateTime" in dynamodb:
        dynamodb["ApproximateCreationDateTime"] = _epoch_seconds(dynamodb["ApproximateCreationDateTime"])
    return {
        "eventID": record.get("eventID", uuid.uuid4().hex),
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", REGION),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }


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


def failed_item_identifiers(response: Any) -> list[str] | None:
    """The `batchItemFailures` identifiers of a handler response (partial batch response).

    Returns [] when everything succeeded and None when the response is malformed, which Lambda
    treats as a failure of the whole batch.
    """
    if response is None:
        return []
    if isinstance(response, str):
        try:
            response = json.loads(response)
        except ValueError:
            return []
    if not isinstance(response, Mapping) or "batchItemFailures" not in response:
        return []
    failures = response["batchItemFailures"]
    if not isinstance(failures, list):
        return None
    identifiers: list[str] = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not isinstance(identifier, str) or not identifier:
            return None
        identifiers.append(identifier)
    return identifiers
