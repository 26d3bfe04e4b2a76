"""Whether a function's IAM policies in the merge template allow the AWS calls its code makes.

moto ignores IAM, so a call the policies do not allow passes every moto test and fails in AWS
with AccessDenied. `uncovered(...)` takes the calls recorded by `tests.support.aws_calls`
(plus what the function's event source mapping does with the function's role) and returns one
line per call that no statement of the policies attached to the function's role allows.

Resources are compared symbolically, as the template writes them: a table is
`${PostbacksTable.Arn}`, its index `${PostbacksTable.Arn}/index/by_affiliate`, a queue
`${DeliveriesQueue.Arn}`; a statement's `Fn::GetAtt` / `Fn::Sub` / `Ref` / `Fn::If` is rendered into
the same notation and compared with `*` and `?` as wildcards. Table and queue names are mapped to
their logical IDs through the names the code is configured with (`infrastructure.resources`).

Conditions: `dynamodb:LeadingKeys` (the partition key values of the request), `dynamodb:Attributes`
(the top-level attribute names it states) and `dynamodb:ReturnValues` are evaluated with
`StringEquals` / `StringLike`, `ForAllValues:` / `ForAnyValue:` and `...IfExists`. Where a request
does not say (a Query's leading keys, a GetItem of the whole item), a statement conditioned on
that key is not counted — stricter than IAM's treatment of absent keys, on purpose. A condition
key or operator the checker does not know makes the statement not count, with a reason, so a new
kind of condition is taught here rather than silently ignored. Deny statements are not modelled:
the template has none (a test asserts it).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from functions.settings import Settings
from infrastructure.resources import QUEUES, TABLES
from tests.support.aws_calls import AwsCall

# Chalice's logical IDs: the function and the role `chalice package` gives it.
FUNCTIONS: Mapping[str, tuple[str, str]] = {
    "api": ("APIHandler", "ApiHandlerRole"),
    "authorizer": ("JwtAuthorizer", "JwtAuthorizerRole"),
    "evaluator": ("OnConversionChange", "OnConversionChangeRole"),
    "sender": ("OnDeliveryMessage", "OnDeliveryMessageRole"),
}

# What Lambda's event source mapping does with the function's role (AWS Lambda developer guide).
STREAM_ACTIONS = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams")
QUEUE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


@dataclass(frozen=True)
class Requirement:
    """One authorisation the function needs: an action on a resource, with what conditions see."""

    action: str
    resource: str  # symbolic, e.g. "${PostbacksTable.Arn}/index/by_affiliate"
    origin: str  # for the report, e.g. "dynamodb:GetItem on postbacks (in TransactWriteItems)"
    leading_keys: frozenset[str] | None = None
    attributes: frozenset[str] | None = None
    return_values: str | None = None


@dataclass(frozen=True)
class Statement:
    policy: str
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: Mapping[str, Mapping[str, Any]]


def render(value: Any) -> str:
    """A template value (string or intrinsic function) in symbolic notation."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        (function, argument), *_ = value.items()
        if function == "Ref":
            return "${" + str(argument) + "}"
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return "${" + f"{logical_id}.{attribute}" + "}"
        if function == "Fn::Sub":
            if isinstance(argument, str):
                return argument
            text, variables = argument
            return re.sub(
                r"\$\{([^}!]+)\}",
                lambda found: render(variables[found.group(1)]) if found.group(1) in variables else found.group(0),
                str(text),
            )
        if function == "Fn::If":
            condition, when_true, when_false = argument
            return "${If:" + f"{condition}:{render(when_true)}|{render(when_false)}" + "}"
    return json.dumps(value, sort_keys=True)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


@cache
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: `*` any run of characters, `?` one character."""
    text = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(text, re.IGNORECASE if ignore_case else 0)


def _matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """Actions compare without case; resources (ARNs) and condition values with it."""
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def role_statements(template: Mapping[str, Any], role: str) -> list[Statement]:
    """Every statement of the template's policies attached to `role` (and of its inline policies)."""
    documents: list[tuple[str, Mapping[str, Any]]] = []
    for logical_id, definition in template["Resources"].items():
        kind = definition.get("Type")
        props = definition.get("Properties", {})
        if kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {"Ref": role} in props.get("Roles", []):
            documents.append((logical_id, props["PolicyDocument"]))
        if kind in ("AWS::IAM::Role", None) and logical_id == role:  # a merge entry has no Type
            documents.extend((f"{role}/{p['PolicyName']}", p["PolicyDocument"]) for p in props.get("Policies", []))
    statements: list[Statement] = []
    for policy, document in documents:
        for index, statement in enumerate(_as_list(document["Statement"])):
            statements.append(
                Statement(
                    policy=policy,
                    sid=str(statement.get("Sid", index)),
                    actions=tuple(str(action) for action in _as_list(statement["Action"])),
                    resources=tuple(render(resource) for resource in _as_list(statement["Resource"])),
                    condition=statement.get("Condition", {}),
                )
            )
    return statements


