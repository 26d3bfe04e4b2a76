"""Create the tables and queues of `infrastructure/template.json` through boto3, against any endpoint.

The CloudFormation template is the one definition of the tables (keys, indexes, TTL, streams,
encryption) and queues (visibility, retention, redrive). The local stack and the tests build the
same resources from it here, under the names the code is configured with (`functions.settings`),
instead of keeping a second list by hand.

    from infrastructure.resources import create_all
    names = create_all(boto3.client("dynamodb"), boto3.client("sqs"))   # inside mock_aws, or with an endpoint

Only the properties DynamoDB and SQS accept at creation are translated; CloudFormation-only
properties (deletion policies, PITR, tags) have no meaning on moto and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from functions.settings import Settings, load_settings

TEMPLATE_PATH = Path(__file__).with_name("template.json")

# Logical ID in the template -> the Settings field holding that resource's name.
TABLES: Mapping[str, str] = {
    "PostbacksTable": "postbacks_table",
    "DeliveriesTable": "deliveries_table",
    "ConversionsTable": "conversions_table",
}
# Dead-letter queues first: the main queue's redrive policy refers to them.
QUEUES: Mapping[str, str] = {
    "DeliveriesDeadLetterQueue": "deliveries_dlq",
    "EvaluatorDeadLetterQueue": "evaluator_dlq",
    "DeliveriesQueue": "deliveries_queue",
}
# CloudFormation queue properties -> SQS CreateQueue attribute names.
_QUEUE_ATTRIBUTES = {
    "VisibilityTimeout": "VisibilityTimeout",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "DelaySeconds": "DelaySeconds",
    "MaximumMessageSize": "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled": "SqsManagedSseEnabled",
}


class TemplateError(ValueError):
    """The template does not define a resource the way this module expects."""


@dataclass(frozen=True)
class CreatedResources:
    tables: dict[str, str]  # logical ID -> table name
    queue_urls: dict[str, str]  # logical ID -> queue URL
    conversions_stream_arn: str | None


@cache
def _load_template(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        template: dict[str, Any] = json.load(handle)
    return template


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The merge template as a dict (parsed once per path; treat it as read-only)."""
    return _load_template(str(path))


def resource(logical_id: str, template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = (template or load_template())["Resources"]
    if logical_id not in resources:
        raise TemplateError(f"template has no resource {logical_id}")
    found: dict[str, Any] = resources[logical_id]
    return found


def table_definition(logical_id: str, name: str, template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """CreateTable arguments for a template table, under `name`."""
    definition = resource(logical_id, template)
    if definition.get("Type") != "AWS::DynamoDB::Table":
        raise TemplateError(f"{logical_id} is not a DynamoDB table")
    props = definition["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if "StreamSpecification" in props:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if "SSESpecification" in props:
        kwargs["SSESpecification"] = {"Enabled": bool(props["SSESpecification"].get("SSEEnabled", False))}
    return kwargs


def time_to_live(logical_id: str, template: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    spec: dict[str, Any] | None = resource(logical_id, template)["Properties"].get("TimeToLiveSpecification")
    return spec


def queue_attributes(
    logical_id: str, queue_arns: Mapping[str, str], template: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """CreateQueue attributes for a template queue; `queue_arns` resolves redrive targets by logical ID."""
    definition = resource(logical_id, template)
    if definition.get("Type") != "AWS::SQS::Queue":
        raise TemplateError(f"{logical_id} is not an SQS queue")
    props = definition["Properties"]
    attributes: dict[str, str] = {}
    for cfn_name, sqs_name in _QUEUE_ATTRIBUTES.items():
        if cfn_name in props:
            value = props[cfn_name]
            attributes[sqs_name] = str(value).lower() if isinstance(value, bool) else str(value)
    redrive = props.get("RedrivePolicy")
    if redrive is not None:
        target = redrive["deadLetterTargetArn"]
        if not (isinstance(target, dict) and "Fn::GetAtt" in target):
            raise TemplateError(f"{logical_id}: deadLetterTargetArn must be a Fn::GetAtt of a template queue")
        target_id = target["Fn::GetAtt"][0]
        if target_id not in queue_arns:
            raise TemplateError(f"{logical_id}: create {target_id} before the queue that dead-letters into it")
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": queue_arns[target_id], "maxReceiveCount": int(redrive["maxReceiveCount"])}
        )
    return attributes


def event_source_properties(function_id: str, template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The merged event-source settings of a function (batch size, window, retries ...)."""
    events: dict[str, Any] = resource(function_id, template)["Properties"]["Events"]
    if len(events) != 1:
        raise TemplateError(f"{function_id} should have exactly one event source")
    props: dict[str, Any] = next(iter(events.values()))["Properties"]
    return props


def create_tables(dynamodb: Any, settings: Settings | None = None, *, conversions: bool = True) -> dict[str, str]:
    """Create the template's tables (skipping ones that exist); returns logical ID -> name."""
    config = settings or load_settings()
    existing = set(dynamodb.list_tables().get("TableNames", []))
    created: dict[str, str] = {}
    for logical_id, field in TABLES.items():
        if logical_id == "ConversionsTable" and not conversions:
            continue
        name = str(getattr(config, field))
        created[logical_id] = name
        if name in existing:
            continue
        dynamodb.create_table(**table_definition(logical_id, name))
        dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        ttl = time_to_live(logical_id)
        if ttl is not None:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])},
            )
    return created


def create_queues(sqs: Any, settings: Settings | None = None) -> dict[str, str]:
    """Create the template's queues (dead-letter queues first); returns logical ID -> queue URL."""
    config = settings or load_settings()
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    for logical_id, field in QUEUES.items():
        name = str(getattr(config, field)).rstrip("/").rsplit("/", 1)[-1]
        url = sqs.create_queue(QueueName=name, Attributes=queue_attributes(logical_id, arns))["QueueUrl"]
        urls[logical_id] = url
        arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return urls


def create_all(
    dynamodb: Any, sqs: Any, settings: Settings | None = None, *, conversions: bool = True
) -> CreatedResources:
    """Create every table and queue of the template, as the local stack and the tests need them."""
    config = settings or load_settings()
    tables = create_tables(dynamodb, config, conversions=conversions)
    queue_urls = create_queues(sqs, config)
    stream_arn: str | None = None
    if "ConversionsTable" in tables:
        description = dynamodb.describe_table(TableName=tables["ConversionsTable"])["Table"]
        stream_arn = description.get("LatestStreamArn")
    return CreatedResources(tables=tables, queue_urls=queue_urls, conversions_stream_arn=stream_arn)
