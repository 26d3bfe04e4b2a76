"""Hot paths of moto's SQS and DynamoDB backends made cheap, so the local stack keeps up with its load targets.

Profiled under 25 conversions/s (`python -m bench.e2e_latency`), the moto server was the busiest
process of the local stack, and a fifth of its time went to two things that grow with the number of
messages in a queue, not with the work asked of it:

- every clock reading of a message (`visible`, `delayed`, the receive loop) goes through
  `moto.core.utils.unix_time`, which builds two `datetime` objects to compute what `time.time()`
  returns; `Queue.messages` reads the clock twice per message on every receive;
- `ReceiveMessage` checks each message it returns against the queue's retention period through
  `get_queue_attributes`, which computes *every* attribute of the queue — including the three
  approximate message counts, each a pass over all messages. One receive was O(messages²): as the
  local queue backed up, each receive got slower, and the backlog grew faster.

With those gone, DynamoDB's `UpdateItem` was most of what was left (the sender makes two per
delivery), and two parts of it did the same work on every request:

- the update expression is parsed twice per request (once to check the names and values it uses,
  once to apply it), and the sender's expressions are a handful of strings that repeat;
- every response goes through moto's generic response serializer, which walks the service model
  member by member: an item's attribute values are the recursive `AttributeValue` shape, ten members
  per value, so one `ReturnValues=ALL_NEW` item of 700 bytes took longer to serialise than the
  update took to apply, and a `GetRecords` page of 100 images took ~100 ms.

`apply()` replaces these with equivalents: the SQS models read the clock with `time.time()` (moto's
`unix_time()` is the same value, computed in UTC through `datetime`); the retention check reads
the one attribute it needs; parsed update expressions are kept by their text (the parse is a pure
function of it, and moto deep-copies the tree before it validates or applies it); and an attribute
value that is already in DynamoDB's wire form (`S`, `N`, `BOOL`, `NULL`, `SS`, `NS`, `M`, `L` of
those) is written to the JSON response as it is — which is what the serializer's walk produces
for it. Anything else (binary values, non-string numbers) takes moto's own path. Nothing else
changes: what the services answer is the same (`tests/integration/local/test_moto_speedups.py`
holds the patched paths to moto's own output). Applied in the moto server's process only
(`local/moto_server.py`), never in the functions.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime
from typing import Any

_applied = False


def _unix_time(dt: datetime | None = None) -> float:
    """Seconds since the epoch: `time.time()` for now, moto's own conversion for a given datetime."""
    if dt is None:
        return time.time()
    from moto.core.utils import unix_time

    return unix_time(dt)


def _unix_time_millis(dt: datetime | None = None) -> float:
    return _unix_time(dt) * 1000.0


def _is_message_valid_based_on_retention_period(backend: Any, queue_name: str, message: Any) -> bool:
    """moto's check, reading the queue's retention period instead of every attribute of the queue."""
    retention_period = int(backend.get_queue(queue_name).message_retention_period)
    return bool(retention_period + message.sent_timestamp / 1000 > time.time())


_SCALAR_KINDS = {"S": str, "N": str, "BOOL": bool, "NULL": bool}


def is_wire_attribute_value(value: Any) -> bool:
    """Whether `value` is a DynamoDB attribute value already in its JSON wire form, with no binary."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    scalar = _SCALAR_KINDS.get(kind)
    if scalar is not None:
        return type(inner) is scalar
    if kind in ("SS", "NS"):
        return type(inner) is list and all(type(member) is str for member in inner)
    if kind == "M":
        return type(inner) is dict and all(
            type(name) is str and is_wire_attribute_value(member) for name, member in inner.items()
        )
    if kind == "L":
        return type(inner) is list and all(is_wire_attribute_value(member) for member in inner)
    return False


def _cache_update_expression_parses() -> None:
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    parse = UpdateExpressionParser.make.__func__
    cached = functools.lru_cache(maxsize=1024)(lambda cls, expression: parse(cls, expression))
    UpdateExpressionParser.make = classmethod(cached)


def _write_wire_attribute_values_as_they_are() -> None:
    from moto.core.serialize import BaseJSONSerializer

    serialize_structure = BaseJSONSerializer._serialize_type_structure

    def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if shape.name == "AttributeValue" and is_wire_attribute_value(value):
            self._default_serialize(serialized, value, shape, key)
            return
        serialize_structure(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = _serialize_type_structure


def apply() -> None:
    """Install the replacements in moto's SQS models (idempotent)."""
    global _applied
    if _applied:
        return
    from moto.sqs import models

    for name in ("unix_time", "unix_time_millis", "SQSBackend"):
        if not hasattr(models, name):
            raise RuntimeError(f"moto.sqs.models has no {name}: check local/moto_speedups.py against this moto")
    if not hasattr(models.SQSBackend, "is_message_valid_based_on_retention_period"):
        raise RuntimeError("moto's SQSBackend changed: check local/moto_speedups.py against this moto")
    models.unix_time = _unix_time
    models.unix_time_millis = _unix_time_millis
    models.SQSBackend.is_message_valid_based_on_retention_period = _is_message_valid_based_on_retention_period
    _cache_update_expression_parses()
    _write_wire_attribute_values_as_they_are()
    _applied = True