@dataclass(frozen=True)
class ResourceNames:
    """Table and queue names as the code is configured -> logical IDs of the template."""

    tables: Mapping[str, str]
    queues: Mapping[str, str]
    hash_keys: Mapping[str, str]  # table logical ID -> partition key attribute
    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)  # secret ARN -> parameter

    @classmethod
    def of(cls, settings: Settings, template: Mapping[str, Any]) -> ResourceNames:
        resources = template["Resources"]
        return cls(
            tables={str(getattr(settings, field)): logical_id for logical_id, field in TABLES.items()},
            queues={
                str(getattr(settings, field)).rstrip("/").rsplit("/", 1)[-1]: logical_id
                for logical_id, field in QUEUES.items()
            },
            hash_keys={
                logical_id: next(
                    key["AttributeName"]
                    for key in resources[logical_id]["Properties"]["KeySchema"]
                    if key["KeyType"] == "HASH"
                )
                for logical_id in TABLES
                if logical_id in resources
            },
            secrets={settings.jwt_secret_arn: "JwtSecretArn"} if settings.jwt_secret_arn else {},
        )

    def requirement(self, call: AwsCall) -> Requirement:
        if call.service == "dynamodb":
            table = self.tables.get(call.resource)
            if table is None:
                resource = f"<table {call.resource!r}, not a table of the template>"
                leading = None
            else:
                resource = "${" + table + ".Arn}" + (f"/index/{call.index}" if call.index else "")
                hash_key = self.hash_keys[table]
                leading = (
                    None
                    if call.keys is None or call.index
                    else frozenset(value for key in call.keys for name, value in key if name == hash_key)
                )
            return Requirement(
                action=call.action,
                resource=resource,
                origin=call.describe(),
                leading_keys=leading,
                attributes=call.attributes,
                return_values=call.return_values,
            )
        if call.service == "sqs":
            queue = self.queues.get(call.resource)
            resource = "${" + queue + ".Arn}" if queue else f"<queue {call.resource!r}, not a queue of the template>"
            return Requirement(action=call.action, resource=resource, origin=call.describe())
        if call.service == "secretsmanager":
            parameter = self.secrets.get(call.resource)
            resource = "${" + parameter + "}" if parameter else f"<secret {call.resource!r}, not the template's>"
            return Requirement(action=call.action, resource=resource, origin=call.describe())
        return Requirement(action=call.action, resource=call.resource or "*", origin=call.describe())


def event_source_requirements(template: Mapping[str, Any], function_id: str) -> list[Requirement]:
    """What the function's event source mapping does with its role: read the stream (and send a
    failed batch's description to the on-failure destination), or consume the queue."""
    requirements: list[Requirement] = []
    events = template["Resources"].get(function_id, {}).get("Properties", {}).get("Events", {})
    for name, event in events.items():
        props = event.get("Properties", {})
        if "Stream" in props:
            stream = render(props["Stream"])
            requirements += [Requirement(a, stream, f"{a} by the event source {name}") for a in STREAM_ACTIONS]
            destination = props.get("DestinationConfig", {}).get("OnFailure", {})
            if destination.get("Type", "SQS") == "SQS" and "Destination" in destination:
                target = render(destination["Destination"])
                requirements.append(
                    Requirement("sqs:SendMessage", target, f"sqs:SendMessage to the on-failure destination of {name}")
                )
        if "Queue" in props:
            queue = render(props["Queue"])
            requirements += [Requirement(a, queue, f"{a} by the event source {name}") for a in QUEUE_ACTIONS]
    return requirements


def _condition_holds(operator: str, key: str, expected: Sequence[str], requirement: Requirement) -> str | None:
    """None when the condition holds for the request; otherwise why not."""
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in ("StringEquals", "StringLike"):
        return f"condition operator {operator} not understood by the checker"

    def one(value: str) -> bool:
        if base == "StringEquals":
            return value in expected
        return any(_matches(pattern, value) for pattern in expected)

    name = key.lower()
    if name in ("dynamodb:leadingkeys", "dynamodb:attributes"):
        values = requirement.leading_keys if name == "dynamodb:leadingkeys" else requirement.attributes
        if values is None:
            return f"the request does not state its {key}"
        if qualifier == "ForAllValues":
            bad = sorted(value for value in values if not one(value))
            return None if values and not bad else f"{key} {bad or '(none)'} not in {list(expected)}"
        if qualifier == "ForAnyValue":
            return None if any(one(value) for value in values) else f"no {key} of {sorted(values)} in {list(expected)}"
        return f"{key} needs ForAllValues or ForAnyValue"
    if name == "dynamodb:returnvalues":
        value = requirement.return_values
        if value is None:
            return None if if_exists else f"the request does not state {key}"
        return None if one(value) else f"{key} {value!r} not in {list(expected)}"
    return f"condition key {key} not understood by the checker"


def why_not(statement: Statement, requirement: Requirement) -> str | None:
    """None when `statement` allows `requirement`; otherwise why it does not (or "" if unrelated)."""
    if not any(_matches(action, requirement.action, ignore_case=True) for action in statement.actions):
        return ""
    if not any(_matches(resource, requirement.resource) for resource in statement.resources):
        return ""
    for operator, entries in statement.condition.items():
        for key, expected in entries.items():
            reason = _condition_holds(operator, key, [str(v) for v in _as_list(expected)], requirement)
            if reason is not None:
                return reason
    return None


def uncovered(
    calls: Iterable[AwsCall],
    template: Mapping[str, Any],
    function: str,
    names: ResourceNames,
    *,
    with_event_source: bool = True,
) -> list[str]:
    """One line per distinct authorisation the function needs that its role's policies do not give."""
    function_id, role = FUNCTIONS[function]
    statements = role_statements(template, role)
    requirements = [names.requirement(call) for call in calls]
    if with_event_source:
        requirements += event_source_requirements(template, function_id)
    problems: list[str] = []
    for requirement in dict.fromkeys(requirements):
        reasons = [why_not(statement, requirement) for statement in statements]
        if any(reason is None for reason in reasons):
            continue
        near = "; ".join(
            f"{s.policy}/{s.sid}: {reason}" for s, reason in zip(statements, reasons, strict=True) if reason
        )
        detail = f" (statements on it that do not apply: {near})" if near else ""
        problems.append(
            f"{function}: {requirement.action} on {requirement.resource} — needed for {requirement.origin},"
            f" allowed by no statement of the policies of {role}{detail}"
        )
    return problems
