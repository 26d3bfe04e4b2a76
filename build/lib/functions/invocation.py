"""Calling a Lambda handler outside Lambda, the way Lambda calls it.

Two callers need this: the on-call CLI, which replays evaluator dead letters through the real
evaluator handler (`functions.cli.conversions`), and the local stack, whose pollers stand in for
Lambda's event source mappings (`local/lambda_runtime.py`, `local/pollers.py`). Both resolve the
handler from its handler string, hand it a context object and DynamoDB stream records in the shape
Lambda delivers them, and read its partial batch response as Lambda reads it.

Standard library only, and nothing is imported until a handler is resolved: a handler that works
only after something else was imported fails here as it would in AWS.
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"


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


def function_arn(function_name: str, region: str = DEFAULT_REGION, account_id: str = DEFAULT_ACCOUNT_ID) -> str:
    return f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"


@dataclass
class LambdaContext:
    """The attributes and method of the Lambda context object that handlers use; the remaining time
    counts down from the function's timeout, starting when the context is made (one per invocation)."""

    function_name: str
    timeout_seconds: float
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return function_arn(self.function_name, self.region, self.account_id)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def epoch_seconds(value: Any) -> float:
    """A stream record's `ApproximateCreationDateTime` as Lambda gives it: epoch seconds. boto3 gives a
    datetime (naive taken as UTC); a copy kept as JSON may hold a number, a numeric string or ISO 8601."""
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()
    return float(value)


def lambda_stream_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A DynamoDB stream record (as GetRecords returns it, or a copy kept as JSON) in the shape Lambda
    delivers it to a function: `eventSource` and `eventSourceARN` set, `eventID`, `eventVersion` and
    `awsRegion` filled in where missing, `ApproximateCreationDateTime` in epoch seconds. The input is
    not changed."""
    converted = dict(record)
    raw = record.get("dynamodb")
    dynamodb = dict(raw) if isinstance(raw, Mapping) else {}
    if dynamodb.get("ApproximateCreationDateTime") is not None:
        dynamodb["ApproximateCreationDateTime"] = epoch_seconds(dynamodb["ApproximateCreationDateTime"])
    converted["dynamodb"] = dynamodb
    converted.setdefault("eventID", uuid.uuid4().hex)
    converted.setdefault("eventVersion", "1.1")
    converted.setdefault("awsRegion", region)
    converted["eventSource"] = "aws:dynamodb"
    converted["eventSourceARN"] = stream_arn
    return converted


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
