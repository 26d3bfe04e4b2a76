"""The evaluator against moto in-process: tables from the pynamodb models, the two queues it uses."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions import bootstrap
from functions.core.model import Postback
from functions.evaluator.handler import on_conversion_change
from functions.evaluator.service import ConversionEvaluator
from functions.settings import Settings, load_settings
from functions.storage.models import DeliveryModel, PostbackModel
from functions.storage.postbacks import new_item
from tests.support.aws_calls import AwsCallLog
from tests.support.streams import stream_event


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class WallClock:
    """The real epoch time plus `ahead` seconds: the API stamps rules changes with the real time."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


@dataclass
class Stack:
    settings: Settings
    sqs: Any
    deliveries_queue_url: str
    dlq_url: str
    rules_clock: Clock
    evaluator: ConversionEvaluator
    wall_clock: WallClock = field(default_factory=WallClock)
    # Every message drained so far, per queue URL.
    drained: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add_postback(self, postback: Postback) -> None:
        new_item(postback).save()

    def invoke(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The handler as Lambda calls it: a Lambda-shaped event dict and a context."""
        result: dict[str, Any] = on_conversion_change(stream_event(records), None)
        return result

    def drain(self, queue_url: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            received = self.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=60
            ).get("Messages", [])
            if not received:
                self.drained.setdefault(queue_url, []).extend(messages)
                return messages
            for message in received:
                messages.append(
                    {"body": json.loads(message["Body"]), "attributes": message.get("MessageAttributes", {})}
                )
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def queued_delivery_ids(self) -> list[str]:
        return [message["body"]["delivery_id"] for message in self.drain(self.deliveries_queue_url)]

    def all_queued_delivery_ids(self) -> list[str]:
        """Every delivery ID ever queued in this test (drained earlier or now)."""
        self.drain(self.deliveries_queue_url)
        return [message["body"]["delivery_id"] for message in self.drained.get(self.deliveries_queue_url, [])]

    def deliveries(self) -> dict[str, DeliveryModel]:
        return {item.delivery_id: item for item in DeliveryModel.scan()}


def _reset_connections() -> None:
    # pynamodb caches a connection (and its botocore client) per model class: a fresh one per test
    # keeps event hooks and moto state from leaking between tests.
    PostbackModel._connection = None
    DeliveryModel._connection = None


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        _reset_connections()
        PostbackModel.create_table(billing_mode="PAY_PER_REQUEST")
        DeliveryModel.create_table(billing_mode="PAY_PER_REQUEST")
        defaults = load_settings()
        admin_sqs = boto3.client("sqs", region_name=defaults.region)
        deliveries_queue_url = admin_sqs.create_queue(QueueName=defaults.deliveries_queue)["QueueUrl"]
        dlq_url = admin_sqs.create_queue(QueueName=defaults.evaluator_dlq)["QueueUrl"]
        # Queues given by URL (as settings allow): no GetQueueUrl in the requests a test counts.
        settings = replace(defaults, deliveries_queue=deliveries_queue_url, evaluator_dlq=dlq_url)
        bootstrap.reset(settings)
        rules_clock, wall_clock = Clock(), WallClock()
        # The real wiring (clients bound to this mock), with clocks the tests move.
        evaluator = bootstrap.build_conversion_evaluator(rules_clock=rules_clock, rules_wall_clock=wall_clock)
        monkeypatch.setattr(bootstrap, "conversion_evaluator", lambda: evaluator)
        try:
            yield Stack(
                settings,
                bootstrap.sqs_client(),
                deliveries_queue_url,
                dlq_url,
                rules_clock,
                evaluator,
                wall_clock=wall_clock,
            )
        finally:
            _reset_connections()
            bootstrap.reset()


@pytest.fixture
def counted(stack: Stack) -> Iterator[Callable[[], Counter[str]]]:
    """Count every AWS call of the clients the evaluator uses, after the set-up of the test."""
    log = AwsCallLog()

    def snapshot() -> Counter[str]:
        return Counter(request.operation for request in log.clear())

    with log.watching(stack.sqs):
        yield snapshot
