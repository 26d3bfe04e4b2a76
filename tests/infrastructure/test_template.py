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


def _function_variables(logical_id: str) -> dict[str, Any]:
    props = load_template()["Resources"].get(logical_id, {}).get("Properties", {})
    variables: dict[str, Any] = props.get("Environment", {}).get("Variables", {})
    return variables


def test_every_environment_variable_of_the_functions_is_read_by_the_settings_module() -> None:
    variables = dict(load_template()["Globals"]["Function"]["Environment"]["Variables"])
    for function in FUNCTIONS:
        variables.update(_function_variables(function))
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
        "POSTBACKS_JWT_SECRET_ARN",
    } <= set(variables)


# Security: the signing secret, log permissions, stage names (docs/security.md).

FUNCTIONS = {
    "APIHandler": ("ApiHandlerRole", "api"),
    "JwtAuthorizer": ("JwtAuthorizerRole", "authorizer"),
    "OnConversionChange": ("OnConversionChangeRole", "on-conversion-change"),
    "OnDeliveryMessage": ("OnDeliveryMessageRole", "on-delivery-message"),
}


def test_no_function_gets_a_signing_secret_in_its_environment() -> None:
    template = load_template()
    assert "JwtSecret" not in template["Parameters"]
    for variables in [template["Globals"]["Function"]["Environment"]["Variables"]] + [
        _function_variables(function) for function in FUNCTIONS
    ]:
        assert "POSTBACKS_JWT_SECRET" not in variables


def test_only_the_api_and_the_authorizer_are_told_where_the_secret_is() -> None:
    for function in ("APIHandler", "JwtAuthorizer"):
        assert _function_variables(function)["POSTBACKS_JWT_SECRET_ARN"] == {"Ref": "JwtSecretArn"}
    for function in ("OnConversionChange", "OnDeliveryMessage"):
        assert "POSTBACKS_JWT_SECRET_ARN" not in _function_variables(function)
    assert "POSTBACKS_JWT_SECRET_ARN" not in load_template()["Globals"]["Function"]["Environment"]["Variables"]


def test_only_the_api_and_authorizer_roles_may_read_the_secret_and_only_that_one() -> None:
    readers = []
    for logical_id, definition in load_template()["Resources"].items():
        document = json.dumps(definition)
        if "secretsmanager:" in document:
            readers.append(logical_id)
            props = definition["Properties"]
            assert props["Roles"] == [{"Ref": "ApiHandlerRole"}, {"Ref": "JwtAuthorizerRole"}]
            [statement] = props["PolicyDocument"]["Statement"]
            assert statement["Action"] == ["secretsmanager:GetSecretValue"]
            assert statement["Resource"] == {"Ref": "JwtSecretArn"}
    assert readers == ["TokenSecretPolicy"]


def test_the_secret_arn_parameter_accepts_only_secrets_manager_arns() -> None:
    pattern = re.compile(load_template()["Parameters"]["JwtSecretArn"]["AllowedPattern"])
    assert pattern.match("arn:aws:secretsmanager:eu-west-1:123456789012:secret:postbacks/prod/jwt-secret-AbCdEf")
    assert not pattern.match("postbacks/prod/jwt-secret")
    assert not pattern.match("arn:aws:ssm:eu-west-1:123456789012:parameter/jwt")


@pytest.mark.parametrize(("function", "role_and_name"), FUNCTIONS.items())
def test_each_function_may_write_only_its_own_log_group(function: str, role_and_name: tuple[str, str]) -> None:
    role, name = role_and_name
    resources = load_template()["Resources"]
    assert resources[function]["Properties"]["FunctionName"] == {"Fn::Sub": f"postbacks-${{Stage}}-{name}"}
    [policy] = resources[role]["Properties"]["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    account = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
    group = account + ":log-group:/aws/lambda/postbacks-${Stage}-" + name
    assert statement["Resource"] == [{"Fn::Sub": group}, {"Fn::Sub": group + ":*"}]
    assert set(statement["Action"]) == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}


def test_no_policy_of_the_project_allows_every_log_group() -> None:
    for text in (
        (ROOT / "infrastructure" / "template.json").read_text(),
        (ROOT / ".chalice" / "policy-logs.json").read_text(),
    ):
        assert "arn:*:logs:*:*:*" not in text
        assert '"logs:*"' not in text


def test_the_stage_names_of_local_setups_are_refused() -> None:
    rule = load_template()["Rules"]["NoLocalStageNames"]
    [assertion] = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Contains": [["local", "test"], {"Ref": "Stage"}]}]}
    assert "RuleCondition" not in rule


def test_make_deploy_passes_the_secret_arn_never_its_value() -> None:
    makefile = (ROOT / "Makefile").read_text()
    deploy = makefile[makefile.index("\ndeploy:") : makefile.index("\n## make bench")]
    assert "get-secret-value" not in deploy and "SecretString" not in deploy
    assert 'JwtSecretArn="$$(aws secretsmanager describe-secret --secret-id $(JWT_SECRET_ID) --query ARN' in deploy


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
