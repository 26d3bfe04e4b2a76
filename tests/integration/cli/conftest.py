"""The on-call tools against moto in-process: tables and queues created per test."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions import bootstrap
from functions.cli import main
from functions.cli.app import Services
from functions.cli.conversions import ConversionDeadLetters
from functions.cli.deliveries import DeliveryDeadLetters, Recovery, Step, StepHook
from functions.core.dead_letter_index import DEAD_PARTITION
from functions.core.messages import (
    REASON_MALFORMED_MESSAGE,
    REASON_UNKNOWN_DELIVERY,
    dead_letter_attributes,
    dead_letter_message,
    evaluator_dead_letter_message,
    malformed_message_dead_letter,
    set_aside_attributes,
    unknown_delivery_dead_letter,
)
from functions.core.model import DeliveryState, delivery_id_for, format_timestamp, utc_now
from functions.settings import Settings, load_settings
from functions.storage.deliveries import DeliveryRepository
from functions.storage.models import AttemptMap, DeliveryModel, PostbackModel
from functions.storage.postbacks import new_item
from functions.storage.queues import Queue
from functions.storage.streams import StreamRangeReader
from tests.support.streams import image


def _no_step(step: Step, delivery_id: str) -> None:
    return None


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class CliStack:
    settings: Settings
    sqs: Any
    deliveries_queue_url: str
    dlq_url: str
    evaluator_dlq_url: str

    def cli(self, *argv: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), stdout=out, stderr=err)
        return Run(code, out.getvalue(), err.getvalue())

    def services(
        self, on_step: StepHook = _no_step, clock: Callable[[], datetime] = utc_now, run_id: str = "run-1"
    ) -> Services:
        repository = DeliveryRepository()
        main_queue = Queue(self.deliveries_queue_url, self.sqs)
        return Services(
            deliveries=DeliveryDeadLetters(
                Queue(self.dlq_url, self.sqs), main_queue, repository, clock=clock, wait_seconds=0, on_step=on_step
            ),
            conversions=ConversionDeadLetters(
                Queue(self.evaluator_dlq_url, self.sqs),
                stream_arn="arn:test",
                region="us-east-1",
                streams=self.stream_reader(),
                wait_seconds=0,
            ),
            recovery=Recovery(main_queue, repository, run_id=run_id, clock=clock, on_step=on_step),
            clock=clock,
        )

    def stream_reader(self) -> StreamRangeReader:
        return StreamRangeReader(lambda: boto3.client("dynamodbstreams", region_name=self.settings.region))

    def dead_letter(
        self,
        delivery_id: str,
        *,
        affiliate_id: str = "aff-1",
        postback_id: str = "pb_1",
        reason: str = "http_404",
        status_code: int | None = 404,
        at: datetime | None = None,
        in_dlq: bool = True,
        copies: int = 1,
    ) -> DeliveryModel:
        """A delivery as the sender leaves it when it dead-letters: record updated, DLQ copy sent."""
        moment = at or utc_now() - timedelta(minutes=5)
        stamp = format_timestamp(moment)
        attempts = [
            AttemptMap(number=1, at=stamp, outcome="retryable", status_code=503, duration_ms=20),
            AttemptMap(
                number=2,
                at=stamp,
                outcome="terminal",
                status_code=status_code,
                duration_ms=31,
                response_excerpt="not here",
            ),
        ]
        item = DeliveryModel(
            delivery_id,
            postback_id=postback_id,
            affiliate_id=affiliate_id,
            conversion_id=f"conv-{delivery_id}",
            conversion_status="approved",
            url="https://tracker.example/cb?d=" + delivery_id,
            target_host="tracker.example",
            state=DeliveryState.DEAD_LETTERED.value,
            reason=reason,
            attempts=attempts,
            cycle_attempts=2,
            schedule_started_at=stamp,
            next_attempt_at=None,
            dead_lettered_at=stamp,
            dead_letter_partition=DEAD_PARTITION,
            created_at=stamp,
            updated_at=stamp,
            expires_at=int(moment.timestamp()) + 90 * 86400,
        )
        item.save()
        for _ in range(copies if in_dlq else 0):
            body = dead_letter_message(
                delivery_id=delivery_id,
                affiliate_id=affiliate_id,
                postback_id=postback_id,
                conversion_id=item.conversion_id,
                conversion_status="approved",
                target_host="tracker.example",
                reason=reason,
                last_status_code=status_code,
                attempts=[a.as_dict() for a in attempts],
                created_at=stamp,
                dead_lettered_at=stamp,
            )
            Queue(self.dlq_url, self.sqs).send(
                body, attributes=dead_letter_attributes(affiliate_id, postback_id, reason, status_code)
            )
        return item

    def set_aside(self, original_body: str, *, unknown_delivery: str | None = None) -> None:
        """A deliveries-queue message the sender put in the DLQ as it is: `malformed_message`, or with
        `unknown_delivery` (the delivery id it named) an `unknown_delivery` one."""
        at = format_timestamp(utc_now() - timedelta(minutes=5))
        body = malformed_message_dead_letter("original-1", original_body, at)
        reason = REASON_MALFORMED_MESSAGE
        if unknown_delivery is not None:
            body = unknown_delivery_dead_letter("original-1", original_body, unknown_delivery, at)
            reason = REASON_UNKNOWN_DELIVERY
        Queue(self.dlq_url, self.sqs).send(body, attributes=set_aside_attributes(reason))

    def evaluator_dead_letter(self, record: dict[str, Any], reason: str = "transient: throttled") -> None:
        Queue(self.evaluator_dlq_url, self.sqs).send(
            evaluator_dead_letter_message(
                record=record,
                reason=reason,
                event_source_arn=record.get("eventSourceARN"),
                sequence_number=record["dynamodb"]["SequenceNumber"],
                at=format_timestamp(utc_now()),
            )
        )

    def drain(self, queue_url: str) -> list[dict[str, Any]]:
        """Receive (and delete) everything visible; the bodies."""
        bodies: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
                "Messages", []
            )
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def queued_ids(self) -> list[str]:
        return sorted(body["delivery_id"] for body in self.drain(self.deliveries_queue_url))

    def dlq_ids(self) -> list[str]:
        return sorted(body["delivery_id"] for body in self.drain(self.dlq_url))

    def dlq_kinds(self) -> list[str]:
        """The `kind` of each DLQ body (`-` for a message the queue moved), sorted; drains the DLQ."""
        return sorted(str(body.get("kind", "-")) for body in self.drain(self.dlq_url))

    def record(self, delivery_id: str) -> DeliveryModel:
        return DeliveryModel.get(delivery_id, consistent_read=True)

    def conversions_stream(self) -> ConversionsStream:
        """The conversions table with its NEW_AND_OLD_IMAGES stream, as the conversion service owns it."""
        dynamodb = boto3.client("dynamodb", region_name=self.settings.region)
        table = dynamodb.create_table(
            TableName=self.settings.conversions_table,
            KeySchema=[{"AttributeName": "conversion_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "conversion_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]
        streams = boto3.client("dynamodbstreams", region_name=self.settings.region)
        return ConversionsStream(self.settings.conversions_table, dynamodb, streams, table["LatestStreamArn"])

    def stream_batch_failure(self, body: dict[str, Any]) -> None:
        """Lambda's on-failure destination record, as the stream mapping sends it to the evaluator DLQ."""
        Queue(self.evaluator_dlq_url, self.sqs).send(body)


