"""The merge template agrees with the code: table schemas with the pynamodb models, queue timings
with the function timeouts and the retry schedule, environment variables with the settings module."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pynamodb.models import Model

from functions.settings import Settings
from functions.storage.models import DeliveryModel, PostbackModel
from infrastructure.resources import event_source_properties, load_template, resource

pytestmark = pytest.mark.infrastructure

ROOT = Path(__file__).resolve().parents[2]
CHALICE_CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
DEFAULTS = Settings()


def _function_timeout(name: str) -> int:
    return int(CHALICE_CONFIG["lambda_functions"][name]["lambda_timeout"])


def _key_schema(model: type[Model]) -> dict[str, str]:
    return {key["AttributeName"]: key["KeyType"] for key in model._get_schema()["key_schema"]}


def _model_indexes(model: type[Model]) -> dict[str, dict[str, Any]]:
    return {
        index["index_name"]: {
            "keys": {key["AttributeName"]: key["KeyType"] for key in index["key_schema"]},
            "projection": index["projection"]["ProjectionType"],
        }
        for index in model._get_schema().get("global_secondary_indexes", [])
    }


def _template_indexes(props: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        gsi["IndexName"]: {
            "keys": {key["AttributeName"]: key["KeyType"] for key in gsi["KeySchema"]},
            "projection": gsi["Projection"]["ProjectionType"],
        }
        for gsi in props.get("GlobalSecondaryIndexes", [])
    }


@pytest.mark.parametrize(
    ("logical_id", "model"), [("PostbacksTable", PostbackModel), ("DeliveriesTable", DeliveryModel)]
)
def test_table_keys_and_indexes_in_the_template_match_the_pynamodb_model(logical_id: str, model: type[Model]) -> None:
    props = resource(logical_id)["Properties"]
    assert {key["AttributeName"]: key["KeyType"] for key in props["KeySchema"]} == _key_schema(model)
    assert _template_indexes(props) == _model_indexes(model)
    declared = {
        definition["AttributeName"]: definition["AttributeType"] for definition in props["AttributeDefinitions"]
    }
    used = {name for index in _template_indexes(props).values() for name in index["keys"]} | set(_key_schema(model))
    assert set(declared) == used, "AttributeDefinitions must list exactly the key attributes"
    model_types = {d["AttributeName"]: d["AttributeType"] for d in model._get_schema()["attribute_definitions"]}
    assert declared == model_types


def test_delivery_ttl_uses_the_model_expiry_attribute() -> None:
    ttl = resource("DeliveriesTable")["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expires_at", "Enabled": True}
    assert DeliveryModel.get_attributes()["expires_at"].attr_type == "N"


def test_tables_are_on_demand_encrypted_and_recoverable() -> None:
    for logical_id in ("PostbacksTable", "DeliveriesTable", "ConversionsTable"):
        props = resource(logical_id)["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    for logical_id in ("PostbacksTable", "DeliveriesTable"):
        assert resource(logical_id)["DeletionPolicy"] == "Retain"


def test_conversions_table_is_created_only_without_a_stream_arn_and_streams_both_images() -> None:
    template = load_template()
    table = resource("ConversionsTable")
    assert table["Condition"] == "CreateConversionsTable"
    assert template["Conditions"]["CreateConversionsTable"] == {"Fn::Equals": [{"Ref": "ConversionsStreamArn"}, ""]}
    assert table["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    stream = event_source_properties("OnConversionChange")["Stream"]
    assert stream == {
        "Fn::If": [
            "CreateConversionsTable",
            {"Fn::GetAtt": ["ConversionsTable", "StreamArn"]},
            {"Ref": "ConversionsStreamArn"},
        ]
    }


def test_deliveries_queue_visibility_covers_six_sender_timeouts() -> None:
    visibility = resource("DeliveriesQueue")["Properties"]["VisibilityTimeout"]
    assert visibility >= 6 * _function_timeout("on_delivery_message")


def test_deliveries_queue_keeps_messages_beyond_the_retry_deadline() -> None:
    retention = resource("DeliveriesQueue")["Properties"]["MessageRetentionPeriod"]
    assert retention >= DEFAULTS.retry_deadline_seconds + 12 * 3600  # 72 h + the longest wait


def test_redrive_is_a_backstop_above_the_attempt_limit() -> None:
    redrive = resource("DeliveriesQueue")["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeliveriesDeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] > DEFAULTS.max_attempts


def test_dead_letter_queues_keep_messages_fourteen_days_and_queues_are_encrypted() -> None:
    for logical_id in ("DeliveriesDeadLetterQueue", "EvaluatorDeadLetterQueue"):
        assert resource(logical_id)["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    for logical_id in ("DeliveriesQueue", "DeliveriesDeadLetterQueue", "EvaluatorDeadLetterQueue"):
        assert resource(logical_id)["Properties"]["SqsManagedSseEnabled"] is True


def test_sender_lease_covers_the_sender_timeout() -> None:
    assert DEFAULTS.lease_seconds >= _function_timeout("on_delivery_message")


def test_both_event_sources_report_partial_batch_failures() -> None:
    stream = event_source_properties("OnConversionChange")
    queue = event_source_properties("OnDeliveryMessage")
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["BisectBatchOnFunctionError"] is True
    assert stream["MaximumRetryAttempts"] >= 1
    assert 0 < stream["MaximumRecordAgeInSeconds"] < 24 * 3600  # before the stream trims the record
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["EvaluatorDeadLetterQueue", "Arn"]
    }
    assert queue["Queue"] == {"Fn::Sub": "${DeliveriesQueue.Arn}"}
    assert queue["BatchSize"] <= 10 and queue["ScalingConfig"]["MaximumConcurrency"] >= 2


def test_every_environment_variable_of_the_functions_is_read_by_the_settings_module() -> None:
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    source = (ROOT / "functions" / "settings.py").read_text()
    read = set(re.findall(r'"(POSTBACKS_[A-Z_]+)"', source))
    assert set(variables) <= read
    assert {
        "POSTBACKS_STAGE",
        "POSTBACKS_TABLE",
        "POSTBACKS_DELIVERIES_TABLE",
        "POSTBACKS_DELIVERIES_QUEUE",
        "POSTBACKS_DELIVERIES_DLQ",
        "POSTBACKS_EVALUATOR_DLQ",
        "POSTBACKS_JWT_SECRET",
    } <= set(variables)


def test_alarms_notify_the_on_call_topic() -> None:
    alarms = {k: v for k, v in load_template()["Resources"].items() if v.get("Type") == "AWS::CloudWatch::Alarm"}
    metrics = {
        (alarm["Properties"]["Namespace"], alarm["Properties"]["MetricName"])
        for alarm in alarms.values()
        if "Namespace" in alarm["Properties"]  # metric-math alarms name their metrics in Metrics
    }
    assert {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/Lambda", "IteratorAge"),
        ("AWS/Lambda", "Errors"),
    } <= metrics
    # Malformed conversion records are the conversion service's to fix: that alarm goes to its team
    # (on-call hears of the same records through the evaluator DLQ depth alarm).
    conversion_service = {"MalformedConversionRecordsAlarm"}
    for logical_id, alarm in alarms.items():
        topic = "ConversionServiceTopic" if logical_id in conversion_service else "OnCallTopic"
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}], logical_id
        assert alarm["Properties"]["OKActions"] == [{"Ref": topic}], logical_id
