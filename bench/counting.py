"""AWS requests and DynamoDB capacity units of a benchmark, billed from the requests it records.

`RequestCounter` is the tests' recorder (`tests.support.aws_calls.AwsCallLog`) that keeps totals
instead of the requests: requests by (service, operation), and DynamoDB capacity units following
DynamoDB's published rules, computed from the item sizes seen in the requests and responses (moto
does not meter). A write costs ceil(size / 1 KiB) on the table plus the same on every GSI whose
keys the item carries (projections here are ALL); an eventually consistent read costs
ceil(size / 4 KiB) / 2 per request, a strongly consistent one twice that. Sizes of updated items
are taken from the last put of the same key (the update's own values are added), which is what
DynamoDB bills for an update of that item.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support.aws_calls import AwsCallLog, AwsRequest
from tests.support.aws_calls import forget_pynamodb_connections as forget_cached_clients

__all__ = ["RequestCounter", "TableKeys", "Usage", "forget_cached_clients"]

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


class RequestCounter(AwsCallLog):
    """Counts and bills every AWS request made by the clients it is attached to (`installed()`).

    Active from the start; `enabled = False` (or `paused()`) while a benchmark seeds its data.
    `tables` gives each table's key attributes and those of its GSIs, so a write is billed on every
    index the item appears in.
    """

    def __init__(self, tables: Mapping[str, TableKeys] | None = None) -> None:
        super().__init__(active=True)
        self.usage = Usage()
        self._tables = dict(tables or {})
        self._sizes: dict[tuple[str, str], int] = {}

    @property
    def enabled(self) -> bool:
        return self.active

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self.active = on

    def set_tables(self, tables: Mapping[str, TableKeys]) -> None:
        self._tables = dict(tables)

    def snapshot(self) -> Usage:
        with self._lock:
            return self.usage.copy()

    def record(self, request: AwsRequest) -> None:
        """Counts the request and bills a write from its parameters."""
        with self._lock:
            self.usage.requests[(request.service, request.operation)] += 1
            if request.service == "dynamodb":
                self._bill_write(request.operation, request.params)

    def responded(self, request: AwsRequest) -> None:
        """Bills a read on the bytes it returned."""
        if request.service != "dynamodb" or request.response is None:
            return
        parsed = request.response
        table = str(request.params.get("TableName", "?"))
        consistent = bool(request.params.get("ConsistentRead", False))
        with self._lock:
            if request.operation in ("Query", "Scan"):
                size = sum(item_size(item) for item in parsed.get("Items", []))
                self.usage.add_read(table, read_units(size, consistent))
            elif request.operation == "GetItem":
                self.usage.add_read(table, read_units(item_size(parsed.get("Item", {})), consistent))
            elif request.operation == "BatchGetItem":
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
