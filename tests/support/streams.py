"""Lambda-shaped DynamoDB stream records and events, built from plain Python dicts.

Chalice's test client has no DynamoDB stream event generator, and records read with GetRecords
differ from what Lambda delivers (no `eventSourceARN`; `ApproximateCreationDateTime` a datetime
instead of epoch seconds). These helpers build records exactly as Lambda does:

    stream = StreamBuilder()
    event = stream_event([
        stream.insert({"conversion_id": "c1", "affiliate_id": "aff-1", ..., "status": "pending"}),
        stream.modify(old, new),
        stream.remove(old),
    ])
    on_conversion_change(event, None)

The benchmarks build their workload's records with the same helpers (`bench/workload.py`). Records
read back with GetRecords are given Lambda's shape by `functions.invocation.lambda_stream_record`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

DEFAULT_STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/conversions/stream/2026-01-01T00:00:00.000"
DEFAULT_REGION = "us-east-1"
KEY_ATTRIBUTE = "conversion_id"


def attribute_value(value: Any) -> dict[str, Any]:
    """One Python value in DynamoDB's typed JSON (as in stream images)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": repr(value)}
    if isinstance(value, set | frozenset):
        if all(isinstance(item, str) for item in value):
            return {"SS": sorted(value)}
        return {"NS": sorted(str(item) for item in value)}
    if isinstance(value, list | tuple):
        return {"L": [attribute_value(item) for item in value]}
    if isinstance(value, Mapping):
        return {"M": image(value)}
    raise TypeError(f"no DynamoDB type for {type(value).__name__}")


def image(item: Mapping[str, Any]) -> dict[str, Any]:
    """A whole item in DynamoDB's typed JSON. Values already typed (`{"S": ...}`) pass through
    when wrapped in `Raw`, so malformed images can be built too."""
    return {name: value.typed if isinstance(value, Raw) else attribute_value(value) for name, value in item.items()}


class Raw:
    """An attribute value given in typed JSON as is, e.g. `Raw({"N": "7"})` for a mistyped status."""

    def __init__(self, typed: dict[str, Any]) -> None:
        self.typed = typed


def stream_record(
    event_name: str,
    *,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    sequence_number: str,
    created_at: float | int = 1_767_225_600,
    event_source_arn: str = DEFAULT_STREAM_ARN,
    keys: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One record as Lambda delivers it (epoch-seconds `ApproximateCreationDateTime`, ARN present)."""
    source = new if new is not None else old or {}
    if keys is None:
        keys = {KEY_ATTRIBUTE: source[KEY_ATTRIBUTE]} if KEY_ATTRIBUTE in source else {}
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": created_at,
        "Keys": image(keys),
        "SequenceNumber": sequence_number,
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        dynamodb["NewImage"] = image(new)
    if old is not None:
        dynamodb["OldImage"] = image(old)
    return {
        "eventID": f"event-{sequence_number}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": DEFAULT_REGION,
        "dynamodb": dynamodb,
        "eventSourceARN": event_source_arn,
    }


class StreamBuilder:
    """Records with increasing sequence numbers (and change times, unless given)."""

    def __init__(self, start_sequence: int = 100_000_000_000_000_000_000, start_time: float = 1_767_225_600) -> None:
        self._sequence = itertools.count(start_sequence)
        self.time = start_time
        self.event_source_arn = DEFAULT_STREAM_ARN

    def _next(self) -> str:
        return str(next(self._sequence))

    def record(
        self,
        event_name: str,
        *,
        new: Mapping[str, Any] | None = None,
        old: Mapping[str, Any] | None = None,
        at: float | None = None,
    ) -> dict[str, Any]:
        return stream_record(
            event_name,
            new=new,
            old=old,
            sequence_number=self._next(),
            created_at=self.time if at is None else at,
            event_source_arn=self.event_source_arn,
        )

    def insert(self, new: Mapping[str, Any], at: float | None = None) -> dict[str, Any]:
        return self.record("INSERT", new=new, at=at)

    def modify(self, old: Mapping[str, Any], new: Mapping[str, Any], at: float | None = None) -> dict[str, Any]:
        return self.record("MODIFY", new=new, old=old, at=at)

    def remove(self, old: Mapping[str, Any], at: float | None = None) -> dict[str, Any]:
        return self.record("REMOVE", old=old, at=at)


def stream_event(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A Lambda DynamoDB-stream event."""
    return {"Records": [dict(record) for record in records]}


def sequence_number_of(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def records_from(records: list[dict[str, Any]], sequence_number: str) -> list[dict[str, Any]]:
    """What Lambda sends again after a batch reported `sequence_number`: that record and every later one."""
    numbers = [sequence_number_of(record) for record in records]
    return records[numbers.index(sequence_number) :]
