"""Local stand-ins for Lambda's event source mappings: conversions stream -> evaluator, deliveries
queue -> sender, with the semantics the AWS template configures.

Stream (per shard, in order): batches of up to `BatchSize` records; a partial batch response
makes the next batch start at the lowest reported sequence number (re-read from the stream, so
the records after it are delivered again too); a function error retries the batch, halved each
time when `BisectBatchOnFunctionError` is on; after `MaximumRetryAttempts` retries, or once the
first record is older than `MaximumRecordAgeInSeconds`, the batch is skipped and a Lambda-style
failure record goes to the on-failure destination (the evaluator's dead-letter queue).

Queue: receives up to `BatchSize` messages, invokes the function, deletes every message not
reported in `batchItemFailures`; a function error or a malformed response deletes nothing (the
messages reappear after their visibility timeout, and the queue's redrive policy moves them to the
dead-letter queue after `maxReceiveCount` receives, as in AWS).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions.invocation import failed_item_identifiers, function_arn, lambda_stream_record
from local.config import REGION
from local.lambda_runtime import LocalFunction, sqs_event_record

logger = logging.getLogger(__name__)

SHARD_REFRESH_SECONDS = 1.0
MAX_RETRY_BACKOFF_SECONDS = 2.0


@dataclass(frozen=True)
class StreamMapping:
    batch_size: int = 100
    batching_window_seconds: float = 0.0
    bisect_on_error: bool = True
    maximum_retry_attempts: int = -1  # -1: until the record expires
    maximum_record_age_seconds: int = -1  # -1: no limit

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]) -> StreamMapping:
        return cls(
            batch_size=int(props.get("BatchSize", 100)),
            batching_window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
            bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
            maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
            maximum_record_age_seconds=int(props.get("MaximumRecordAgeInSeconds", -1)),
        )


@dataclass(frozen=True)
class QueueMapping:
    batch_size: int = 10
    batching_window_seconds: float = 0.0
    maximum_concurrency: int = 2

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]) -> QueueMapping:
        scaling = props.get("ScalingConfig") or {}
        return cls(
            batch_size=int(props.get("BatchSize", 10)),
            batching_window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
            maximum_concurrency=int(scaling.get("MaximumConcurrency", 2)),
        )


class _ShardCursor:
    def __init__(self, shard_id: str, iterator: str | None) -> None:
        self.shard_id = shard_id
        self.iterator = iterator
        self.limit: int | None = None  # reduced while bisecting
        self.retries = 0
        self.retry_at = 0.0
        self.ended = False


class StreamPoller:
    """Reads every shard of one DynamoDB stream and invokes a function with Lambda-shaped batches."""

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        function: LocalFunction,
        mapping: StreamMapping,
        sqs: Any | None = None,
        on_failure_queue_url: str | None = None,
        poll_seconds: float = 0.1,
    ) -> None:
        self._streams = streams
        self._stream_arn = stream_arn
        self._function = function
        self._mapping = mapping
        self._sqs = sqs
        self._on_failure_queue_url = on_failure_queue_url
        self._poll_seconds = poll_seconds
        self._cursors: dict[str, _ShardCursor] = {}
        self._refreshed_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-poller-{function.name}", daemon=True)
        self.ready = threading.Event()
        self.invocations = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.poll_once()
            except Exception:  # a failed poll (moto restarting, network): log it and poll again
                logger.exception("stream poller for %s: poll failed", self._function.name)
                busy = False
            self.ready.set()
            if not busy:
                self._stop.wait(self._poll_seconds)

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        return lambda_stream_record(record, self._stream_arn, REGION)

    def _refresh_shards(self) -> None:
        now = time.monotonic()
        if self._cursors and now - self._refreshed_at < SHARD_REFRESH_SECONDS:
            return
        self._refreshed_at = now
        description = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id in self._cursors:
                continue
            iterator = self._streams.get_shard_iterator(
                StreamArn=self._stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            self._cursors[shard_id] = _ShardCursor(shard_id, iterator)

    def poll_once(self) -> bool:
        """Read and process one batch per shard; True when any shard had records."""
        self._refresh_shards()
        busy = False
        for cursor in list(self._cursors.values()):
            if cursor.ended or cursor.iterator is None or time.monotonic() < cursor.retry_at:
                continue
            records = self._read_batch(cursor)
            if records:
                busy = True
                self._process(cursor, records)
        return busy

    def _read_batch(self, cursor: _ShardCursor) -> list[dict[str, Any]]:
        """Up to `limit` records: what one GetRecords returns, or, with a batching window, what arrives
        until the batch is full or the window (from the first record) closes."""
        limit = cursor.limit or self._mapping.batch_size
        records: list[dict[str, Any]] = []
        deadline = 0.0
        iterator = cursor.iterator
        while iterator is not None and len(records) < limit:
            response = self._streams.get_records(ShardIterator=iterator, Limit=limit - len(records))
            batch = response.get("Records", [])
            iterator = response.get("NextShardIterator")
            if not records:
                if not batch:
                    break
                deadline = time.monotonic() + self._mapping.batching_window_seconds
            records.extend(batch)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break  # no window (the default): invoke with what this read returned, as Lambda does
            if not batch:
                self._stop.wait(min(self._poll_seconds, remaining))
        # Remember where this read ended; a failure below moves the cursor back.
        cursor.iterator = iterator
        if iterator is None:
            cursor.ended = True
        return records

    def _process(self, cursor: _ShardCursor, records: list[dict[str, Any]]) -> None:
        event = {"Records": [self._lambda_record(record) for record in records]}
        self.invocations += 1
        result = self._function.invoke(event)
        failed = None if result.error is not None else failed_item_identifiers(result.response)
        if failed == []:
            cursor.limit = None
            cursor.retries = 0
            return
        sequence_numbers = [str(record["dynamodb"]["SequenceNumber"]) for record in records]
        if failed is None or not set(failed) & set(sequence_numbers):
            retry_from = sequence_numbers[0]
            if result.error is not None and self._mapping.bisect_on_error and len(records) > 1:
                cursor.limit = max(1, len(records) // 2)
        else:
            retry_from = min(failed, key=int)
        retry_records = records[sequence_numbers.index(retry_from) :]
        if self._exhausted(cursor, retry_records):
            self._send_to_failure_destination(cursor, retry_records, result.error is not None)
            self._seek(cursor, retry_records[-1]["dynamodb"]["SequenceNumber"], "AFTER_SEQUENCE_NUMBER")
            cursor.retries = 0
            cursor.limit = None
            return
        cursor.retries += 1
        cursor.retry_at = time.monotonic() + min(MAX_RETRY_BACKOFF_SECONDS, 0.05 * 2**cursor.retries)
        self._seek(cursor, retry_from, "AT_SEQUENCE_NUMBER")

    def _exhausted(self, cursor: _ShardCursor, records: list[dict[str, Any]]) -> bool:
        attempts_left = self._mapping.maximum_retry_attempts
        if attempts_left >= 0 and cursor.retries >= attempts_left:
            return True
        max_age = self._mapping.maximum_record_age_seconds
        if max_age >= 0:
            created = self._lambda_record(records[0])["dynamodb"].get("ApproximateCreationDateTime")
            if created is not None and time.time() - float(created) > max_age:
                return True
        return False

    def _seek(self, cursor: _ShardCursor, sequence_number: str, iterator_type: str) -> None:
        cursor.iterator = self._streams.get_shard_iterator(
            StreamArn=self._stream_arn,
            ShardId=cursor.shard_id,
            ShardIteratorType=iterator_type,
            SequenceNumber=sequence_number,
        )["ShardIterator"]
        cursor.ended = False

    def _send_to_failure_destination(self, cursor: _ShardCursor, records: list[dict[str, Any]], errored: bool) -> None:
        first = self._lambda_record(records[0])["dynamodb"]
        last = self._lambda_record(records[-1])["dynamodb"]
        body = {
            "requestContext": {
                "requestId": first.get("SequenceNumber"),
                "functionArn": function_arn(self._function.name, REGION),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": cursor.retries + 1,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if errored else "",
            },
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "DDBStreamBatchInfo": {
                "shardId": cursor.shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(first.get("ApproximateCreationDateTime")),
                "approximateArrivalOfLastRecord": _iso(last.get("ApproximateCreationDateTime")),
                "batchSize": len(records),
                "streamArn": self._stream_arn,
            },
        }
        logger.error(
            "%s: retries exhausted for records %s..%s of shard %s; sent to the on-failure destination",
            self._function.name,
            first["SequenceNumber"],
            last["SequenceNumber"],
            cursor.shard_id,
        )
        if self._sqs is not None and self._on_failure_queue_url:
            self._sqs.send_message(QueueUrl=self._on_failure_queue_url, MessageBody=json.dumps(body))


def _iso(epoch: Any) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(float(epoch), UTC).isoformat()


class QueuePoller:
    """Receives from one SQS queue with `workers` concurrent pollers and invokes a function."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        function: LocalFunction,
        mapping: QueueMapping,
        workers: int = 4,
        wait_seconds: int = 1,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._function = function
        self._mapping = mapping
        self._wait_seconds = wait_seconds
        self._queue_arn: str | None = None
        self._stop = threading.Event()
        count = max(1, min(workers, mapping.maximum_concurrency))
        self._threads = [
            threading.Thread(target=self._run, name=f"queue-poller-{function.name}-{n}", daemon=True)
            for n in range(count)
        ]
        self._ready_count = 0
        self._lock = threading.Lock()
        self.ready = threading.Event()

    @property
    def queue_arn(self) -> str:
        if self._queue_arn is None:
            self._queue_arn = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
        return self._queue_arn

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def is_alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                self.poll_once(self._wait_seconds)
            except Exception:  # a failed receive (moto restarting, network): log it and poll again
                logger.exception("queue poller for %s: poll failed", self._function.name)
                self._stop.wait(0.5)
            if first:
                first = False
                with self._lock:
                    self._ready_count += 1
                    if self._ready_count == len(self._threads):
                        self.ready.set()

    def _receive(self, wait_seconds: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + self._mapping.batching_window_seconds
        while len(messages) < self._mapping.batch_size and not self._stop.is_set():
            response = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=min(10, self._mapping.batch_size - len(messages)),
                WaitTimeSeconds=wait_seconds if not messages else 0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            messages.extend(received)
            if not received or time.monotonic() >= deadline:
                break
        return messages

    def poll_once(self, wait_seconds: int = 0) -> int:
        """Receive one batch and process it; returns the number of messages received."""
        messages = self._receive(wait_seconds)
        if not messages:
            return 0
        event = {"Records": [sqs_event_record(message, self.queue_arn) for message in messages]}
        result = self._function.invoke(event)
        if result.error is not None:
            return len(messages)
        failed = failed_item_identifiers(result.response)
        if failed is None:
            logger.error("%s returned a malformed batch response; the whole batch will be retried", self._function.name)
            return len(messages)
        failed_ids = set(failed)
        done = [message for message in messages if message["MessageId"] not in failed_ids]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            response = self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                logger.warning("could not delete message %s: %s", failure.get("Id"), failure.get("Message"))
        return len(messages)
