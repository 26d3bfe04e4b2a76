"""Lambda-shaped events, partial batch responses and settings of the local stack (pure, no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from functions.invocation import LambdaContext, failed_item_identifiers, lambda_stream_record, resolve_handler
from local.config import LocalConfig, LocalConfigError, apply_environment_defaults
from local.lambda_runtime import LocalFunction, sqs_event_record
from local.pollers import QueueMapping, StreamMapping

pytestmark = pytest.mark.unit


def test_stream_record_gets_the_arn_and_a_numeric_creation_time() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    raw: dict[str, Any] = {
        "eventID": "e1",
        "eventName": "MODIFY",
        "dynamodb": {"ApproximateCreationDateTime": created, "SequenceNumber": "42"},
    }
    record = lambda_stream_record(raw, "arn:stream", "us-east-1")
    assert record["eventSourceARN"] == "arn:stream"
    assert record["eventSource"] == "aws:dynamodb"
    assert record["dynamodb"]["ApproximateCreationDateTime"] == created.timestamp()
    assert (record["eventID"], record["eventName"], record["awsRegion"]) == ("e1", "MODIFY", "us-east-1")
    assert isinstance(raw["dynamodb"]["ApproximateCreationDateTime"], datetime), "the input is not modified"


@pytest.mark.parametrize(
    "created",
    [
        datetime(2026, 1, 1),  # naive: UTC
        1767225600,
        "1767225600",
        "2026-01-01T00:00:00Z",
    ],
)
def test_every_form_of_creation_time_becomes_epoch_seconds(created: object) -> None:
    record = lambda_stream_record({"dynamodb": {"ApproximateCreationDateTime": created}}, "arn:stream", "us-east-1")
    assert record["dynamodb"]["ApproximateCreationDateTime"] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def test_sqs_record_has_the_lambda_field_names() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": "2"},
        "MessageAttributes": {"affiliate_id": {"DataType": "String", "StringValue": "aff-1"}},
    }
    record = sqs_event_record(message, "arn:queue")
    assert record["messageId"] == "m1" and record["receiptHandle"] == "r1" and record["body"] == "{}"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"]["affiliate_id"]["stringValue"] == "aff-1"
    assert record["eventSourceARN"] == "arn:queue" and record["eventSource"] == "aws:sqs"
    assert len(record["md5OfBody"]) == 32


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, []),
        ({"batchItemFailures": []}, []),
        ({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}, ["a", "b"]),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, None),
        ({"batchItemFailures": [{"wrong": "a"}]}, None),
        ({"batchItemFailures": "a"}, None),
    ],
)
def test_partial_batch_responses_are_read_as_lambda_reads_them(response: object, expected: list[str] | None) -> None:
    assert failed_item_identifiers(response) == expected


def test_context_counts_down_from_the_function_timeout() -> None:
    context = LambdaContext("on_delivery_message", timeout_seconds=30, region="eu-west-1")
    assert 29_000 < context.get_remaining_time_in_millis() <= 30_000
    assert context.invoked_function_arn == "arn:aws:lambda:eu-west-1:123456789012:function:on_delivery_message"
    assert context.aws_request_id


def test_handlers_are_resolved_by_handler_string() -> None:
    handler = resolve_handler("tests.unit.localstack.crashing.handler")
    assert handler.__name__ == "handler" and handler.__module__ == "tests.unit.localstack.crashing"
    with pytest.raises(ValueError):
        resolve_handler("no_dots")


def test_a_raising_handler_is_reported_as_a_function_error() -> None:
    function = LocalFunction("f", "tests.unit.localstack.crashing.handler", timeout_seconds=5)
    result = function.invoke({"Records": []})
    assert isinstance(result.error, RuntimeError) and result.response is None


def test_event_source_mappings_read_the_template_properties() -> None:
    stream = StreamMapping.from_properties(
        {"BatchSize": 100, "BisectBatchOnFunctionError": True, "MaximumRetryAttempts": 7}
    )
    assert (stream.batch_size, stream.bisect_on_error, stream.maximum_retry_attempts) == (100, True, 7)
    queue = QueueMapping.from_properties({"BatchSize": 10, "ScalingConfig": {"MaximumConcurrency": 20}})
    assert (queue.batch_size, queue.maximum_concurrency) == (10, 20)


def test_local_config_reads_ports_and_rejects_bad_ones() -> None:
    config = LocalConfig.from_environ({"MOTO_PORT": "5100", "API_PORT": "8100"})
    assert (config.moto_url, config.api_url) == ("http://127.0.0.1:5100", "http://127.0.0.1:8100")
    assert LocalConfig.from_environ({}).moto_port == 5000
    with pytest.raises(LocalConfigError):
        LocalConfig.from_environ({"API_PORT": "eighty"})


def test_environment_defaults_fill_only_unset_variables_and_point_clients_at_moto() -> None:
    environ = {"POSTBACKS_STAGE": "test", "AWS_ENDPOINT_URL": "http://elsewhere"}
    apply_environment_defaults(environ, "http://127.0.0.1:5000")
    assert environ["POSTBACKS_STAGE"] == "test"
    assert environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"