@dataclass
class ConversionsStream:
    table: str
    dynamodb: Any
    streams: Any
    stream_arn: str

    def put(self, item: dict[str, Any]) -> None:
        self.dynamodb.put_item(TableName=self.table, Item=image(item))

    @property
    def shard_id(self) -> str:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        return str(shards[0]["ShardId"])

    def records(self) -> list[dict[str, Any]]:
        """Every record of the shard so far, as GetRecords returns them."""
        iterator = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=self.shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        return list(self.streams.get_records(ShardIterator=iterator)["Records"])

    def batch_failure(
        self,
        first: dict[str, Any],
        last: dict[str, Any],
        *,
        batch_size: int,
        condition: str = "RetryAttemptsExhausted",
        start: str | None = None,
        end: str | None = None,
    ) -> dict[str, Any]:
        """An OnFailure destination record (AWS's documented shape) for the records first..last."""

        def arrival(record: dict[str, Any]) -> str:
            moment: datetime = record["dynamodb"]["ApproximateCreationDateTime"]
            return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

        return {
            "requestContext": {
                "requestId": "5f6b1d0e-3c1a-4d7e-9f51-0c9d1e2f3a4b",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:postbacks-dev-OnConversionChange",
                "condition": condition,
                "approximateInvokeCount": 101,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": format_timestamp(utc_now()),
            "DDBStreamBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": start or first["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": end or last["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": arrival(first),
                "approximateArrivalOfLastRecord": arrival(last),
                "batchSize": batch_size,
                "streamArn": self.stream_arn,
            },
        }


def _reset_connections() -> None:
    # pynamodb caches a connection per model class: a fresh one per test keeps moto state apart.
    PostbackModel._connection = None
    DeliveryModel._connection = None


@pytest.fixture
def stack() -> Iterator[CliStack]:
    with mock_aws():
        _reset_connections()
        PostbackModel.create_table(billing_mode="PAY_PER_REQUEST")
        DeliveryModel.create_table(billing_mode="PAY_PER_REQUEST")
        settings = load_settings()
        sqs = boto3.client("sqs", region_name=settings.region)
        urls = [
            sqs.create_queue(QueueName=name)["QueueUrl"]
            for name in (settings.deliveries_queue, settings.deliveries_dlq, settings.evaluator_dlq)
        ]
        try:
            yield CliStack(settings, sqs, *urls)
        finally:
            _reset_connections()
            bootstrap.reset()  # `main` set the composition root up for a terminal: back to the Lambda wiring


def delivery_id(n: int) -> str:
    return delivery_id_for("pb_1", f"conv-{n}", "approved")


@pytest.fixture
def evaluator(stack: CliStack) -> Iterator[None]:
    """The evaluator builds itself from the settings on first use (inside the mock), as in a Lambda container."""
    bootstrap.reset()
    yield
    bootstrap.reset()


def add_postback(postback_id: str = "pb_1", affiliate_id: str = "aff-1") -> None:
    """A postback as the API stores it (tests.support.conversions.postback)."""
    from tests.support.conversions import postback

    new_item(postback(postback_id, affiliate_id)).save()
