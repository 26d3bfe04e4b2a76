"""Record-level steps of a redrive or a recovery on the deliveries table, and reading back a range
of the conversions stream for the replay of a stream batch failure.

`claim` and `mark_enqueued` are conditional updates, so two engineers redriving the same
deliveries at once, or a re-run after an interruption, never reset one delivery twice (see
`functions.core.redrive` for the whole protocol). The history (`attempts`) and the delivery id
are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import Condition

from functions.core.model import Delivery, DeliveryState, format_timestamp
from functions.core.redrive import DEAD_PARTITION, REDRIVING_PARTITION, index_bounds
from functions.storage.delivery_records import delivery_from_item
from functions.storage.models import DeliveryModel


def _is_condition_failure(error: UpdateError) -> bool:
    return error.cause_response_code == "ConditionalCheckFailedException"


class DeliveryRedriveRepository:
    """Reads delivery records and moves them through the claim / mark steps of a redrive."""

    def __init__(self, model: type[DeliveryModel] = DeliveryModel) -> None:
        self._model = model

    def get(self, delivery_id: str) -> Delivery | None:
        try:
            item = self._model.get(delivery_id, consistent_read=True)
        except self._model.DoesNotExist:
            return None
        return delivery_from_item(item)

    def claim(self, observed: Delivery, token: str, now: datetime) -> bool:
        """Reset the schedule of a delivery for a redrive, if it is still as `observed`.

        State `pending`, a fresh schedule (`cycle_attempts` 0; schedule, lease, next attempt and
        reason removed), `redrive_count` + 1, `redrive_token` = token, and the record moves to the
        `redriving` partition of the dead-letter index until `mark_enqueued`. Returns False when
        another writer changed the record first (the caller reads it again and decides anew).
        """
        model = self._model
        stamp = format_timestamp(now)
        condition: Condition = (model.state == observed.state.value) & (model.updated_at == observed.updated_at)
        try:
            model(observed.delivery_id).update(
                actions=[
                    model.state.set(DeliveryState.PENDING.value),
                    model.cycle_attempts.set(0),
                    model.schedule_started_at.remove(),
                    model.next_attempt_at.remove(),
                    model.lease_owner.remove(),
                    model.lease_expires_at.remove(),
                    model.reason.remove(),
                    model.enqueued_at.remove(),
                    model.redrive_count.set((model.redrive_count | 0) + 1),
                    model.redrive_token.set(token),
                    model.dead_letter_partition.set(REDRIVING_PARTITION),
                    model.dead_lettered_at.set(model.dead_lettered_at | stamp),
                    model.updated_at.set(stamp),
                ],
                condition=condition,
            )
        except UpdateError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def mark_enqueued(self, delivery_id: str, token: str, now: datetime) -> bool:
        """Record that the redriven delivery is on the deliveries queue and take it out of the index.

        Conditional on the token still being ours and the record still `redriving`: if the
        sender has meanwhile dead-lettered it again, that newer dead-letter entry is left alone.
        """
        model = self._model
        stamp = format_timestamp(now)
        try:
            model(delivery_id).update(
                actions=[
                    model.dead_letter_partition.remove(),
                    model.dead_lettered_at.remove(),
                    model.enqueued_at.set(stamp),
                    model.updated_at.set(stamp),
                ],
                condition=(model.redrive_token == token) & (model.dead_letter_partition == REDRIVING_PARTITION),
            )
        except UpdateError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def dead_lettered(
        self, since: datetime | None, until: datetime | None, *, include_redriving: bool = True
    ) -> Iterator[Delivery]:
        """Records of the `by_dead_letter` index in [since, until), oldest first; then half-done redrives."""
        partitions = [DEAD_PARTITION, REDRIVING_PARTITION] if include_redriving else [DEAD_PARTITION]
        low, high = index_bounds(since, until)
        key = self._model.dead_lettered_at
        for partition in partitions:
            range_condition: Condition | None = None
            if low is not None and high is not None:
                range_condition = key.between(low, high)
            elif low is not None:
                range_condition = key >= low
            elif high is not None:
                range_condition = key <= high
            for item in self._model.by_dead_letter.query(
                partition, range_key_condition=range_condition, scan_index_forward=True
            ):
                if high is not None and item.dead_lettered_at is not None and item.dead_lettered_at >= high:
                    continue
                yield delivery_from_item(item)


# What DynamoDB Streams answers for a range it no longer holds (trimmed after 24 h, a deleted stream
# or shard, an iterator that outlived its 15 minutes).
STREAM_GONE_ERRORS = frozenset({"TrimmedDataAccessException", "ExpiredIteratorException", "ResourceNotFoundException"})


class StreamRangeUnavailable(Exception):
    """The stream no longer holds the range (or its first record): it cannot be replayed from the stream."""


def _region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None


class StreamRangeReader:
    """Reads a range of one shard of a DynamoDB stream (`dynamodbstreams`, client created on first use;
    `AWS_ENDPOINT_URL` points it at the local stack like every other client)."""

    def __init__(
        self, client: Any | None = None, *, region: str | None = None, page_size: int = 1000, max_empty_pages: int = 5
    ) -> None:
        self._client = client
        self._region = region
        self._page_size = page_size
        self._max_empty_pages = max_empty_pages

    def _streams(self, stream_arn: str) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "dynamodbstreams",
                region_name=_region_of(stream_arn) or self._region,
                config=Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 5}),
            )
        return self._client

    def read(self, stream_arn: str, shard_id: str, start: str, end: str) -> list[dict[str, Any]]:
        """The records with `start` <= SequenceNumber <= `end`, in stream order, as GetRecords returns them.

        Starts AT_SEQUENCE_NUMBER `start` and reads until a record is past `end` or the shard has no
        more. Raises `StreamRangeUnavailable` when the stream no longer holds the range (trimmed,
        expired, gone) or does not return the record at `start` first — a range read only in part is
        never returned as if it were whole. Other AWS errors propagate.
        """
        low, high = int(start), int(end)
        client = self._streams(stream_arn)
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
