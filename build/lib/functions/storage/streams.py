"""Reading back a range of one shard of a DynamoDB stream, for the replay of a stream batch failure
(`dlq redrive --queue evaluator`). The records come back as GetRecords returns them;
`functions.invocation.lambda_stream_record` gives them the shape Lambda delivers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

# What DynamoDB Streams answers for a range it no longer holds (trimmed after 24 h, a deleted stream
# or shard, an iterator that outlived its 15 minutes).
STREAM_GONE_ERRORS = frozenset({"TrimmedDataAccessException", "ExpiredIteratorException", "ResourceNotFoundException"})


class StreamRangeUnavailable(Exception):
    """The stream no longer holds the range (or its first record): it cannot be replayed from the stream."""


class StreamRangeReader:
    """Reads a range of one shard of a DynamoDB stream through a `dynamodbstreams` client, which
    `connect` builds on the first read (`functions.bootstrap.dynamodb_streams_client`), so a command
    that replays no range never creates one."""

    def __init__(self, connect: Callable[[], Any], *, page_size: int = 1000, max_empty_pages: int = 5) -> None:
        self._connect = connect
        self._client: Any | None = None
        self._page_size = page_size
        self._max_empty_pages = max_empty_pages

    def _streams(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def read(self, stream_arn: str, shard_id: str, start: str, end: str) -> list[dict[str, Any]]:
        """The records with `start` <= SequenceNumber <= `end`, in stream order, as GetRecords returns them.

        Starts AT_SEQUENCE_NUMBER `start` and reads until a record is past `end` or the shard has no
        more. Raises `StreamRangeUnavailable` when the stream no longer holds the range (trimmed,
        expired, gone) or does not return the record at `start` first — a range read only in part is
        never returned as if it were whole. Other AWS errors propagate.
        """
        low, high = int(start), int(end)
        client = self._streams()
        records: list[dict[str, Any]] = []
        try:
            iterator: str | None = client.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard_id, ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=start
            )["ShardIterator"]
            empty_pages = 0
            while iterator is not None and empty_pages < self._max_empty_pages:
                page = client.get_records(ShardIterator=iterator, Limit=self._page_size)
                iterator = page.get("NextShardIterator")
                batch = page.get("Records") or []
                empty_pages = 0 if batch else empty_pages + 1
                for record in batch:
                    number = int(str(record["dynamodb"]["SequenceNumber"]))
                    if number > high:
                        iterator = None
                        break
                    if number >= low:
                        records.append(record)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in STREAM_GONE_ERRORS:
                raise StreamRangeUnavailable(code) from error
            raise
        if not records:
            raise StreamRangeUnavailable(f"no records returned for sequence number {start}")
        first = str(records[0]["dynamodb"]["SequenceNumber"])
        if int(first) != low:
            raise StreamRangeUnavailable(f"the first record returned is {first}, not {start}")
        return records
