"""Observability in the merge template: JSON logs into log groups with retention, active tracing,
the dashboard and the alarms — each alarm leading to its runbook section, and every product metric
named by the module the functions emit from (`functions.core.metrics`), so the two cannot drift."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from functions.core.metrics import METRIC_NAMES, NAMESPACE, REASON_METRICS, Dimension, Metric, RecordDeadLetterReason
from infrastructure.dashboard import ALARMS, FUNCTIONS, dashboard_resource
from infrastructure.resources import load_template, resource

pytestmark = pytest.mark.infrastructure

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
CHALICE_CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
ALARM_RESOURCES = {k: v["Properties"] for k, v in RESOURCES.items() if v.get("Type") == "AWS::CloudWatch::Alarm"}
# CloudWatch Logs' allowed retention periods.
RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922}
RETENTION_DAYS |= {3288, 3653}
# Chalice's function logical IDs -> their roles.
FUNCTION_ROLES = {
    "APIHandler": "ApiHandlerRole",
    "JwtAuthorizer": "JwtAuthorizerRole",
    "OnConversionChange": "OnConversionChangeRole",
    "OnDeliveryMessage": "OnDeliveryMessageRole",
}
RUNBOOK_LINK = re.compile(r"Runbook: docs/runbook\.md#([a-z0-9-]+)$")
PSEUDO_PARAMETERS = {"AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::Partition", "AWS::URLSuffix"}


def _runbook_anchors() -> set[str]:
    return set(re.findall(r'<a id="([a-z0-9-]+)"></a>', RUNBOOK))


def _product_alarm(logical_id: str) -> dict[str, Any]:
    props = ALARM_RESOURCES[logical_id]
    assert props["Namespace"] == NAMESPACE
    return props


def _dimensions(props: dict[str, Any]) -> dict[str, Any]:
    return {dimension["Name"]: dimension["Value"] for dimension in props["Dimensions"]}


def _dashboard_body() -> dict[str, Any]:
    substituted = re.sub(r"\$\{!", "${", RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"])
    body: dict[str, Any] = json.loads(substituted)
    return body


def _dashboard_metrics() -> list[list[Any]]:
    rows: list[list[Any]] = []
    for widget in _dashboard_body()["widgets"]:
        rows.extend(widget["properties"].get("metrics", []))
    return rows


# Logs


def test_every_function_logs_json_into_its_own_log_group_with_retention() -> None:
    retention = TEMPLATE["Parameters"]["LogRetentionDays"]
    assert retention["Default"] == 30
    assert set(retention["AllowedValues"]) <= RETENTION_DAYS
    assert TEMPLATE["Parameters"]["LogLevel"]["Default"] == "INFO"
    groups = set()
    for function_id in FUNCTION_ROLES:
        config = resource(function_id)["Properties"]["LoggingConfig"]
        assert config["LogFormat"] == "JSON"
        assert config["ApplicationLogLevel"] == {"Ref": "LogLevel"}
        assert config["SystemLogLevel"] in ("INFO", "WARN")
        group_id = config["LogGroup"]["Ref"]
        group = resource(group_id)
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert group["Properties"]["LogGroupName"]["Fn::Sub"].startswith("/aws/lambda/postbacks-${Stage}-")
        groups.add(group_id)
    assert len(groups) == len(FUNCTION_ROLES)
    assert {log_group for _, _, log_group in FUNCTIONS} == groups


# Tracing


def test_every_function_and_the_api_trace_actively_and_may_write_traces() -> None:
    for function_id in FUNCTION_ROLES:
        assert resource(function_id)["Properties"]["Tracing"] == "Active"
    assert resource("RestAPI")["Properties"]["TracingEnabled"] is True
    policy = resource("TracingPolicy")["Properties"]
    assert {role["Ref"] for role in policy["Roles"]} == set(FUNCTION_ROLES.values())
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert set(statement["Action"]) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


# Alarms and the runbook


def test_every_alarm_points_at_an_existing_runbook_section_of_its_own() -> None:
    anchors = _runbook_anchors()
    seen: dict[str, str] = {}
    for logical_id, props in ALARM_RESOURCES.items():
        match = RUNBOOK_LINK.search(props["AlarmDescription"])
        assert match, f"{logical_id}: the description must end with 'Runbook: docs/runbook.md#<anchor>'"
        anchor = match.group(1)
        assert anchor in anchors, f'{logical_id}: docs/runbook.md has no <a id="{anchor}">'
        assert anchor not in seen, f"{logical_id} and {seen.get(anchor)} share a runbook section"
        seen[anchor] = logical_id
        # The alarm's name is in the section's heading, so a page leads straight to it.
        name = props["AlarmName"]["Fn::Sub"].replace("${Stage}", "<stage>")
        section = RUNBOOK.split(f'<a id="{anchor}"></a>', 1)[1]
        assert section.lstrip().startswith(f"## `{name}`"), logical_id


def test_every_product_metric_of_an_alarm_is_defined_by_the_metrics_module() -> None:
    product = {k: v for k, v in ALARM_RESOURCES.items() if v.get("Namespace") == NAMESPACE}
    assert product
    for logical_id, props in product.items():
        assert props["MetricName"] in METRIC_NAMES, logical_id
        dimensions = _dimensions(props)
        assert dimensions[Dimension.STAGE.value] == {"Ref": "Stage"}, logical_id
        assert set(dimensions) <= {dimension.value for dimension in Dimension}, logical_id
        assert (Dimension.REASON.value in dimensions) == (Metric(props["MetricName"]) in REASON_METRICS), logical_id


def test_the_alarm_widget_and_the_alarm_resources_agree() -> None:
    assert set(ALARMS) == set(ALARM_RESOURCES)


def test_a_retry_loop_on_the_stream_alarms_on_records_reported_failed() -> None:
    props = _product_alarm("StreamRetryLoopAlarm")
    assert props["MetricName"] == Metric.EVALUATOR_RECORDS_REPORTED_FAILED
    assert props["Statistic"] == "Sum"
    assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    # Every period of the window must see a failure: a loop, not one transient failure.
    assert props["EvaluationPeriods"] == props["DatapointsToAlarm"] >= 3
    # And it fires well before the iterator-age alarm would (15 minutes).
    iterator = ALARM_RESOURCES["StreamIteratorAgeAlarm"]
    assert props["Period"] * props["EvaluationPeriods"] < iterator["Period"] * iterator["EvaluationPeriods"]


def test_per_message_sender_failures_alarm() -> None:
    props = _product_alarm("SenderProcessingFailuresAlarm")
    assert props["MetricName"] == Metric.DELIVERY_PROCESSING_FAILURES
    assert (props["Statistic"], props["Threshold"], props["ComparisonOperator"]) == ("Sum", 0, "GreaterThanThreshold")


def test_the_main_queue_backlog_alarms_above_the_longest_delay_a_postback_may_ask_for() -> None:
    props = ALARM_RESOURCES["DeliveriesQueueAgeAlarm"]
    assert (props["Namespace"], props["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert _dimensions(props) == {"QueueName": {"Fn::GetAtt": ["DeliveriesQueue", "QueueName"]}}
    assert props["Threshold"] == {"Ref": "DeliveriesQueueAgeAlarmSeconds"}
    parameter = TEMPLATE["Parameters"]["DeliveriesQueueAgeAlarmSeconds"]
    max_delay_seconds = 900  # docs/contract.md §5: delay_seconds 0-900 (SQS DelaySeconds)
    assert parameter["MinValue"] > max_delay_seconds and parameter["Default"] >= parameter["MinValue"]


def _api_dimensions() -> dict[str, Any]:
    return {"ApiName": resource("RestAPI")["Properties"]["Name"], "Stage": CHALICE_CONFIG["api_gateway_stage"]}


def test_api_5xx_rate_alarm_is_a_share_of_requests() -> None:
    props = ALARM_RESOURCES["ApiServerErrorsAlarm"]
    queries = {query["Id"]: query for query in props["Metrics"]}
    errors, requests = queries["errors"]["MetricStat"], queries["requests"]["MetricStat"]
    assert (errors["Metric"]["MetricName"], requests["Metric"]["MetricName"]) == ("5XXError", "Count")
    for stat in (errors, requests):
        assert stat["Metric"]["Namespace"] == "AWS/ApiGateway" and stat["Stat"] == "Sum"
        assert _dimensions(stat["Metric"]) == _api_dimensions()
    [returned] = [query for query in props["Metrics"] if query["ReturnData"]]
    assert "100 * errors / requests" in returned["Expression"]
    assert props["ComparisonOperator"] == "GreaterThanThreshold" and 0 < props["Threshold"] <= 10


def test_api_p99_latency_alarm() -> None:
    props = ALARM_RESOURCES["ApiLatencyAlarm"]
    assert (props["Namespace"], props["MetricName"], props["ExtendedStatistic"]) == ("AWS/ApiGateway", "Latency", "p99")
    assert _dimensions(props) == _api_dimensions()
    assert props["Threshold"] == {"Ref": "ApiLatencyP99AlarmMilliseconds"}


def test_host_pauses_above_a_threshold_alarm() -> None:
    props = _product_alarm("HostPausesAlarm")
    assert props["MetricName"] == Metric.HOST_PAUSES
    assert props["Threshold"] == {"Ref": "HostPausesAlarmThreshold"}
    assert props["ComparisonOperator"] == "GreaterThanThreshold"


def test_malformed_conversion_records_alarm_the_conversion_service_team() -> None:
    props = _product_alarm("MalformedConversionRecordsAlarm")
    assert props["MetricName"] == Metric.RECORDS_DEAD_LETTERED
    assert _dimensions(props)[Dimension.REASON.value] == RecordDeadLetterReason.MALFORMED.value
    assert props["AlarmActions"] == [{"Ref": "ConversionServiceTopic"}]
    assert resource("ConversionServiceTopic")["Type"] == "AWS::SNS::Topic"
    subscription = resource("ConversionServiceEmailSubscription")
    assert subscription["Condition"] == "HasConversionServiceEmail"
    assert TEMPLATE["Outputs"]["ConversionServiceTopicArn"] == {"Value": {"Ref": "ConversionServiceTopic"}}


# Dashboard


def test_the_template_holds_the_dashboard_the_generator_builds() -> None:
    assert RESOURCES["Dashboard"] == dashboard_resource(), "run: python -m infrastructure.dashboard"


def test_every_product_metric_is_on_the_dashboard_and_defined_by_the_metrics_module() -> None:
    named = {row[1] for row in _dashboard_metrics() if isinstance(row[0], str) and row[0] == NAMESPACE}
    searched = {
        match
        for row in _dashboard_metrics()
        if isinstance(row[0], dict)
        for match in re.findall(r'MetricName="([A-Za-z]+)"', row[0]["expression"])
    }
    assert (named | searched) <= METRIC_NAMES
    assert named | searched == METRIC_NAMES
    assert searched == {metric.value for metric in REASON_METRICS}


def test_the_dashboard_shows_queues_iterator_age_api_and_functions() -> None:
    rows = [row for row in _dashboard_metrics() if isinstance(row[0], str)]
    shown = {(row[0], row[1], json.dumps(row[2:-1])) for row in rows}
    for queue in ("DeliveriesQueue", "DeliveriesDeadLetterQueue", "EvaluatorDeadLetterQueue"):
        for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
            assert ("AWS/SQS", metric, json.dumps(["QueueName", f"${{{queue}.QueueName}}"])) in shown
    assert ("AWS/Lambda", "IteratorAge", json.dumps(["FunctionName", "${OnConversionChange}"])) in shown
    api = ["ApiName", "postbacks-${Stage}", "Stage", CHALICE_CONFIG["api_gateway_stage"]]
    assert resource("RestAPI")["Properties"]["Name"] == {"Fn::Sub": api[1]}
    for metric in ("Count", "4XXError", "5XXError", "Latency"):
        assert ("AWS/ApiGateway", metric, json.dumps(api)) in shown
    latency_stats = {row[-1]["stat"] for row in rows if row[1] == "Latency"}
    assert {"p50", "p99"} <= latency_stats
    for function_id in FUNCTION_ROLES:
        for metric in ("Errors", "Throttles", "Duration"):
            assert ("AWS/Lambda", metric, json.dumps(["FunctionName", f"${{{function_id}}}"])) in shown


def test_every_substitution_in_the_dashboard_names_a_parameter_resource_or_pseudo_parameter() -> None:
    body = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^!}][^}]*)\}", body))
    assert names
    for name in names:
        base = name.split(".", 1)[0]
        known = PSEUDO_PARAMETERS | set(TEMPLATE["Parameters"]) | set(RESOURCES) | set(FUNCTION_ROLES)
        assert name in known or base in known, name
    assert TEMPLATE["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"].endswith("#dashboards:name=${Dashboard}")


def test_the_dashboard_queries_the_json_logs_of_every_function() -> None:
    [logs] = [widget for widget in _dashboard_body()["widgets"] if widget["type"] == "log"]
    query = logs["properties"]["query"]
    for _, _, log_group in FUNCTIONS:
        assert f"SOURCE '${{{log_group}}}'" in query
    for key in ("delivery_id", "postback_id", "affiliate_id", "conversion_id", "host", "attempt", "outcome", "reason"):
        assert key in query
