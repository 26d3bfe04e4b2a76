"""Benchmark 7: DynamoDB write units per delivered GET, from the items each write leaves.

One realistic delivery through the real handlers on moto in-process: a postback whose URL has the
typical shape of an affiliate tracker's (a tracker click ID, a Google-style click ID in `aff_s1`,
the conversion ID, offer, status, payout, currency, a timestamp and the delivery ID: ~330
characters rendered), a conversion pending -> approved on the conversions stream
(`functions.evaluator.handler.on_conversion_change`), the delivery's SQS message handed to
`functions.sender.handler.on_delivery_message` as Lambda would, a loopback receiver answering
200 at once. One attempt, the happy path.

Every write of the deliveries table is recorded with the item it leaves (the PutItem's item, the
UpdateItem's `ALL_NEW` response) and billed by DynamoDB's rules: size = attribute names + values
(`bench.counting.item_size`), ceil(size / 1 KiB) write units per write, an update billed on the
larger of the item before and after. The target (<= 3: create, lease, outcome, each item <= 1 KiB)
is the table's writes; the `by_postback` index (projection ALL, so every write of an item in it
rewrites its entry) is reported beside it, as are writes of other tables (the postback's health,
written at most once a minute per postback).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.counting import WRITE_UNIT_BYTES, item_size, write_units
from bench.report import BenchmarkResult, Row
from tests.support.aws_calls import AwsCallLog, AwsRequest

FIGURE = "7 write units"
TARGET_UNITS = 3
EVALUATOR = "functions.evaluator.handler.on_conversion_change"
SENDER = "functions.sender.handler.on_delivery_message"
# A tracker postback of typical length: click IDs, conversion, payout, timestamp, the delivery ID.
TRACKER_URL = (
    "http://{host}/postback?clickid={cid}&gclid={affS1}&sub2={affS2}&txid={conversionId}"
    "&offer_id={offerId}&status={conversionStatus}&payout={payout}&currency={currency}"
    "&ts={conversionTimestamp}&event_id={deliveryId}"
)
CLICK_ID = "5f1c9a7e2b3d4c8e9a0b1c2d3e4f5a6b"  # a tracker's 32-hex click ID
GOOGLE_CLICK_ID = "Cj0KCQiA4NWrBhD-ARIsAFCKwWt3uXyZ9QqV7pLm2nRk8sT1aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789aBcD_EALw_wcB"


@dataclass(frozen=True)
class Write:
    """One write of the deliveries table: what it was and the item it left."""

    step: str
    operation: str
    size_before: int
    size_after: int

    @property
    def units(self) -> int:
        """DynamoDB bills an update on the larger of the item before and after it."""
        return write_units(max(self.size_before, self.size_after))


class WriteLog(AwsCallLog):
    """Records the item each DynamoDB write leaves, per table, in order."""

    def __init__(self) -> None:
        super().__init__(active=True)
        self.step = "setup"
        self.items: list[tuple[str, str, str, dict[str, Any]]] = []  # (step, table, operation, item)

    def responded(self, request: AwsRequest) -> None:
        if request.service != "dynamodb" or request.response is None:
            return
        table = str(request.params.get("TableName", ""))
        if request.operation == "PutItem":
            item = dict(request.params.get("Item", {}))
        elif request.operation == "UpdateItem":
            item = dict(request.response.get("Attributes") or {})
        else:
            return
        with self._lock:
            self.items.append((self.step, table, request.operation, item))


def billed_writes(items: list[tuple[str, str, str, dict[str, Any]]], table: str) -> list[Write]:
    """The writes of `table` in order, each with the item size before (the previous write's) and after."""
    writes: list[Write] = []
    before = 0
    for step, name, operation, item in items:
        if name != table:
            continue
        size = item_size(item)
        writes.append(Write(step, operation, before if operation == "UpdateItem" else 0, size))
        before = size
    return writes


def _attribute_sizes(item: Mapping[str, Any]) -> dict[str, int]:
    return {name: item_size({name: value}) for name, value in item.items()}


def run(quick: bool = True) -> BenchmarkResult:
    import boto3
    from moto import mock_aws

    from bench.environment import prepare
    from bench.sender_concurrency import receivers
    from tests.support.aws_calls import forget_pynamodb_connections

    prepare()
    forget_pynamodb_connections()
    log = WriteLog()
    with log.installed(), mock_aws(), receivers(("127.0.0.1",), 0.0) as servers:
        details = _deliver_one(log, servers[0].server_address, boto3)
    return _result(details)


def _deliver_one(log: WriteLog, address: Any, boto3: Any) -> dict[str, Any]:
    from functions import bootstrap
    from infrastructure.resources import create_all
    from local.lambda_runtime import LambdaContext, resolve_handler, sqs_event_record
    from tests.support.conversions import postback
    from tests.support.streams import StreamBuilder, stream_event

    bootstrap.reset()
    settings = bootstrap.settings()
    sqs = boto3.client("sqs")
    created = create_all(boto3.client("dynamodb"), sqs, settings, conversions=False)
    queue_url = created.queue_urls["DeliveriesQueue"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    host = f"{address[0]}:{address[1]}"
    bootstrap.postback_repository().create(
        postback("pb_benchwrites", "aff-4711", url=TRACKER_URL.replace("{host}", host)), limit=100
    )
    conversion = {
        "conversion_id": f"conv-{uuid.uuid4()}",
        "affiliate_id": "aff-4711",
        "offer_id": "offer-1288",
        "conversion_type": "sale",
        "cid": CLICK_ID,
        "aff_s1": GOOGLE_CLICK_ID,
        "aff_s2": "spring-campaign-uk",
        "payout": 12.5,
        "currency": "EUR",
        "created_at": "2026-11-24T10:00:00Z",
    }
    builder = StreamBuilder(start_time=time.time())
    record = builder.modify({**conversion, "status": "pending"}, {**conversion, "status": "approved"})

    log.step = "create"
    resolve_handler(EVALUATOR)(stream_event([record]), LambdaContext("on_conversion_change", 60.0))
    log.step = "setup"
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    if len(messages) != 1:
        raise RuntimeError(f"expected one delivery message, got {len(messages)}")
    log.step = "send"
    response = resolve_handler(SENDER)(
        {"Records": [sqs_event_record(messages[0], queue_arn)]}, LambdaContext("on_delivery_message", 30.0)
    )
    log.step = "setup"
    if response.get("batchItemFailures"):
        raise RuntimeError(f"the sender reported a failure: {response}")
    writes = billed_writes(log.items, settings.deliveries_table)
    if len(writes) < 3:
        raise RuntimeError(f"expected create, lease and outcome writes, got {[w.operation for w in writes]}")
    from functions.storage.models import DeliveryModel

    final = next(item for _, table, _, item in reversed(log.items) if table == settings.deliveries_table)
    state = final.get(DeliveryModel.state.attr_name, {}).get("S")
    url = final.get(DeliveryModel.url.attr_name, {}).get("S", "")
    other_tables = {
        table: sum(
            write_units(item_size(item)) for step, name, _, item in log.items if name == table and step != "setup"
        )
        for table in {name for _, name, _, _ in log.items}
        if table != settings.deliveries_table
    }
    bootstrap.reset()
    return {
        "writes": [
            {
                "step": w.step,
                "operation": w.operation,
                "size_before": w.size_before,
                "size_after": w.size_after,
                "units": w.units,
            }
            for w in writes
        ],
        "delivered": state == "delivered",
        "url_length": len(url),
        "final_item_attribute_bytes": dict(
            sorted(_attribute_sizes(final).items(), key=lambda entry: entry[1], reverse=True)
        ),
        "other_tables_write_units": other_tables,
    }


def _result(details: dict[str, Any]) -> BenchmarkResult:
    writes = details["writes"]
    units = sum(int(w["units"]) for w in writes)
    largest = max(max(int(w["size_before"]), int(w["size_after"])) for w in writes)
    steps = ", ".join(f"{w['step']} {w['operation']} {w['size_after']} B -> {w['units']}" for w in writes)
    # `by_postback` projects ALL: every write of an item in the index rewrites its entry.
    index_units = units
    rows = [
        Row(
            FIGURE,
            "DynamoDB write units per delivery",
            float(units),
            "WCU",
            f"<= {TARGET_UNITS}",
            units <= TARGET_UNITS and bool(details["delivered"]),
            note=f"deliveries table, one delivered GET, URL {details['url_length']} chars: {steps}",
        ),
        Row(
            FIGURE,
            "largest delivery item at any write",
            float(largest),
            "bytes",
            f"<= {WRITE_UNIT_BYTES}",
            largest <= WRITE_UNIT_BYTES,
        ),
        Row(
            FIGURE,
            "longest URL that keeps every write <= 1 KiB",
            float(int(details["url_length"]) + WRITE_UNIT_BYTES - largest),
            "chars",
            note="this delivery's URL plus the room its largest write leaves (ASCII URL)",
        ),
        Row(
            FIGURE,
            "write units of the by_postback index per delivery (informative)",
            float(index_units),
            "WCU",
            note="projection ALL: each table write above rewrites the item's index entry too",
        ),
    ]
    return BenchmarkResult("write_units", rows, details)
