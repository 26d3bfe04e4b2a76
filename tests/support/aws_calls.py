"""Recording the AWS requests the product's code makes, with botocore event hooks.

One recorder for every test and benchmark that looks at AWS calls: the IAM test reads each request
as the IAM actions and resources it needs (`AwsCallLog.calls`), the request-count tests count
operations (`AwsCallLog.requests`), and the benchmarks bill requests and DynamoDB capacity
(`bench/counting.py` extends `record` and `responded`). Nothing is stubbed: each request still goes
to moto (or the moto server) as it would to AWS.

Which clients: `installed()` hooks every botocore client created while it is open — pynamodb's
per-model connections (dropped on entry and exit so they are created, and hooked, anew), its
transactions' connections, the boto3 SQS clients; `watching(*extra_clients)` hooks clients that
exist already (the two tables' pynamodb clients and the ones given) for the length of the block.

When: a request is recorded only while the log is `active` — inside `recording()` or
`watching()`, or from the start when built `AwsCallLog(active=True)` — so a test's own set-up and
inspection calls can be left out. Each API call is recorded once (`before-call`; botocore's own
retries are not counted), with the parameters it was given (`before-parameter-build`) and, once it
returns, its parsed response (`after-call`).

As IAM sees a request (`calls_of`):
- `TransactWriteItems` is one `PutItem` / `UpdateItem` / `DeleteItem` / `ConditionCheckItem` per
  item, on that item's table; `TransactGetItems` one `GetItem` per item;
- `BatchGetItem` / `BatchWriteItem` are one call per table;
- SQS batch operations are authorised by their single-message action (`SendMessageBatch` needs
  `sqs:SendMessage`, `DeleteMessageBatch` `sqs:DeleteMessage`, `ChangeMessageVisibilityBatch`
  `sqs:ChangeMessageVisibility`).
Each DynamoDB call keeps what the condition keys of a policy look at: the keys (or items) it names,
the top-level attribute names it reads or writes where the request states them, and `ReturnValues`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
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
_PARAMS = "aws_calls_params"
_REQUEST = "aws_calls_request"


@dataclass
class AwsRequest:
    """One API call: `service` ("dynamodb", "sqs", ...), `operation` ("PutItem"), its parameters
    and, once it has returned, its parsed response."""

    service: str
    operation: str
    params: Mapping[str, Any]
    response: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def target(self) -> str:
        """The table(s) or queue it names: `postbacks`, `a,b` for a batch, a queue's name."""
        params = self.params
        return str(
            params.get("TableName")
            or ",".join(sorted(params.get("RequestItems") or {}))
            or str(params.get("QueueUrl") or params.get("QueueName") or "").rstrip("/").rsplit("/", 1)[-1]
        )


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


def forget_pynamodb_connections() -> None:
    """Drop the connection (and its botocore client) pynamodb caches per model class.

    The clients the code uses next are then created anew — hooked by an installed recorder, and
    fresh as in a cold Lambda container.
    """
    PostbackModel._connection = None
    DeliveryModel._connection = None


def table_clients() -> list[Any]:
    """The botocore clients of the two tables' pynamodb connections (created if need be)."""
    return [
        PostbackModel._get_connection().connection.client,
        DeliveryModel._get_connection().connection.client,
    ]


class AwsCallLog:
    """Every AWS request made while `active`, by the clients this log is attached to."""

    def __init__(self, active: bool = False) -> None:
        self.active = active  # recording now
        self._requests: list[AwsRequest] = []
        self._lock = threading.Lock()

    # What was recorded ---------------------------------------------------------------------

    @property
    def requests(self) -> list[AwsRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> list[AwsCall]:
        """The requests as the IAM authorisations they need."""
        return [call for r in self.requests for call in calls_of(r.service, r.operation, r.params)]

    def operations(self) -> Counter[str]:
        return Counter(request.operation for request in self.requests)

    def clear(self) -> list[AwsRequest]:
        """The requests recorded so far, forgotten from here on."""
        with self._lock:
            requests, self._requests = self._requests, []
        return requests

    def record(self, request: AwsRequest) -> None:
        """Called for each request made while recording (before it is sent)."""
        with self._lock:
            self._requests.append(request)

    def responded(self, request: AwsRequest) -> None:
        """Called when a recorded request has returned, with `request.response` set."""

    # When ----------------------------------------------------------------------------------

    def recording(self) -> AbstractContextManager[AwsCallLog]:
        """Record the requests made inside the block."""
        return self._active_while(True)

    def paused(self) -> AbstractContextManager[AwsCallLog]:
        """Record nothing inside the block (e.g. a benchmark's own seeding and clean-up)."""
        return self._active_while(False)

    @contextmanager
    def _active_while(self, active: bool) -> Iterator[AwsCallLog]:
        previous, self.active = self.active, active
        try:
            yield self
        finally:
            self.active = previous

    # Which clients -------------------------------------------------------------------------

    @contextmanager
    def installed(self) -> Iterator[AwsCallLog]:
        """Attach to every botocore client created inside the block."""
        original = botocore.session.Session.create_client
        log = self

        def create_client(session: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            log.attach(client)
            return client

        forget_pynamodb_connections()
        botocore.session.Session.create_client = create_client
        try:
            yield self
        finally:
            botocore.session.Session.create_client = original
            forget_pynamodb_connections()

    @contextmanager
    def watching(self, *extra_clients: Any) -> Iterator[AwsCallLog]:
        """Attach to the tables' pynamodb clients and `extra_clients` (e.g. an SQS client), and record,
        for the block."""
        hooked = {id(client): client for client in (*table_clients(), *extra_clients)}
        for client in hooked.values():
            self.attach(client)
        try:
            with self.recording():
                yield self
        finally:
            for client in hooked.values():
                self.detach(client)

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build.*.*", self._keep_params, unique_id=f"{_PARAMS}-{id(self)}")
        events.register("before-call.*.*", self._before_call, unique_id=f"{_REQUEST}-{id(self)}-call")
        events.register("after-call.*.*", self._after_call, unique_id=f"{_REQUEST}-{id(self)}-response")

    def detach(self, client: Any) -> None:
        events = client.meta.events
        events.unregister("before-parameter-build.*.*", unique_id=f"{_PARAMS}-{id(self)}")
        events.unregister("before-call.*.*", unique_id=f"{_REQUEST}-{id(self)}-call")
        events.unregister("after-call.*.*", unique_id=f"{_REQUEST}-{id(self)}-response")

    # botocore hooks ------------------------------------------------------------------------

    def _keep_params(self, params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_PARAMS] = dict(params)

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if not self.active:
            return
        request = AwsRequest(model.service_model.service_name, model.name, context.get(_PARAMS, {}))
        context[_REQUEST] = request
        self.record(request)

    def _after_call(self, parsed: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        request = context.pop(_REQUEST, None)
        if request is not None:
            request.response = parsed
            self.responded(request)
