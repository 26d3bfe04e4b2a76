"""Stream batch failures in the evaluator DLQ: parsing Lambda's on-failure destination record,
selecting it, reading its range back from the stream, and the Lambda shape of the records read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.cli.dlq import Outcome, RedriveReport, Result
from functions.cli.dlq_messages import ConversionMessageKind, parse_conversion_dead_letter
from functions.core.redrive import DeadLetterFilter
from functions.invocation import lambda_stream_record
from functions.storage.streams import StreamRangeReader, StreamRangeUnavailable

pytestmark = pytest.mark.unit

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/conversions/stream/2026-11-24T00:00:00.000"
SHARD = "shardId-00000001732406400000-0a1b2c3d"


def destination_record(**info: Any) -> dict[str, Any]:
    """Lambda's on-failure destination record for a DynamoDB stream (AWS's documented shape)."""
    batch = {
        "shardId": SHARD,
        "startSequenceNumber": "800000000003126276362",
        "endSequenceNumber": "800000000003126276370",
        "approximateArrivalOfFirstRecord": "2026-11-24T10:00:00Z",
        "approximateArrivalOfLastRecord": "2026-11-24T10:00:05Z",
        "batchSize": 3,
        "streamArn": ARN,
    } | info
    return {
        "requestContext": {
            "requestId": "316aa6d0-8154-4e5a-9af7-85d5f4a6bc81",
            "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:evaluator",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 101,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-24T11:00:00.000Z",
        "DDBStreamBatchInfo": batch,
    }


def test_an_on_failure_record_parses_as_a_stream_batch_failure() -> None:
    entry = parse_conversion_dead_letter("m-1", json.dumps(destination_record()), {"SentTimestamp": "1795000000000"})

    assert entry.kind is ConversionMessageKind.STREAM_BATCH_FAILURE
    assert entry.reason == "RetryAttemptsExhausted"
    assert entry.record is None and entry.conversion_id is None
    assert entry.item_id == "800000000003126276362..800000000003126276370"
    assert entry.at == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # the first record's arrival
    assert entry.dead_lettered_at == "2026-11-24T11:00:00.000Z"
    batch = entry.batch
    assert batch is not None and batch.readable
    assert (batch.shard_id, batch.batch_size, batch.stream_arn, batch.approximate_invoke_count) == (SHARD, 3, ARN, 101)
    assert batch.not_replayable_reason == (
        "the stream no longer holds sequence numbers 800000000003126276362..800000000003126276370 (24 h retention); "
        "recover from the conversion service's records"
    )


def test_a_stored_record_keeps_its_kind() -> None:
    body = {"v": 1, "kind": "conversion_record", "reason": "malformed", "record": {"dynamodb": {}}}
    entry = parse_conversion_dead_letter("m-1", json.dumps(body), {})
    assert entry.kind is ConversionMessageKind.CONVERSION_RECORD
    assert entry.batch is None


@pytest.mark.parametrize(
    "info",
    [{"shardId": None}, {"startSequenceNumber": "abc"}, {"endSequenceNumber": "1"}],
)
def test_an_incomplete_range_is_not_readable(info: dict[str, Any]) -> None:
    entry = parse_conversion_dead_letter("m-1", json.dumps(destination_record(**info)), {})
    assert entry.batch is not None and not entry.batch.readable


def test_filters_use_the_arrival_time_and_the_condition() -> None:
    entry = parse_conversion_dead_letter("m-1", json.dumps(destination_record()), {})
    assert DeadLetterFilter(since=datetime(2026, 11, 24, 9, tzinfo=UTC)).matches_conversion(entry)
    assert not DeadLetterFilter(since=datetime(2026, 11, 24, 10, 1, tzinfo=UTC)).matches_conversion(entry)
    assert DeadLetterFilter(until=datetime(2026, 11, 24, 10, 1, tzinfo=UTC)).matches_conversion(entry)
    assert DeadLetterFilter(reasons=frozenset({"RetryAttemptsExhausted"})).matches_conversion(entry)
    assert not DeadLetterFilter(affiliate_ids=frozenset({"aff-1"})).matches_conversion(entry)


def test_records_read_from_the_stream_get_the_lambda_shape() -> None:
    created = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    record: dict[str, Any] = {
        "eventID": "e-1",
        "eventName": "INSERT",
        "dynamodb": {"ApproximateCreationDateTime": created},
    }
    converted = lambda_stream_record(record, ARN, "eu-west-1")
    assert converted["eventSourceARN"] == ARN
    assert converted["dynamodb"]["ApproximateCreationDateTime"] == created.timestamp()
    assert converted["eventSource"] == "aws:dynamodb" and converted["awsRegion"] == "eu-west-1"
    assert record["dynamodb"]["ApproximateCreationDateTime"] is created  # the input is not changed


def stream_record(number: int) -> dict[str, Any]:
    return {"eventID": f"e-{number}", "eventName": "INSERT", "dynamodb": {"SequenceNumber": str(number)}}


class FakeStreams:
    """GetShardIterator / GetRecords over a list of pages; or an error code to raise."""

    def __init__(self, pages: list[list[int]], error: str | None = None, error_on: str = "get_shard_iterator") -> None:
        self.pages = pages
        self.error = error
        self.error_on = error_on
        self.iterator_requests: list[dict[str, Any]] = []
        self.reads = 0

    def _raise(self, operation: str) -> None:
        if self.error is not None and operation == self.error_on:
            raise ClientError({"Error": {"Code": self.error, "Message": "gone"}}, operation)

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        self._raise("get_shard_iterator")
        self.iterator_requests.append(request)
        return {"ShardIterator": "it-0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        self._raise("get_records")
        index = int(ShardIterator.removeprefix("it-"))
        self.reads += 1
        if index >= len(self.pages):
            return {"Records": [], "NextShardIterator": f"it-{index + 1}"}
        return {"Records": [stream_record(n) for n in self.pages[index]], "NextShardIterator": f"it-{index + 1}"}


def test_the_reader_starts_at_the_start_and_stops_past_the_end() -> None:
    fake = FakeStreams([[10, 11], [], [12, 13, 14]])
    records = StreamRangeReader(lambda: fake).read(ARN, SHARD, "10", "13")
    assert [r["dynamodb"]["SequenceNumber"] for r in records] == ["10", "11", "12", "13"]
    assert fake.iterator_requests == [
        {"StreamArn": ARN, "ShardId": SHARD, "ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": "10"}
    ]
    assert fake.reads == 3


def test_the_reader_stops_when_the_shard_has_no_more_records() -> None:
    fake = FakeStreams([[10, 11]])
    records = StreamRangeReader(lambda: fake, max_empty_pages=3).read(ARN, SHARD, "10", "20")
    assert len(records) == 2
    assert fake.reads == 4  # one page, then three empty ones


@pytest.mark.parametrize(
    "code", ["TrimmedDataAccessException", "ExpiredIteratorException", "ResourceNotFoundException"]
)
@pytest.mark.parametrize("operation", ["get_shard_iterator", "get_records"])
def test_a_trimmed_or_gone_range_is_unavailable(code: str, operation: str) -> None:
    with pytest.raises(StreamRangeUnavailable, match=code):
        StreamRangeReader(lambda: FakeStreams([[10]], error=code, error_on=operation)).read(ARN, SHARD, "10", "10")


def test_other_aws_errors_propagate() -> None:
    with pytest.raises(ClientError):
        StreamRangeReader(lambda: FakeStreams([[10]], error="AccessDeniedException")).read(ARN, SHARD, "10", "10")


@pytest.mark.parametrize("pages", [[], [[12, 13]]])
def test_a_range_whose_first_record_is_not_returned_is_unavailable(pages: list[list[int]]) -> None:
    with pytest.raises(StreamRangeUnavailable):
        StreamRangeReader(lambda: FakeStreams(pages)).read(ARN, SHARD, "10", "13")


def test_a_not_replayable_range_makes_the_run_partial() -> None:
    report = RedriveReport(dry_run=False, outcomes=[Outcome("1..2", "m-1", Result.NOT_REPLAYABLE, "gone")])
    assert report.incomplete and report.not_replayable == 1
    assert not RedriveReport(dry_run=False, outcomes=[Outcome("1..2", "m-1", Result.LEFT_IN_DLQ, "copy")]).incomplete
    assert report.as_dict()["counts"] == {"not_replayable": 1}
    assert report.as_dict()["outcomes"] == [
        {"item_id": "1..2", "message_id": "m-1", "result": "not_replayable", "why": "gone"}
    ]
