"""Counting AWS requests with botocore event hooks, and estimating DynamoDB capacity units.

pynamodb builds one botocore session and client per model class and thread, and boto3 builds its
own for SQS; so the counter wraps `botocore.session.Session.create_client` while installed and
registers `before-call` / `after-call` hooks on every client created meanwhile. Nothing is stubbed:
each counted call still goes to moto (or the moto server) as it would to AWS.

Capacity units follow DynamoDB's published rules, computed from the item sizes seen in the
requests and responses (moto does not meter): a write costs ceil(size / 1 KiB) on the table plus
the same on every GSI whose keys the item carries (projections here are ALL); an eventually
consistent read costs ceil(size / 4 KiB) / 2 per request, a strongly consistent one twice that.
Sizes of updated items are taken from the last put of the same key (the update's own values are
added), which is what DynamoDB bills for an update of that item.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import botocore.session

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


def attribute_value_size(value: Mapping[str, Any]) -> int:
    """The billed size of one DynamoDB attribute value in the low-level JSON form ({"S": ...})."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        digits = str(inner).lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(inner) if isinstance(inner, bytes | bytearray) else len(str(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_value_size({kind[0]: element}) for element in inner)
    if kind == "L":
        return 3 + sum(1 + attribute_value_size(element) for element in inner)
    if kind == "M":
        return 3 + sum(len(name.encode()) + 1 + attribute_value_size(element) for name, element in inner.items())
    raise ValueError(f"unknown attribute value type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """The billed size of an item: attribute names plus values."""
    return sum(len(name.encode()) + attribute_value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


@dataclass(frozen=True)
class TableKeys:
    """The key attributes of a table and of each of its global secondary indexes."""

    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()


@dataclass
class Usage:
    """What was counted: requests by (service, operation) and DynamoDB capacity by table."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    write_units: Counter[str] = field(default_factory=Counter)
    read_units: dict[str, float] = field(default_factory=dict)

    def total(self, service: str | None = None) -> int:
        return sum(count for (svc, _), count in self.requests.items() if service is None or svc == service)

    def operation(self, operation: str, service: str | None = None) -> int:
        return sum(
            count
            for (svc, op), count in self.requests.items()
            if op == operation and (service is None or svc == service)
        )

    def by_operation(self) -> dict[str, int]:
        return {f"{svc}:{op}": count for (svc, op), count in sorted(self.requests.items())}

    def minus(self, earlier: Usage) -> Usage:
        return Usage(
            requests=self.requests - earlier.requests,
            write_units=self.write_units - earlier.write_units,
            read_units={t: u - earlier.read_units.get(t, 0.0) for t, u in self.read_units.items()},
        )

    def copy(self) -> Usage:
        return Usage(Counter(self.requests), Counter(self.write_units), dict(self.read_units))

    def plus(self, other: Usage) -> Usage:
        reads = dict(self.read_units)
        for table, units in other.read_units.items():
            reads[table] = reads.get(table, 0.0) + units
        return Usage(self.requests + other.requests, self.write_units + other.write_units, reads)

    def add_read(self, table: str, units: float) -> None:
        self.read_units[table] = self.read_units.get(table, 0.0) + units


class RequestCounter:
    """Counts every AWS request made by clients created while it is installed.

    `tables` gives each table's key attributes and the key attributes of each of its GSIs, so a
    write is billed on every index the item appears in. Counting can be paused
    (`enabled = False`) while a benchmark seeds its data.
    """

    def __init__(self, tables: Mapping[str, TableKeys] | None = None) -> None:
        self.usage = Usage()
        self.enabled = True
        self._tables = dict(tables or {})
        self._sizes: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def set_tables(self, tables: Mapping[str, TableKeys]) -> None:
        self._tables = dict(tables)

    def snapshot(self) -> Usage:
        with self._lock:
            return self.usage.copy()

    def reset(self) -> None:
        with self._lock:
            self.usage = Usage()

    def attach(self, client: Any) -> None:
        """Register the hooks on one client's event system."""
        service = client.meta.service_model.service_name
        client.meta.events.register(f"before-call.{service}.*", self._before_call)
        if service == "dynamodb":
            client.meta.events.register(f"before-parameter-build.{service}.*", self._before_parameter_build)
            client.meta.events.register(f"after-call.{service}.*", self._after_call)

    @contextmanager
    def installed(self) -> Iterator[RequestCounter]:
        """Attach to every botocore client created inside the block."""
        original = botocore.session.Session.create_client
        counter = self

        def create_client(session: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            counter.attach(client)
            return client

        botocore.session.Session.create_client = create_client
        try:
            yield self
        finally:
            botocore.session.Session.create_client = original

    # botocore hooks -------------------------------------------------------------------------

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        """Counts the request (once per API call; botocore's own retries are not counted)."""
        if not self.enabled:
            return
        with self._lock:
            self.usage.requests[(model.service_model.service_name, model.name)] += 1

    def _before_parameter_build(self, model: Any, params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        """Bills writes from the API parameters (before-call only sees the serialised request)."""
        if not self.enabled:
            return
        with self._lock:
            context["bench_table"] = str(params.get("TableName", "?"))
            context["bench_consistent"] = bool(params.get("ConsistentRead", False))
            self._bill_write(model.name, params)

    def _after_call(self, model: Any, parsed: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        if not self.enabled or "bench_table" not in context:
            return
        table = str(context["bench_table"])
        consistent = bool(context.get("bench_consistent", False))
        with self._lock:
            if model.name in ("Query", "Scan"):
                size = sum(item_size(item) for item in parsed.get("Items", []))
                self.usage.add_read(table, read_units(size, consistent))
            elif model.name == "GetItem":
                size = item_size(parsed.get("Item", {}))
                self.usage.add_read(table, read_units(size, consistent))
            elif model.name == "BatchGetItem":
                for name, items in parsed.get("Responses", {}).items():
                    self.usage.add_read(name, read_units(sum(item_size(item) for item in items), consistent))

    def _bill_write(self, operation: str, params: Mapping[str, Any]) -> None:
        table = str(params.get("TableName", "?"))
        if operation == "PutItem":
            item = params.get("Item", {})
            size = item_size(item)
            self._sizes[(table, self._key_of(table, item))] = size
            self.usage.write_units[table] += write_units(size) * (1 + self._indexes_of(table, item))
        elif operation in ("UpdateItem", "DeleteItem"):
            key = params.get("Key", {})
            values = params.get("ExpressionAttributeValues", {})
            size = self._sizes.get((table, self._key_of(table, key)), item_size(key)) + sum(
                attribute_value_size(value) for value in values.values()
            )
            # ALL projections: an updated item is rewritten on each index it belongs to; the
            # key alone cannot say which, so the table's indexes are all counted (an upper bound).
            indexes = len(self._tables[table].indexes) if table in self._tables else 0
            self.usage.write_units[table] += write_units(size) * (1 + indexes)
        elif operation == "BatchWriteItem":
            for table_name, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    item = request.get("PutRequest", {}).get("Item") or request.get("DeleteRequest", {}).get("Key", {})
                    self.usage.write_units[table_name] += write_units(item_size(item)) * (
                        1 + self._indexes_of(table_name, item)
                    )
        elif operation == "TransactWriteItems":
            for entry in params.get("TransactItems", []):
                for kind, body in entry.items():
                    if kind == "ConditionCheck":
                        continue
                    target = str(body.get("TableName", "?"))
                    item = body.get("Item") or body.get("Key", {})
                    # Transactions are billed twice (prepare and commit).
                    self.usage.write_units[target] += (
                        2 * write_units(item_size(item)) * (1 + self._indexes_of(target, item))
                    )

    def _indexes_of(self, table: str, item: Mapping[str, Any]) -> int:
        info = self._tables.get(table)
        if info is None:
            return 0
        return sum(1 for keys in info.indexes if all(key in item for key in keys))

    def _key_of(self, table: str, item: Mapping[str, Any]) -> str:
        info = self._tables.get(table)
        names = info.key if info is not None else tuple(sorted(item))
        return repr([(name, repr(item.get(name))) for name in names])


def forget_cached_clients() -> None:
    """Drop the botocore clients pynamodb caches on the model classes.

    A client keeps the hooks of the counter that was installed when it was created, so each
    benchmark that counts starts with fresh connections (as a cold Lambda container would).
    """
    from functions.storage.models import DeliveryModel, PostbackModel

    for model in (PostbackModel, DeliveryModel):
        model._connection = None
