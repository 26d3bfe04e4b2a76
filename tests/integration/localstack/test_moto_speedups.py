"""The moto server's speedups (`local/moto_speedups.py`) answer exactly what moto answers without them.

The same scenario — DynamoDB writes, updates (the same expression twice, a refused condition),
reads and stream records with every kind of attribute value, and SQS sends, receives, delays and
visibility changes — runs in two fresh interpreters, one with the speedups applied, and the
responses must be equal once the values that differ from run to run (IDs, times, receipts) are
taken out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from local.moto_speedups import is_wire_attribute_value

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
VOLATILE_KEYS = frozenset(
    {
        "eventID",
        "SequenceNumber",
        "ApproximateCreationDateTime",
        "MessageId",
        "ReceiptHandle",
        "SentTimestamp",
        "ApproximateFirstReceiveTimestamp",
        "ResponseMetadata",
        "LatestStreamArn",
        "LatestStreamLabel",
        "QueueUrl",
        "NextShardIterator",
        "SenderId",
        "CreationDateTime",
        "ConsumedCapacity",
        "SizeBytes",  # moto counts the record's JSON, sequence number and time included
    }
)

ITEM: dict[str, Any] = {
    "id": {"S": "item-1"},
    "text": {"S": ""},
    "count": {"N": "41"},
    "flag": {"BOOL": False},
    "nothing": {"NULL": True},
    "names": {"SS": ["a", "b"]},
    "numbers": {"NS": ["1", "2.5"]},
    "blob": {"B": b"\x00\xffbinary"},
    "blobs": {"BS": [b"x", b"y"]},
    "log": {"L": [{"M": {"at": {"S": "t1"}, "code": {"N": "200"}, "raw": {"B": b"\x01"}}}]},
    "nested": {"M": {"deep": {"L": [{"S": "x"}, {"N": "3"}, {"BOOL": True}, {"L": []}, {"M": {}}]}}},
}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _stable(member) for key, member in value.items() if key not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_stable(member) for member in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def scenario(port: int) -> list[Any]:
    """The responses of a fixed sequence of requests to the moto server on `port`."""
    from botocore.exceptions import ClientError

    from tests.e2e.harness import aws_client

    endpoint = f"http://127.0.0.1:{port}"
    dynamodb, streams, sqs = (aws_client(name, endpoint) for name in ("dynamodb", "dynamodbstreams", "sqs"))
    out: list[Any] = []
    table = dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    out.append(dynamodb.put_item(TableName="t", Item=ITEM, ReturnValues="ALL_OLD"))
    out.append(dynamodb.put_item(TableName="t", Item=ITEM, ReturnValues="ALL_OLD"))
    update = {
        "TableName": "t",
        "Key": {"id": {"S": "item-1"}},
        "UpdateExpression": "SET #log = list_append(#log, :entry), #count = #count + :one REMOVE #nothing",
        "ConditionExpression": "attribute_exists(#count)",
        "ExpressionAttributeNames": {"#log": "log", "#count": "count", "#nothing": "nothing"},
        "ExpressionAttributeValues": {":entry": {"L": [{"M": {"at": {"S": "t2"}}}]}, ":one": {"N": "1"}},
    }
    for return_values in ("ALL_NEW", "ALL_NEW", "UPDATED_NEW", "ALL_OLD", "NONE"):
        out.append(dynamodb.update_item(**update, ReturnValues=return_values))
    try:
        dynamodb.update_item(**{**update, "ConditionExpression": "attribute_not_exists(#count)"})
    except ClientError as exc:
        out.append(exc.response["Error"])
    out.append(dynamodb.get_item(TableName="t", Key={"id": {"S": "item-1"}}))
    out.append(
        dynamodb.query(
            TableName="t", KeyConditionExpression="id = :id", ExpressionAttributeValues={":id": {"S": "item-1"}}
        )
    )
    out.append(dynamodb.batch_get_item(RequestItems={"t": {"Keys": [{"id": {"S": "item-1"}}, {"id": {"S": "none"}}]}}))
    shard = streams.describe_stream(StreamArn=table["LatestStreamArn"])["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=table["LatestStreamArn"], ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    out.append(streams.get_records(ShardIterator=iterator))

    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {
                "Id": "now",
                "MessageBody": "first",
                "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}},
            },
            {"Id": "later", "MessageBody": "delayed", "DelaySeconds": 1},
        ],
    )
    attributes = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
    ]
    out.append(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=attributes))
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    )
    out.append(received)
    out.append(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=attributes))
    out.append(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10))  # in flight or delayed: nothing
    [first] = received["Messages"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    time.sleep(1.2)  # the delayed message is due, the first one visible again
    again = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["ApproximateReceiveCount"]
    )
    out.append(sorted(again["Messages"], key=lambda message: message["Body"]))
    return [_stable(response) for response in out]


def _run(patched: bool) -> list[Any]:
    result = subprocess.run(
        [sys.executable, __file__, "patched" if patched else "plain"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return list(json.loads(result.stdout))


def test_responses_with_the_speedups_equal_moto_s_own() -> None:
    plain, patched = _run(patched=False), _run(patched=True)
    assert len(plain) == len(patched)
    for number, (expected, actual) in enumerate(zip(plain, patched, strict=True)):
        assert actual == expected, f"response {number} differs"
    # The scenario exercised what it claims to: binary values, counts, a refused condition.
    assert plain[2]["Attributes"]["count"] == {"N": "42"}
    assert any(
        isinstance(response, dict) and response.get("Code") == "ConditionalCheckFailedException" for response in plain
    )


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ({"S": ""}, True),
        ({"N": "1"}, True),
        ({"N": 1}, False),
        ({"BOOL": True}, True),
        ({"NULL": True}, True),
        ({"SS": ["a"]}, True),
        ({"NS": ["1", 2]}, False),
        ({"M": {"a": {"L": [{"S": "x"}, {"M": {}}]}}}, True),
        ({"M": {"a": {"B": "AAE="}}}, False),
        ({"L": [{"BS": ["AA=="]}]}, False),
        ({"S": "a", "N": "1"}, False),
        ("S", False),
    ],
)
def test_wire_attribute_values_are_recognised(value: Any, wire: bool) -> None:
    assert is_wire_attribute_value(value) is wire


if __name__ == "__main__":
    from local import moto_speedups
    from local.moto_server import MotoServer

    if sys.argv[1] == "plain":
        moto_speedups.apply = lambda: None  # the server below then runs moto as it is
    from tests.e2e.harness import free_port as pick_free_port

    free_port = pick_free_port()
    server = MotoServer("127.0.0.1", free_port)
    server.start()
    try:
        print(json.dumps(scenario(free_port)))
    finally:
        server.stop()
