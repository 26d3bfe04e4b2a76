"""Faults mid-batch, each followed by Lambda's retry from the reported record: every delivery ends
written once and queued (at least once), none missing.

Faults are injected with botocore event hooks on the clients the evaluator really uses (pynamodb's
connection client for DynamoDB, the queue's SQS client), so the code under test runs unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from functions.core.model import delivery_id_for
from functions.storage.models import DeliveryModel
from tests.integration.evaluator.conftest import Stack
from tests.support.conversions import conversion, postback
from tests.support.streams import StreamBuilder, sequence_number_of

pytestmark = pytest.mark.integration


class _Response:
    """The part of an HTTP response botocore reads when a before-call hook short-circuits a call."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


def _throttled() -> tuple[_Response, dict[str, Any]]:
    return _Response(400), {
        "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected throttling"},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }


class DynamoFault:
    """Makes the PutItem of the deliveries of `five_affiliates`' records from the `fail_from`-th on fail
    while `active` (every retry too). By record, not by call: the evaluator makes its writes concurrently."""

    def __init__(self, fail_from: int, mode: str) -> None:
        self.failing = {delivery_id_for(f"pb_{n}", f"c-{n}", "approved") for n in range(fail_from - 1, 5)}
        self.mode = mode
        self.active = True
        self.injected = 0

    def __call__(self, params: dict[str, Any], **_: Any) -> Any:
        if not self.active or json.loads(params["body"])["Item"]["delivery_id"]["S"] not in self.failing:
            return None
        self.injected += 1
        if self.mode == "raise":
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        return _throttled()


@pytest.fixture
def dynamo_client(stack: Stack) -> Iterator[Any]:
    client = DeliveryModel._get_connection().connection.client
    yield client


def five_affiliates(stack: Stack) -> tuple[list[dict[str, Any]], set[str]]:
    stream = StreamBuilder()
    records = []
    expected = set()
    for number in range(5):
        stack.add_postback(postback(f"pb_{number}", f"aff-{number}"))
        records.append(stream.insert(conversion(conversion_id=f"c-{number}", affiliate_id=f"aff-{number}")))
        expected.add(delivery_id_for(f"pb_{number}", f"c-{number}", "approved"))
    return records, expected


def assert_each_delivery_written_once_and_queued(stack: Stack, expected: set[str]) -> None:
    deliveries = stack.deliveries()
    assert set(deliveries) == expected
    assert {item.state for item in deliveries.values()} == {"pending"}
    queued = stack.all_queued_delivery_ids()
    assert set(queued) == expected


@pytest.mark.parametrize("mode", ["throttle", "raise"])
def test_dynamodb_failure_on_the_third_write_is_retried_from_that_record(
    stack: Stack, dynamo_client: Any, mode: str
) -> None:
    records, expected = five_affiliates(stack)
    fault = DynamoFault(fail_from=3, mode=mode)
    dynamo_client.meta.events.register("before-call.dynamodb.PutItem", fault)
    try:
        first = stack.invoke(records)
        assert first == {"batchItemFailures": [{"itemIdentifier": sequence_number_of(records[2])}]}
        assert fault.injected >= 1
        # Records before the failure are complete: written and queued.
        assert set(stack.queued_delivery_ids()) == {delivery_id_for(f"pb_{n}", f"c-{n}", "approved") for n in range(2)}
        fault.active = False
        retry = [record for record in records if int(sequence_number_of(record)) >= int(sequence_number_of(records[2]))]
        assert stack.invoke(retry) == {"batchItemFailures": []}
    finally:
        dynamo_client.meta.events.unregister("before-call.dynamodb.PutItem", fault)
    assert_each_delivery_written_once_and_queued(stack, expected)


class SqsFault:
    """Drops the given entry IDs from SendMessageBatch requests and reports them as failed."""

    def __init__(self, failing_ids: set[str], times: int | None) -> None:
        self.failing_ids = failing_ids
        self.times = times  # None: every time
        self.dropped: list[str] = []
        self._pending: list[str] = []
        self._kept: list[dict[str, Any]] = []
        self.calls = 0

    def before(self, params: dict[str, Any], **_: Any) -> None:
        self.calls += 1
        self._pending = []
        if self.times is not None and len(self.dropped) >= self.times:
            return
        keep: list[dict[str, Any]] = []
        self._kept = keep
        for entry in params["Entries"]:
            if entry["Id"] in self.failing_ids:
                self._pending.append(entry["Id"])
            else:
                keep.append(entry)
        params["Entries"] = keep
        self.dropped.extend(self._pending)

    def short_circuit(self, **_: Any) -> Any:
        """Every entry of the call fails: answer without calling SQS (it refuses an empty batch)."""
        if self._pending and not self._kept:
            return _Response(200), {"Successful": [], "Failed": []}
        return None

    def after(self, parsed: dict[str, Any], **_: Any) -> None:
        parsed.setdefault("Failed", [])
        for entry_id in self._pending:
            parsed["Failed"].append(
                {"Id": entry_id, "SenderFault": False, "Code": "InternalError", "Message": "injected failure"}
            )
        self._pending = []


