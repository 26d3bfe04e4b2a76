"""Recording every AWS call the product's code makes, as the IAM actions and resources it needs.

While `AwsCallLog.installed()` is open, every botocore client created (pynamodb's per-model
connections, the transactions' connections, the boto3 SQS clients the sender and evaluator build)
gets a `before-parameter-build` hook, which keeps the call's parameters, and a `before-call` hook,
which records the call — only inside `recording()`, so a test's own set-up and inspection calls
(seeding tables, receiving messages as Lambda would) are left out. Nothing is stubbed: each call
still goes to moto.

A call is recorded as what IAM authorises, not as the API operation:
- `TransactWriteItems` becomes one `PutItem` / `UpdateItem` / `DeleteItem` / `ConditionCheckItem`
  per item, on that item's table; `TransactGetItems` one `GetItem` per item;
- `BatchGetItem` / `BatchWriteItem` become one call per table;
- SQS batch operations are authorised by their single-message action (`SendMessageBatch` needs
  `sqs:SendMessage`, `DeleteMessageBatch` `sqs:DeleteMessage`, `ChangeMessageVisibilityBatch`
  `sqs:ChangeMessageVisibility`).
Each DynamoDB call keeps what the condition keys of a policy look at: the keys (or items) it names,
the top-level attribute names it reads or writes where the request states them, and `ReturnValues`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import botocore.session

from functions.storage.models import DeliveryModel, PostbackModel

# An item or key as (attribute name, scalar value as text) pairs, e.g. (("postback_id", "pb_1"),).
Key = tuple[tuple[str, str], ...]

SQS_ACTIONS: Mapping[str, str] = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
TRANSACT_WRITE_ACTIONS: Mapping[str, str] = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
_ITEM_OPERATIONS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"})


@dataclass(frozen=True)
class AwsCall:
    """One authorisation an AWS request needs: `service:operation` on one table/index or queue."""

    service: str  # "dynamodb", "sqs", ...
    operation: str  # the IAM action's name, e.g. "PutItem" for a Put inside TransactWriteItems
    resource: str  # table name, or queue name ("" when the request names none)
    api_operation: str  # the request it came from, e.g. "TransactWriteItems"
    index: str | None = None  # Query/Scan on a global secondary index
    keys: tuple[Key, ...] | None = None  # the keys or items the request names; None: not item-level
    attributes: frozenset[str] | None = None  # top-level attribute names accessed; None: all / not stated
    return_values: str | None = None

    @property
    def action(self) -> str:
        return f"{self.service}:{self.operation}"

    def describe(self) -> str:
        where = self.resource + (f"/index/{self.index}" if self.index else "")
        via = "" if self.api_operation == self.operation else f" (in {self.api_operation})"
        return f"{self.action} on {where}{via}"


def _scalar(value: Any) -> str | None:
    if isinstance(value, Mapping) and len(value) == 1:
        (kind, inner), *_ = value.items()
        if kind in ("S", "N"):
            return str(inner)
    return None


def _key(item: Mapping[str, Any]) -> Key:
    return tuple(sorted((name, text) for name, value in item.items() if (text := _scalar(value)) is not None))


def _names(body: Mapping[str, Any]) -> set[str]:
    """Attribute names an expression-based request states (pynamodb names every one by placeholder)."""
    names = {str(name) for name in (body.get("ExpressionAttributeNames") or {}).values()}
    names.update(str(name) for name in body.get("AttributesToGet") or [])
    names.update(str(name) for name in body.get("AttributeUpdates") or {})
    return names


def _item_call(api_operation: str, operation: str, body: Mapping[str, Any]) -> AwsCall:
    item = body.get("Item") if operation == "PutItem" else body.get("Key")
    item = item or {}
    attributes: frozenset[str] | None
    if operation == "GetItem" and not (body.get("ProjectionExpression") or body.get("AttributesToGet")):
        attributes = None  # the whole item
    else:
        attributes = frozenset(_names(body) | set(item))
    return AwsCall(
        service="dynamodb",
        operation=operation,
        resource=str(body.get("TableName", "")),
        api_operation=api_operation,
        keys=(_key(item),),
        attributes=attributes,
        return_values=body.get("ReturnValues"),
    )


def dynamodb_calls(operation: str, params: Mapping[str, Any]) -> list[AwsCall]:
    """The authorisations one DynamoDB request needs (see the module docstring)."""
    if operation in _ITEM_OPERATIONS:
        return [_item_call(operation, operation, params)]
    if operation == "TransactWriteItems":
        calls = []
        for entry in params.get("TransactItems", []):
            for kind, body in entry.items():
                calls.append(_item_call(operation, TRANSACT_WRITE_ACTIONS[kind], body))
        return calls
    if operation == "TransactGetItems":
        return [_item_call(operation, "GetItem", entry["Get"]) for entry in params.get("TransactItems", [])]
    if operation == "BatchGetItem":
        return [
            AwsCall(
                service="dynamodb",
                operation=operation,
                resource=str(table),
                api_operation=operation,
                keys=tuple(_key(key) for key in request.get("Keys", [])),
                attributes=frozenset(_names(request)) if request.get("ProjectionExpression") else None,
            )
            for table, request in params.get("RequestItems", {}).items()
        ]
    if operation == "BatchWriteItem":
        return [
            AwsCall(
                service="dynamodb",
                operation=operation,
                resource=str(table),
                api_operation=operation,
                keys=tuple(
                    _key(request.get("PutRequest", {}).get("Item") or request.get("DeleteRequest", {}).get("Key", {}))
                    for request in requests
                ),
            )
            for table, requests in params.get("RequestItems", {}).items()
        ]
    return [
        AwsCall(
            service="dynamodb",
            operation=operation,
            resource=str(params.get("TableName", "")),
            api_operation=operation,
            index=params.get("IndexName"),
        )
    ]


def sqs_calls(operation: str, params: Mapping[str, Any]) -> list[AwsCall]:
    queue = str(params.get("QueueUrl") or params.get("QueueName") or "").rstrip("/").rsplit("/", 1)[-1]
    return [
        AwsCall(service="sqs", operation=SQS_ACTIONS.get(operation, operation), resource=queue, api_operation=operation)
    ]


def calls_of(service: str, operation: str, params: Mapping[str, Any]) -> list[AwsCall]:
    """The authorisations a request of any service needs."""
    if service == "dynamodb":
        return dynamodb_calls(operation, params)
    if service == "sqs":
        return sqs_calls(operation, params)
    if service == "secretsmanager":
        secret = str(params.get("SecretId", ""))
        return [AwsCall(service=service, operation=operation, resource=secret, api_operation=operation)]
    return [AwsCall(service=service, operation=operation, resource="", api_operation=operation)]


def _forget_pynamodb_connections() -> None:
    # pynamodb caches one connection (and its botocore client) per model class: drop them so the
    # clients the code uses next are created, and hooked, while the log is installed.
    PostbackModel._connection = None
    DeliveryModel._connection = None


class AwsCallLog:
    """Every AWS call made inside `recording()` by clients created while `installed()` is open."""

    def __init__(self) -> None:
        self._calls: list[AwsCall] = []
        self._lock = threading.Lock()
        self._recording = False

    @property
    def calls(self) -> list[AwsCall]:
        with self._lock:
            return list(self._calls)

    @contextmanager
    def recording(self) -> Iterator[AwsCallLog]:
        self._recording = True
        try:
            yield self
        finally:
            self._recording = False

    @contextmanager
    def installed(self) -> Iterator[AwsCallLog]:
        original = botocore.session.Session.create_client
        log = self

        def create_client(session: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            log.attach(client)
            return client

        _forget_pynamodb_connections()
        botocore.session.Session.create_client = create_client
        try:
            yield self
        finally:
            botocore.session.Session.create_client = original
            _forget_pynamodb_connections()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.*.*", self._keep_params)
        client.meta.events.register("before-call.*.*", self._record)

    def _keep_params(self, params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["aws_call_log_params"] = dict(params)

    def _record(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if not self._recording:
            return
        params = context.get("aws_call_log_params", {})
        calls = calls_of(model.service_model.service_name, model.name, params)
        with self._lock:
            self._calls.extend(calls)
