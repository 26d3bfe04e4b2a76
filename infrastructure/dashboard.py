"""The CloudWatch dashboard of a stage, built from the metric names the functions emit.

    python -m infrastructure.dashboard           # rewrite the Dashboard resource of template.json
    python -m infrastructure.dashboard --check   # exit 1 if template.json is not what this builds

The dashboard body is a JSON string in `Fn::Sub` (CloudWatch takes it as one string), so it is
written here, where each widget is readable and the product's metrics come from
`functions.core.metrics`, and copied into `infrastructure/template.json`; a test checks the
template holds exactly what `dashboard_resource()` builds. `${…}` are CloudFormation
substitutions: logical IDs (`${OnConversionChange}`, `${DeliveriesQueue.QueueName}`) and parameters.

Layout, top to bottom: the alarms; deliveries (outcomes, dead letters by reason, GET duration);
the evaluator (records, dead-lettered records by reason and the stream's retry signal, iterator
age); queues (depths, oldest ages, sender failures and host pauses); the API (requests, 4xx and
5xx, latency; repairs); the functions (errors, throttles, duration); recent errors from the logs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from functions.core.metrics import NAMESPACE, Dimension, Metric

TEMPLATE_PATH = Path(__file__).with_name("template.json")
LOGICAL_ID = "Dashboard"
PERIOD = 300
API_NAME = "postbacks-${Stage}"  # the RestAPI's name (its title), as the template sets it
API_STAGE = "api"  # .chalice/config.json api_gateway_stage

# Logical ID of each function (Chalice's) and of its log group (this template's).
FUNCTIONS: Sequence[tuple[str, str, str]] = (
    ("api", "APIHandler", "ApiLogGroup"),
    ("authorizer", "JwtAuthorizer", "AuthorizerLogGroup"),
    ("evaluator", "OnConversionChange", "EvaluatorLogGroup"),
    ("sender", "OnDeliveryMessage", "SenderLogGroup"),
)
QUEUES: Sequence[tuple[str, str]] = (
    ("deliveries", "DeliveriesQueue"),
    ("deliveries DLQ", "DeliveriesDeadLetterQueue"),
    ("evaluator DLQ", "EvaluatorDeadLetterQueue"),
)
# The template's alarms, in the order the alarm widget lists them.
ALARMS: Sequence[str] = (
    "StreamRetryLoopAlarm",
    "StreamIteratorAgeAlarm",
    "EvaluatorErrorsAlarm",
    "MalformedConversionRecordsAlarm",
    "EvaluatorDeadLetterDepthAlarm",
    "SenderProcessingFailuresAlarm",
    "SenderErrorsAlarm",
    "DeliveriesQueueAgeAlarm",
    "HostPausesAlarm",
    "DeliveriesDeadLetterDepthAlarm",
    "DeliveriesDeadLetterAgeAlarm",
    "ApiServerErrorsAlarm",
    "ApiLatencyAlarm",
)
# Logs Insights over the functions' JSON logs: warnings and errors with the correlation keys.
ERRORS_QUERY = (
    "fields @timestamp, level, message, outcome, reason, delivery_id, postback_id, affiliate_id, "
    "conversion_id, host, attempt, @log\n"
    "| filter level in ['ERROR', 'WARN', 'WARNING', 'CRITICAL']\n"
    "| sort @timestamp desc\n"
    "| limit 100"
)


def _product(metric: Metric, label: str | None = None, **options: Any) -> list[Any]:
    row: list[Any] = [NAMESPACE, metric.value, Dimension.STAGE.value, "${Stage}"]
    rendering = {"label": label or metric.value, **options}
    return [*row, rendering]


def _by_reason(metric: Metric, stat: str, expression_id: str) -> list[Any]:
    search = (
        f"SEARCH('{{{NAMESPACE},{Dimension.STAGE.value},{Dimension.REASON.value}}} "
        f'MetricName="{metric.value}" {Dimension.STAGE.value}="${{Stage}}"\', \'{stat}\', {PERIOD})'
    )
    # `${!` is a literal `${` in Fn::Sub: the label is CloudWatch's own substitution.
    return [{"expression": search, "id": expression_id, "label": "${!PROP('Dim.Reason')}"}]


def _metric_widget(
    title: str, metrics: list[list[Any]], *, stat: str = "Sum", y_label: str | None = None, **extra: Any
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "title": title,
        "view": "timeSeries",
        "stacked": False,
        "region": "${AWS::Region}",
        "period": PERIOD,
        "stat": stat,
        "metrics": metrics,
    }
    if y_label:
        properties["yAxis"] = {"left": {"label": y_label, "showUnits": False}}
    properties.update(extra)
    return {"type": "metric", "properties": properties}


def _lambda(metric: str, stat: str) -> list[list[Any]]:
    return [
        ["AWS/Lambda", metric, "FunctionName", f"${{{function_id}}}", {"label": name, "stat": stat}]
        for name, function_id, _ in FUNCTIONS
    ]


def _queue(metric: str, label_suffix: str = "") -> list[list[Any]]:
    return [
        ["AWS/SQS", metric, "QueueName", f"${{{queue_id}.QueueName}}", {"label": f"{name}{label_suffix}"}]
        for name, queue_id in QUEUES
    ]


def _api(metric: str, label: str, stat: str) -> list[Any]:
    return ["AWS/ApiGateway", metric, "ApiName", API_NAME, "Stage", API_STAGE, {"label": label, "stat": stat}]


def widgets() -> list[dict[str, Any]]:
    """The dashboard's widgets, in rows of three (without positions)."""
    alarms: dict[str, Any] = {
        "type": "alarm",
        "properties": {
            "title": "Alarms (each has a section in docs/runbook.md)",
            "alarms": [f"${{{alarm}.Arn}}" for alarm in ALARMS],
            "sortBy": "stateUpdatedTimestamp",
        },
        "width": 24,
        "height": 4,
    }
    rows: list[list[dict[str, Any]]] = [
        [
            _metric_widget(
                "Deliveries: outcomes",
                [
                    _product(Metric.DELIVERIES_DELIVERED, "delivered"),
                    _product(Metric.DELIVERIES_RETRIED, "retried"),
                    _product(Metric.DELIVERIES_DEAD_LETTERED, "dead-lettered"),
                    _product(Metric.DELIVERIES_CANCELLED, "cancelled"),
                ],
            ),
            _metric_widget(
                "Deliveries dead-lettered by reason", [_by_reason(Metric.DELIVERIES_DEAD_LETTERED, "Sum", "dl")]
            ),
            _metric_widget(
                "GET duration (ms)",
                [
                    _product(Metric.GET_DURATION, "p50", stat="p50"),
                    _product(Metric.GET_DURATION, "p99", stat="p99"),
                    _product(Metric.GET_DURATION, "max", stat="Maximum"),
                ],
                y_label="ms",
            ),
        ],
        [
            _metric_widget(
                "Evaluator: records, status changes, deliveries created",
                [
                    _product(Metric.EVALUATOR_RECORDS, "records"),
                    _product(Metric.STATUS_CHANGES, "status changes"),
                    _product(Metric.DELIVERIES_CREATED, "deliveries created"),
                ],
            ),
            _metric_widget(
                "Evaluator: records dead-lettered by reason, records reported failed (retried)",
                [
                    _by_reason(Metric.RECORDS_DEAD_LETTERED, "Sum", "rdl"),
                    _product(Metric.EVALUATOR_RECORDS_REPORTED_FAILED, "reported failed (Lambda retries)"),
                ],
            ),
            _metric_widget(
                "Stream iterator age (ms)",
                [["AWS/Lambda", "IteratorAge", "FunctionName", "${OnConversionChange}", {"label": "iterator age"}]],
                stat="Maximum",
                y_label="ms",
            ),
        ],
        [
            _metric_widget(
                "Queue depth (visible; in flight or waiting to retry)",
                [
                    *_queue("ApproximateNumberOfMessagesVisible"),
                    [
                        "AWS/SQS",
                        "ApproximateNumberOfMessagesNotVisible",
                        "QueueName",
                        "${DeliveriesQueue.QueueName}",
                        {"label": "deliveries not visible"},
                    ],
                    [
                        "AWS/SQS",
                        "ApproximateNumberOfMessagesDelayed",
                        "QueueName",
                        "${DeliveriesQueue.QueueName}",
                        {"label": "deliveries delayed"},
                    ],
                ],
                stat="Maximum",
            ),
            _metric_widget(
                "Oldest message age (s)", _queue("ApproximateAgeOfOldestMessage"), stat="Maximum", y_label="s"
            ),
            _metric_widget(
                "Sender: messages failed to process, host pauses",
                [
                    _product(Metric.DELIVERY_PROCESSING_FAILURES, "messages failed (retried by SQS)"),
                    _product(Metric.HOST_PAUSES, "host pauses"),
                ],
            ),
        ],
        [
            _metric_widget(
                "API: requests, 4xx, 5xx",
                [
                    _api("Count", "requests", "Sum"),
                    _api("4XXError", "4xx", "Sum"),
                    _api("5XXError", "5xx", "Sum"),
                ],
            ),
            _metric_widget(
                "API latency (ms)",
                [
                    _api("Latency", "p50", "p50"),
                    _api("Latency", "p99", "p99"),
                    _api("IntegrationLatency", "integration p99", "p99"),
                ],
                y_label="ms",
            ),
            _metric_widget(
                "Repairs: deliveries re-enqueued, dead-letter copies resent",
                [
                    _product(Metric.DELIVERIES_RE_ENQUEUED, "re-enqueued"),
                    _product(Metric.DEAD_LETTER_COPIES_RESENT, "DLQ copies resent"),
                ],
            ),
        ],
        [
            _metric_widget("Lambda errors", _lambda("Errors", "Sum")),
            _metric_widget("Lambda throttles", _lambda("Throttles", "Sum")),
            _metric_widget("Lambda duration p99 (ms)", _lambda("Duration", "p99"), y_label="ms"),
        ],
    ]
    logs: dict[str, Any] = {
        "type": "log",
        "properties": {
            "title": "Recent warnings and errors (JSON logs of every function)",
            "region": "${AWS::Region}",
            "view": "table",
            "query": " | ".join(f"SOURCE '${{{log_group}}}'" for _, _, log_group in FUNCTIONS) + " | " + ERRORS_QUERY,
        },
        "width": 24,
        "height": 8,
    }
    placed: list[dict[str, Any]] = []
    y = 0
    alarms.update({"x": 0, "y": y})
    placed.append(alarms)
    y += int(alarms["height"])
    for row in rows:
        for column, widget in enumerate(row):
            placed.append({**widget, "x": column * 8, "y": y, "width": 8, "height": 6})
        y += 6
    logs.update({"x": 0, "y": y})
    placed.append(logs)
    return placed


def dashboard_body() -> str:
    """The `Fn::Sub` string of the dashboard body (compact JSON)."""
    return json.dumps({"widgets": widgets()}, separators=(",", ":"), ensure_ascii=False)


def dashboard_resource() -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": {"Fn::Sub": "postbacks-${Stage}"},
            "DashboardBody": {"Fn::Sub": dashboard_body()},
        },
    }


def _render(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infrastructure.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that template.json is up to date")
    args = parser.parse_args(argv)
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    template = json.loads(text)
    template["Resources"][LOGICAL_ID] = dashboard_resource()
    rendered = _render(template)
    if args.check:
        if rendered != text:
            print(
                f"{TEMPLATE_PATH}: the dashboard is out of date; run python -m infrastructure.dashboard",
                file=sys.stderr,
            )
            return 1
        return 0
    TEMPLATE_PATH.write_text(rendered, encoding="utf-8")
    print(f"{TEMPLATE_PATH}: {LOGICAL_ID} written ({len(widgets())} widgets)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