@pytest.fixture
def sqs_fault(stack: Stack) -> Iterator[Any]:
    installed: list[SqsFault] = []

    def install(failing_ids: set[str], times: int | None) -> SqsFault:
        fault = SqsFault(failing_ids, times)
        stack.sqs.meta.events.register("before-parameter-build.sqs.SendMessageBatch", fault.before)
        stack.sqs.meta.events.register("before-call.sqs.SendMessageBatch", fault.short_circuit)
        stack.sqs.meta.events.register("after-call.sqs.SendMessageBatch", fault.after)
        installed.append(fault)
        return fault

    yield install
    for fault in installed:
        stack.sqs.meta.events.unregister("before-parameter-build.sqs.SendMessageBatch", fault.before)
        stack.sqs.meta.events.unregister("before-call.sqs.SendMessageBatch", fault.short_circuit)
        stack.sqs.meta.events.unregister("after-call.sqs.SendMessageBatch", fault.after)


def test_sendmessagebatch_partial_failure_is_retried_within_the_batch(stack: Stack, sqs_fault: Any) -> None:
    records, expected = five_affiliates(stack)
    failing = {delivery_id_for("pb_1", "c-1", "approved"), delivery_id_for("pb_3", "c-3", "approved")}
    fault = sqs_fault(failing, times=2)
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert sorted(fault.dropped) == sorted(failing)
    assert fault.calls == 2
    assert_each_delivery_written_once_and_queued(stack, expected)
    assert sorted(stack.all_queued_delivery_ids()) == sorted(expected)


def test_sendmessagebatch_persistent_failure_reports_the_record_and_the_retry_queues_it(
    stack: Stack, sqs_fault: Any
) -> None:
    records, expected = five_affiliates(stack)
    stuck = delivery_id_for("pb_3", "c-3", "approved")
    fault = sqs_fault({stuck}, times=None)
    first = stack.invoke(records)
    assert first == {"batchItemFailures": [{"itemIdentifier": sequence_number_of(records[3])}]}
    assert stuck in fault.dropped
    assert stuck not in stack.queued_delivery_ids()
    fault.failing_ids = set()
    assert stack.invoke(records[3:]) == {"batchItemFailures": []}
    assert_each_delivery_written_once_and_queued(stack, expected)
    assert stack.all_queued_delivery_ids().count(stuck) == 1


class Crash(BaseException):
    """The function dies (timeout, out of memory): nothing of the batch is reported."""


def test_crash_between_the_writes_and_the_send_loses_no_delivery(stack: Stack) -> None:
    records, expected = five_affiliates(stack)

    def crash(**_: Any) -> None:
        raise Crash()

    stack.sqs.meta.events.register("before-call.sqs.SendMessageBatch", crash)
    try:
        with pytest.raises(Crash):
            stack.invoke(records)
    finally:
        stack.sqs.meta.events.unregister("before-call.sqs.SendMessageBatch", crash)
    assert set(stack.deliveries()) == expected
    assert stack.queued_delivery_ids() == []
    # Lambda retries the whole batch: every write is refused, every delivery is still pending, so
    # every one is queued.
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert_each_delivery_written_once_and_queued(stack, expected)


def test_sqs_error_after_the_writes_reports_the_first_record_and_the_retry_queues_everything(
    stack: Stack,
) -> None:
    records, expected = five_affiliates(stack)

    def unavailable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com")

    stack.sqs.meta.events.register("before-call.sqs.SendMessageBatch", unavailable)
    try:
        first = stack.invoke(records)
    finally:
        stack.sqs.meta.events.unregister("before-call.sqs.SendMessageBatch", unavailable)
    assert first == {"batchItemFailures": [{"itemIdentifier": sequence_number_of(records[0])}]}
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert_each_delivery_written_once_and_queued(stack, expected)


def test_exception_mid_batch_then_lambda_retries_until_done(stack: Stack, dynamo_client: Any) -> None:
    records, expected = five_affiliates(stack)
    fault = DynamoFault(fail_from=4, mode="raise")
    dynamo_client.meta.events.register("before-call.dynamodb.PutItem", fault)
    try:
        reported = []
        batch = records
        for _ in range(3):
            result = stack.invoke(batch)["batchItemFailures"]
            reported.append(result)
            if not result:
                break
            fault.active = False
            position = [sequence_number_of(r) for r in records].index(result[0]["itemIdentifier"])
            batch = records[position:]
    finally:
        dynamo_client.meta.events.unregister("before-call.dynamodb.PutItem", fault)
    assert reported == [[{"itemIdentifier": sequence_number_of(records[3])}], []]
    assert_each_delivery_written_once_and_queued(stack, expected)
