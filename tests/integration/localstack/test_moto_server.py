"""The local stack's moto server: routing through the cache, and the server in its own process."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from local.moto_server import MotoProcess, MotoProcessError, MotoServer

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _client(service: str, port: int) -> Any:
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _exercise(port: int) -> None:
    """DynamoDB, DynamoDB Streams and SQS, each reaching its own backend through one server."""
    dynamodb, streams, sqs = (_client(name, port) for name in ("dynamodb", "dynamodbstreams", "sqs"))
    table = dynamodb.create_table(
        TableName="conversions",
        KeySchema=[{"AttributeName": "conversion_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "conversion_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    dynamodb.put_item(TableName="conversions", Item={"conversion_id": {"S": "c1"}})
    assert dynamodb.get_item(TableName="conversions", Key={"conversion_id": {"S": "c1"}})["Item"]
    shard = streams.describe_stream(StreamArn=table["LatestStreamArn"])["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=table["LatestStreamArn"], ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    [record] = streams.get_records(ShardIterator=iterator)["Records"]
    assert record["eventName"] == "INSERT"
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert message["Body"] == "hello"
    # Requests without a routing key (here moto's own API) still take moto's routing.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=5) as response:
        assert response.status == 200


@pytest.fixture
def moto_process() -> Iterator[MotoProcess]:
    process = MotoProcess("127.0.0.1", _free_port())
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_in_process_server_routes_every_service_through_the_cache() -> None:
    port = _free_port()
    server = MotoServer("127.0.0.1", port)
    server.start()
    try:
        _exercise(port)
        items = _client("dynamodb", port).scan(TableName="conversions")["Items"]  # a cached route, reused
        assert [item["conversion_id"]["S"] for item in items] == ["c1"]
    finally:
        server.stop()
    assert not _listening(port)


def test_server_process_serves_until_stopped(moto_process: MotoProcess) -> None:
    assert moto_process.is_alive()
    _exercise(moto_process.port)
    moto_process.stop()
    assert not moto_process.is_alive()
    assert not _listening(moto_process.port)


def test_server_process_stops_when_its_parent_goes_away(moto_process: MotoProcess) -> None:
    child = moto_process._process
    assert child is not None and child.stdin is not None
    child.stdin.close()  # what the kernel does when the stack's process dies
    assert child.wait(10) == 0
    deadline = time.monotonic() + 5
    while _listening(moto_process.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _listening(moto_process.port)


def test_server_process_on_a_busy_port_fails_to_start() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        process = MotoProcess("127.0.0.1", busy.getsockname()[1])
        with pytest.raises(MotoProcessError, match="did not start"):
            process.start()
    assert not process.is_alive()
