"""`postbacks status` and `postbacks --stack NAME` against moto: queues, CloudWatch, the deliveries table,
paused hosts, the DLQs; a CloudFormation stack's outputs instead of the environment's names."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from functions.core.model import DeliveryState, format_timestamp, utc_now
from functions.storage.hosts import HostRepository
from functions.storage.models import DeliveryModel, PostbackModel, bind_table_names
from tests.integration.cli.conftest import CliStack, delivery_id

pytestmark = pytest.mark.integration


def record(number: int, state: DeliveryState, updated: datetime) -> None:
    stamp = format_timestamp(updated)
    DeliveryModel(
        delivery_id(1000 + number),
        postback_id="pb_1",
        affiliate_id="aff-1",
        conversion_id=f"conv-{number}",
        conversion_status="approved",
        url="https://tracker.example/cb",
        target_host="tracker.example",
        state=state.value,
        attempts=[],
        created_at=stamp,
        updated_at=stamp,
        expires_at=int(updated.timestamp()) + 86400,
    ).save()


def test_status_shows_alarms_queues_recent_deliveries_paused_hosts_and_the_dlqs(stack: CliStack) -> None:
    now = utc_now()
    for number, state in enumerate([DeliveryState.DELIVERED] * 3 + [DeliveryState.RETRYING, DeliveryState.PENDING]):
        record(number, state, now - timedelta(minutes=10))
    record(9, DeliveryState.DELIVERED, now - timedelta(hours=3))  # outside the hour
    stack.dead_letter(delivery_id(1), reason="http_404")
    stack.dead_letter(delivery_id(2), reason="gone", status_code=410)
    stack.sqs.send_message(QueueUrl=stack.deliveries_queue_url, MessageBody='{"v": 1, "delivery_id": "x"}')
    cloudwatch = boto3.client("cloudwatch", region_name=stack.settings.region)
    cloudwatch.put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": stack.settings.deliveries_queue}],
                "Timestamp": now - timedelta(minutes=2),
                "Value": 1500.0,
            }
        ],
    )
    alarm = f"postbacks-{stack.settings.stage}-deliveries-dlq-depth"
    for name in (alarm, "other-stage-alarm"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/SQS",
            MetricName="ApproximateNumberOfMessagesVisible",
            Statistic="Maximum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="1 message")
    hosts = HostRepository()
    hosts.pause("down.example:443", time.time() + 600, 0, time.time())
    hosts.pause("back.example:443", time.time() - 1, 0, time.time() - 100)  # the pause has ended

    run = stack.cli("status", "--json")

    assert run.code == 0, run.err
    status = run.json()
    assert [item["name"] for item in status["alarms"]] == [alarm]
    queues = {line["role"]: line for line in status["queues"]}
    assert (queues["deliveries"]["visible"], queues["deliveries"]["oldest_age_seconds"]) == (1, 1500.0)
    assert queues["deliveries"]["age_source"] == "cloudwatch"
    assert (queues["deliveries DLQ"]["visible"], queues["deliveries DLQ"]["age_source"]) == (2, "scan")
    assert 0 <= queues["deliveries DLQ"]["oldest_age_seconds"] < 60  # sent to the DLQ just now
    assert (queues["evaluator DLQ"]["visible"], queues["evaluator DLQ"]["oldest_age_seconds"]) == (0, None)
    deliveries = status["deliveries"]
    assert deliveries["complete"] is True
    assert deliveries["states_in_sample"] == {"delivered": 3, "retrying": 1, "pending": 1, "dead_lettered": 2}
    assert deliveries["dead_lettered"] == 2
    assert deliveries["items_read"] == 8
    assert [host["host"] for host in status["paused_hosts"]] == ["down.example:443"]
    dlqs = {dlq["queue"]: dlq for dlq in status["dlqs"]}
    assert dlqs[stack.settings.deliveries_dlq]["groups"]["reason"] == {"http_404": 1, "gone": 1}
    assert status["unavailable"] == {}
    # Reading the DLQs left every message where it was.
    assert stack.cli("status", "--json").json()["queues"][1]["visible"] == 2


def test_status_text_leads_with_the_alarms_and_says_how_the_counts_were_made(stack: CliStack) -> None:
    record(1, DeliveryState.DELIVERED, utc_now())

    run = stack.cli("status")

    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith(f"postbacks status: stage {stack.settings.stage}, ")
    assert "alarms: none firing" in lines
    assert "deliveries updated in the last 1 h, by state: exact (the whole table was read)" in run.out
    assert "  delivered 1" in lines
    assert "paused hosts: none" in lines
    assert f"{stack.settings.deliveries_dlq}: 0 message(s)" in run.out


def test_status_reads_a_bounded_sample_and_scales_it_to_the_table(stack: CliStack) -> None:
    for number in range(30):
        record(number, DeliveryState.DELIVERED, utc_now())

    status = stack.cli("status", "--json", "--sample", "10", "--no-dlq-scan").json()

    deliveries = status["deliveries"]
    assert (deliveries["items_read"], deliveries["complete"], deliveries["table_items"]) == (10, False, 30)
    assert deliveries["states_in_sample"] == {"delivered": 10}
    assert deliveries["estimated_states"] == {"delivered": 30}
    assert status["dlqs"] == []


# --stack

BLUE = {"postbacks": "postbacks-blue", "deliveries": "postback-deliveries-blue"}


def _template(outputs: dict[str, Any]) -> str:
    queues = {
        "Deliveries": "postback-deliveries-blue",
        "DeliveriesDlq": "postback-deliveries-dlq-blue",
        "EvaluatorDlq": "postback-evaluator-dlq-blue",
    }
    return json.dumps(
        {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                logical: {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}}
                for logical, name in queues.items()
            },
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
    )


FULL_OUTPUTS: dict[str, Any] = {
    "PostbacksTableName": BLUE["postbacks"],
    "DeliveriesTableName": BLUE["deliveries"],
    "DeliveriesQueueUrl": {"Ref": "Deliveries"},
    "DeliveriesDeadLetterQueueUrl": {"Ref": "DeliveriesDlq"},
    "EvaluatorDeadLetterQueueUrl": {"Ref": "EvaluatorDlq"},
    "Stage": "blue",
}


@pytest.fixture
def blue_tables(stack: CliStack) -> Iterator[None]:
    """The blue stage's tables (other names than the environment's), the models put back afterwards."""
    bind_table_names(BLUE["postbacks"], BLUE["deliveries"])
    PostbackModel.create_table(billing_mode="PAY_PER_REQUEST")
    DeliveryModel.create_table(billing_mode="PAY_PER_REQUEST")
    try:
        yield
    finally:
        bind_table_names(stack.settings.postbacks_table, stack.settings.deliveries_table)


def test_stack_outputs_name_the_queues_and_tables_the_commands_use(stack: CliStack, blue_tables: None) -> None:
    record(1, DeliveryState.DELIVERED, utc_now())  # in the blue table (the models point there now)
    bind_table_names(stack.settings.postbacks_table, stack.settings.deliveries_table)
    cloudformation = boto3.client("cloudformation", region_name=stack.settings.region)
    cloudformation.create_stack(StackName="postbacks-blue", TemplateBody=_template(FULL_OUTPUTS))
    blue_dlq = stack.sqs.get_queue_url(QueueName="postback-deliveries-dlq-blue")["QueueUrl"]
    stack.sqs.send_message(QueueUrl=blue_dlq, MessageBody='{"v": 1}')

    run = stack.cli("--stack", "postbacks-blue", "status", "--json")

    assert run.code == 0, run.err
    status = run.json()
    assert status["stage"] == "blue"
    assert [line["name"] for line in status["queues"]] == [
        "postback-deliveries-blue",
        "postback-deliveries-dlq-blue",
        "postback-evaluator-dlq-blue",
    ]
    assert status["queues"][1]["visible"] == 1
    assert status["deliveries"]["states_in_sample"] == {"delivered": 1}
    assert DeliveryModel.Meta.table_name == BLUE["deliveries"]


def test_a_stack_without_the_outputs_or_no_stack_is_a_clear_failure(stack: CliStack, blue_tables: None) -> None:
    partial = {key: value for key, value in FULL_OUTPUTS.items() if key != "DeliveriesTableName"}
    boto3.client("cloudformation", region_name=stack.settings.region).create_stack(
        StackName="half", TemplateBody=_template(partial)
    )

    missing = stack.cli("--stack", "half", "status")
    unknown = stack.cli("--stack", "no-such-stack", "dlq", "stats")

    assert missing.code == 1 and "has no output DeliveriesTableName" in missing.err
    assert unknown.code == 1 and "no-such-stack" in unknown.err


def test_version_names_the_package_version(stack: CliStack) -> None:
    from functions import __version__

    run = stack.cli("--version")
    assert (run.code, run.out.strip()) == (0, f"postbacks {__version__}")


def test_dead_lettered_since_an_hour_counts_only_the_index_partition(stack: CliStack) -> None:
    stack.dead_letter(delivery_id(1), at=datetime.now(UTC) - timedelta(hours=2))
    stack.dead_letter(delivery_id(2))

    status = stack.cli("status", "--json", "--no-dlq-scan").json()

    assert status["deliveries"]["dead_lettered"] == 1
