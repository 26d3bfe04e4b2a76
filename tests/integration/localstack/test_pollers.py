"""The local event-source pollers keep Lambda's semantics (moto in-process, tiny recording handlers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.settings import load_settings
from infrastructure.resources import CreatedResources, create_all
from local.lambda_runtime import LocalFunction
from local.pollers import QueueMapping, QueuePoller, StreamMapping, StreamPoller
from tests.integration.localstack import handlers

pytestmark = pytest.mark.integration

HANDLERS = "tests.integration.localstack.handlers"


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any, Any, CreatedResources]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        created = create_all(dynamodb, sqs, load_settings())
        yield dynamodb, sqs, boto3.client("dynamodbstreams"), created


@pytest.fixture
def behaviour() -> handlers.Behaviour:
    return handlers.reset()


def _put(dynamodb: Any, conversion_id: str, status: str = "pending") -> None:
    dynamodb.put_item(
        TableName="conversions",
        Item={"conversion_id": {"S": conversion_id}, "affiliate_id": {"S": "aff-1"}, "status": {"S": status}},
    )


def _stream_poller(aws: Any, mapping: StreamMapping | None = None) -> StreamPoller:
    _, sqs, streams, created = aws
    function = LocalFunction("on_conversion_change", f"{HANDLERS}.on_stream", timeout_seconds=60)
    return StreamPoller(
        streams,
        created.conversions_stream_arn,
        function,
        mapping or StreamMapping(batch_size=100),
        sqs=sqs,
        on_failure_queue_url=created.queue_urls["EvaluatorDeadLetterQueue"],
    )


def _conversion_ids(event: dict[str, Any]) -> list[str]:
    return [r["dynamodb"]["Keys"]["conversion_id"]["S"] for r in event["Records"]]


def _shard_records(aws: Any) -> list[dict[str, Any]]:
    streams, arn = aws[2], aws[3].conversions_stream_arn
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records: list[dict[str, Any]] = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    return records


def _drain(poller: StreamPoller) -> None:
    for _ in range(20):
        poller.poll_once()
        for cursor in poller._cursors.values():
            cursor.retry_at = 0.0


def test_stream_records_arrive_lambda_shaped_with_arn_and_numeric_creation_time(aws: Any, behaviour: Any) -> None:
    dynamodb, _, _, created = aws
    _put(dynamodb, "c1")
    _put(dynamodb, "c1", "approved")
    poller = _stream_poller(aws)
    poller.poll_once()
    [event] = behaviour.calls
    first, second = event["Records"]
    assert first["eventName"] == "INSERT" and second["eventName"] == "MODIFY"
    assert first["eventSourceARN"] == created.conversions_stream_arn
    assert isinstance(first["dynamodb"]["ApproximateCreationDateTime"], float)
    assert second["dynamodb"]["OldImage"]["status"] == {"S": "pending"}
    assert behaviour.contexts[0].function_name == "on_conversion_change"
    assert 0 < behaviour.contexts[0].get_remaining_time_in_millis() <= 60_000


class _CountingStreams:
    """The streams client, counting GetRecords calls."""

    def __init__(self, streams: Any) -> None:
        self._streams = streams
        self.get_records_calls = 0

    def get_records(self, **kwargs: Any) -> Any:
        self.get_records_calls += 1
        return self._streams.get_records(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._streams, name)


def test_stream_without_batching_window_invokes_with_what_one_read_returned(aws: Any, behaviour: Any) -> None:
    dynamodb, sqs, streams, created = aws
    counting = _CountingStreams(streams)
    poller = StreamPoller(
        counting,
        created.conversions_stream_arn,
        LocalFunction("on_conversion_change", f"{HANDLERS}.on_stream", timeout_seconds=60),
        StreamMapping(batch_size=2),
        sqs=sqs,
    )
    for n in range(3):
        _put(dynamodb, f"c{n}")
    assert poller.poll_once() is True
    assert counting.get_records_calls == 1  # no second read to find the shard empty before invoking
    assert poller.poll_once() is True
    assert counting.get_records_calls == 2
    assert poller.poll_once() is False  # nothing new: one read, no invocation
    assert counting.get_records_calls == 3
    assert [_conversion_ids(event) for event in behaviour.calls] == [["c0", "c1"], ["c2"]]


def test_stream_batching_window_collects_records_written_while_it_is_open(aws: Any, behaviour: Any) -> None:
    dynamodb = aws[0]
    _put(dynamodb, "c0")
    poller = _stream_poller(aws, StreamMapping(batch_size=100, batching_window_seconds=0.5))
    original = poller._streams.get_records
    writes = iter(["c1", "c2"])

    def get_records_then_write(**kwargs: Any) -> Any:
        response = original(**kwargs)
        late = next(writes, None)
        if late is not None:  # a record written while the window is open
            _put(dynamodb, late)
        return response

    poller._streams = _Patched(poller._streams, get_records=get_records_then_write)
    assert poller.poll_once() is True
    assert [_conversion_ids(event) for event in behaviour.calls] == [["c0", "c1", "c2"]]


class _Patched:
    def __init__(self, target: Any, **overrides: Any) -> None:
        self._target = target
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._target, name)


def test_stream_partial_failure_redelivers_the_failed_record_and_those_after_it(aws: Any, behaviour: Any) -> None:
    dynamodb = aws[0]
    for n in range(4):
        _put(dynamodb, f"c{n}")
    poller = _stream_poller(aws)
    behaviour.fail_items.add(_shard_records(aws)[1]["dynamodb"]["SequenceNumber"])  # fail c1, once
    _drain(poller)
    assert [_conversion_ids(event) for event in behaviour.calls] == [["c0", "c1", "c2", "c3"], ["c1", "c2", "c3"]]


def test_stream_function_error_bisects_then_dead_letters_after_max_retries(aws: Any, behaviour: Any) -> None:
    dynamodb, sqs, _, created = aws
    for n in range(4):
        _put(dynamodb, f"c{n}")
    behaviour.always_raise = True
    poller = _stream_poller(aws, StreamMapping(batch_size=100, bisect_on_error=True, maximum_retry_attempts=2))
    _drain(poller)
    sizes = [len(event["Records"]) for event in behaviour.calls]
    assert sizes[:3] == [4, 2, 1]
    messages = sqs.receive_message(QueueUrl=created.queue_urls["EvaluatorDeadLetterQueue"], MaxNumberOfMessages=10)
    bodies = [json.loads(m["Body"]) for m in messages.get("Messages", [])]
    assert bodies, "exhausted batches go to the on-failure destination"
    assert bodies[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert bodies[0]["DDBStreamBatchInfo"]["streamArn"] == created.conversions_stream_arn
    # The shard moved on: every record was attempted, none blocks the stream forever.
    attempted = {cid for event in behaviour.calls for cid in _conversion_ids(event)}
    assert attempted == {"c0", "c1", "c2", "c3"}


def _queue_poller(aws: Any) -> QueuePoller:
    _, sqs, _, created = aws
    function = LocalFunction("on_delivery_message", f"{HANDLERS}.on_queue", timeout_seconds=30)
    return QueuePoller(sqs, created.queue_urls["DeliveriesQueue"], function, QueueMapping(batch_size=10))


def _depth(sqs: Any, url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_queue_deletes_successes_and_leaves_reported_failures_invisible(aws: Any, behaviour: Any) -> None:
    _, sqs, _, created = aws
    url = created.queue_urls["DeliveriesQueue"]
    ids = [sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))["MessageId"] for n in range(3)]
    behaviour.fail_items.add(ids[1])
    poller = _queue_poller(aws)
    assert poller.poll_once() == 3
    record = behaviour.calls[0]["Records"][0]
    assert record["eventSourceARN"].endswith(":postback-deliveries")
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"messageId", "receiptHandle", "body", "messageAttributes", "md5OfBody"} <= set(record)
    assert _depth(sqs, url) == (0, 1)


def test_queue_function_error_deletes_nothing_and_redrive_moves_to_dlq(aws: Any, behaviour: Any) -> None:
    _, sqs, _, created = aws
    url = created.queue_urls["DeliveriesQueue"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    behaviour.always_raise = True
    poller = _queue_poller(aws)
    receives = 0
    while poller.poll_once():
        receives += 1
        assert receives <= 50
    redrive = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    )
    assert receives == redrive["maxReceiveCount"]
    assert _depth(sqs, created.queue_urls["DeliveriesDeadLetterQueue"]) == (1, 0)


def test_queue_malformed_batch_response_retries_the_whole_batch(aws: Any, behaviour: Any) -> None:
    _, sqs, _, created = aws
    url = created.queue_urls["DeliveriesQueue"]
    for n in range(2):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
    behaviour.malformed = True
    poller = _queue_poller(aws)
    assert poller.poll_once() == 2
    assert _depth(sqs, url) == (0, 2)
