"""The evaluator DLQ's `stream_batch_failure` messages: Lambda's on-failure destination records, which
point at a range of the conversions stream. `dlq redrive --queue evaluator` reads the range back from
the stream and replays it through the real evaluator."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest

from functions.cli import main
from functions.cli.conversions import ConversionDeadLetters, load_evaluator_handler
from functions.core.model import delivery_id_for
from functions.invocation import Handler
from functions.storage.models import DeliveryModel
from functions.storage.queues import Queue
from tests.integration.cli.conftest import CliStack, ConversionsStream, Run, add_postback
from tests.support.conversions import conversion

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("evaluator")]


def write_changes(stream: ConversionsStream) -> list[dict[str, Any]]:
    """Four changes: c-1 approved, c-2 pending then approved, c-4 approved (all aff-1, matching pb_1)."""
    stream.put(conversion(conversion_id="c-1", status="approved"))
    stream.put(conversion(conversion_id="c-2", status="pending"))
    stream.put(conversion(conversion_id="c-2", status="approved"))
    stream.put(conversion(conversion_id="c-4", status="approved"))
    records = stream.records()
    assert [r["eventName"] for r in records] == ["INSERT", "INSERT", "MODIFY", "INSERT"]
    return records


def delivered_conversions() -> list[str]:
    return sorted(item.conversion_id for item in DeliveryModel.scan())


def run_with(stack: CliStack, argv: list[str], handler_loader: Callable[[], Handler], batch_size: int) -> Run:
    services = stack.services()
    services.conversions = ConversionDeadLetters(
        Queue(stack.evaluator_dlq_url, stack.sqs),
        stream_arn="arn:test",
        region="us-east-1",
        streams=stack.stream_reader(),
        wait_seconds=0,
        handler_loader=handler_loader,
        replay_batch_size=batch_size,
    )
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, services=services, stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


def test_a_batch_failure_is_listed_shown_and_counted_as_stream_batch_failure(stack: CliStack) -> None:
    stream = stack.conversions_stream()
    records = write_changes(stream)
    body = stream.batch_failure(records[1], records[2], batch_size=2)
    stack.stream_batch_failure(body)

    listed = stack.cli("dlq", "list", "--queue", "evaluator", "--json")

    assert listed.code == 0, listed.err
    [message] = listed.json()["messages"]
    assert message["kind"] == "stream_batch_failure"
    assert message["reason"] == "RetryAttemptsExhausted"
    info = body["DDBStreamBatchInfo"]
    assert {k: message["batch"][k] for k in ("condition", "shard_id", "batch_size")} == {
        "condition": "RetryAttemptsExhausted",
        "shard_id": stream.shard_id,
        "batch_size": 2,
    }
    assert (message["batch"]["start_sequence_number"], message["batch"]["end_sequence_number"]) == (
        info["startSequenceNumber"],
        info["endSequenceNumber"],
    )
    assert message["batch"]["approximate_arrival_of_first_record"] == info["approximateArrivalOfFirstRecord"]
    assert message["batch"]["approximate_arrival_of_last_record"] == info["approximateArrivalOfLastRecord"]

    table = stack.cli("dlq", "list", "--queue", "evaluator")
    assert "stream_batch_failure" in table.out and stream.shard_id in table.out
    assert f"{info['startSequenceNumber']}..{info['endSequenceNumber']}" in table.out

    shown = stack.cli("dlq", "show", info["startSequenceNumber"], "--queue", "evaluator", "--json")
    assert shown.code == 0, shown.err
    assert shown.json()["kind"] == "stream_batch_failure"
    assert shown.json()["destination_record"] == body
    shown_text = stack.cli("dlq", "show", message["message_id"], "--queue", "evaluator")
    assert "RetryAttemptsExhausted" in shown_text.out and "approximate_arrival_of_first_record" in shown_text.out

    stats = stack.cli("dlq", "stats", "--queue", "evaluator", "--json").json()["queues"][0]
    assert stats["groups"]["kind"] == {"stream_batch_failure": 1}
    assert stats["groups"]["reason"] == {"RetryAttemptsExhausted": 1}


def test_redrive_replays_exactly_the_range_then_deletes_the_message_and_a_resent_copy_doubles_nothing(
    stack: CliStack,
) -> None:
    add_postback("pb_1")
    stream = stack.conversions_stream()
    records = write_changes(stream)
    # Lambda gave up on records 2..3 (c-2 pending, then approved); c-1 before and c-4 after are not in it.
    body = stream.batch_failure(records[1], records[2], batch_size=2)
    stack.stream_batch_failure(body)

    dry = stack.cli("dlq", "redrive", "--queue", "evaluator", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert [(o["result"], o["why"]) for o in dry.json()["outcomes"]] == [
        ("would_replay", "RetryAttemptsExhausted: 2 records in the stream")
    ]
    assert delivered_conversions() == []

    run = stack.cli("dlq", "redrive", "--queue", "evaluator", "--json")

    assert run.code == 0, run.err
    assert run.json()["counts"] == {"replayed": 1}
    expected = delivery_id_for("pb_1", "c-2", "approved")
    assert [item.delivery_id for item in DeliveryModel.scan()] == [expected]
    assert stack.queued_ids() == [expected]
    assert stack.drain(stack.evaluator_dlq_url) == []

    # The sender delivers it; the same failure record sent again replays the range without a second delivery.
    DeliveryModel.get(expected).update(actions=[DeliveryModel.state.set("delivered")])
    stack.stream_batch_failure(body)
    rerun = stack.cli("dlq", "redrive", "--queue", "evaluator", "--json")
    assert rerun.code == 0, rerun.err
    assert rerun.json()["counts"] == {"replayed": 1}
    assert [item.delivery_id for item in DeliveryModel.scan()] == [expected]
    assert DeliveryModel.get(expected).state == "delivered"
    assert stack.queued_ids() == []
    assert stack.drain(stack.evaluator_dlq_url) == []


def test_a_range_the_stream_no_longer_holds_stays_in_the_dlq_as_not_replayable(stack: CliStack) -> None:
    add_postback("pb_1")
    stream = stack.conversions_stream()
    records = write_changes(stream)
    last = int(records[-1]["dynamodb"]["SequenceNumber"])
    start, end = str(last + 1000), str(last + 1002)
    stack.stream_batch_failure(stream.batch_failure(records[0], records[1], batch_size=3, start=start, end=end))

    run = stack.cli("dlq", "redrive", "--queue", "evaluator", "--json")

    assert run.code == 3
    [outcome] = run.json()["outcomes"]
    assert outcome["result"] == "not_replayable"
    assert outcome["why"].startswith(
        f"the stream no longer holds sequence numbers {start}..{end} (24 h retention); "
        "recover from the conversion service's records"
    )
    assert "no longer in the conversions stream" in run.err
    assert delivered_conversions() == []
    [kept] = stack.drain(stack.evaluator_dlq_url)
    assert kept["DDBStreamBatchInfo"]["startSequenceNumber"] == start


def test_a_stream_that_is_gone_is_not_replayable(stack: CliStack) -> None:
    stream = stack.conversions_stream()
    records = write_changes(stream)
    body = stream.batch_failure(records[0], records[1], batch_size=2)
    body["DDBStreamBatchInfo"]["streamArn"] = stream.stream_arn.replace("table/conversions/", "table/deleted/")
    stack.stream_batch_failure(body)

    run = stack.cli("dlq", "redrive", "--queue", "evaluator", "--json")

    assert run.code == 3
    assert [o["result"] for o in run.json()["outcomes"]] == ["not_replayable"]
    assert "ResourceNotFoundException" in run.json()["outcomes"][0]["why"]
    assert len(stack.drain(stack.evaluator_dlq_url)) == 1


def test_the_range_is_fed_in_order_in_batches(stack: CliStack) -> None:
    add_postback("pb_1")
    stream = stack.conversions_stream()
    records = write_changes(stream)
    stack.stream_batch_failure(stream.batch_failure(records[0], records[3], batch_size=4))
    events: list[list[str]] = []

    def loader() -> Handler:
        real = load_evaluator_handler()

        def handler(event: dict[str, Any], context: Any) -> Any:
            events.append([r["dynamodb"]["SequenceNumber"] for r in event["Records"]])
            for record in event["Records"]:  # the Lambda shape: ARN present, creation time a number
                assert record["eventSourceARN"] == stream.stream_arn
                assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)
            return real(event, context)

        return handler

    run = run_with(stack, ["dlq", "redrive", "--queue", "evaluator", "--json"], loader, batch_size=3)

    assert run.code == 0, run.err
    numbers = [r["dynamodb"]["SequenceNumber"] for r in records]
    assert events == [numbers[:3], numbers[3:]]
    assert delivered_conversions() == ["c-1", "c-2", "c-4"]
    assert stack.drain(stack.evaluator_dlq_url) == []


def test_a_record_the_evaluator_reports_failed_stops_the_range_and_keeps_the_message(stack: CliStack) -> None:
    stream = stack.conversions_stream()
    records = write_changes(stream)
    stack.stream_batch_failure(stream.batch_failure(records[0], records[3], batch_size=4))
    calls: list[int] = []

    def loader() -> Handler:
        def handler(event: dict[str, Any], context: Any) -> Any:
            calls.append(len(event["Records"]))
            second = event["Records"][1]["dynamodb"]["SequenceNumber"]
            return {"batchItemFailures": [{"itemIdentifier": second}]}

        return handler

    run = run_with(stack, ["dlq", "redrive", "--queue", "evaluator", "--json"], loader, batch_size=2)

    assert run.code == 3
    [outcome] = run.json()["outcomes"]
    assert outcome["result"] == "failed"
    assert records[1]["dynamodb"]["SequenceNumber"] in outcome["why"]
    assert calls == [2]  # the second batch was never fed
    assert len(stack.drain(stack.evaluator_dlq_url)) == 1


def test_filters_and_limit_apply_to_batch_failures(stack: CliStack) -> None:
    stream = stack.conversions_stream()
    records = write_changes(stream)
    old = stream.batch_failure(records[0], records[0], batch_size=1)
    old["DDBStreamBatchInfo"]["approximateArrivalOfFirstRecord"] = "2020-01-01T00:00:00Z"
    stack.stream_batch_failure(old)
    stack.stream_batch_failure(
        stream.batch_failure(records[1], records[2], batch_size=2, condition="RecordAgeExceeded")
    )

    def listed(*extra: str) -> list[str | None]:
        run = stack.cli("dlq", "list", "--queue", "evaluator", "--json", *extra)
        assert run.code == 0, run.err
        return sorted(m["batch"]["start_sequence_number"] for m in run.json()["messages"])

    first, second = records[0]["dynamodb"]["SequenceNumber"], records[1]["dynamodb"]["SequenceNumber"]
    assert listed() == sorted([first, second])
    assert listed("--since", "1d") == [second]
    assert listed("--until", "2021-01-01") == [first]
    assert listed("--reason", "RecordAgeExceeded") == [second]
    assert listed("--affiliate", "aff-1") == []  # a batch failure names no affiliate
    assert len(listed("--limit", "1")) == 1

    purge = stack.cli("dlq", "purge", "--queue", "evaluator", "--until", "2021-01-01", "--yes", "--json")
    assert purge.code == 0, purge.err
    assert [o["item_id"] for o in purge.json()["outcomes"]] == [f"{first}..{first}"]
    assert listed() == [second]
