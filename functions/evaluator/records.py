"""Stream records as the evaluator sees them: parsed once, with the IDs its log lines and reports name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from functions.core.conversion import MalformedRecordError, parse_change
from functions.core.model import ConversionChange


class RecordItem(NamedTuple):  # one per record: a named tuple, made with `tuple.__new__` below
    """One stream record of a batch, parsed."""

    position: int  # in the batch
    record: Mapping[str, Any]
    change: ConversionChange | None  # None: nothing to evaluate (REMOVE, no status change, malformed)
    malformed_reason: str | None


def sequence_number(record: Mapping[str, Any]) -> str | None:
    stream = record.get("dynamodb")
    value = stream.get("SequenceNumber") if isinstance(stream, Mapping) else None
    return value if isinstance(value, str) else None


def record_ids(record: Mapping[str, Any]) -> dict[str, Any]:
    """`conversion_id` and `affiliate_id` of a record for the log, as far as its image has them (malformed too)."""
    stream = record.get("dynamodb")
    ids: dict[str, Any] = {}
    if not isinstance(stream, Mapping):
        return ids
    for image_key in ("NewImage", "OldImage"):
        image = stream.get(image_key)
        if not isinstance(image, Mapping):
            continue
        for name in ("conversion_id", "affiliate_id"):
            value = image.get(name)
            if name not in ids and isinstance(value, Mapping) and isinstance(value.get("S"), str):
                ids[name] = value["S"]
    return ids


_new_tuple = tuple.__new__  # as `RecordItem._make`, without its Python-level call


def parse_record(position: int, record: Mapping[str, Any]) -> RecordItem:
    try:
        change = parse_change(record)
    except MalformedRecordError as exc:
        return RecordItem(position, record, None, exc.reason)
    # `is_status_change`, inline: only a change of status can fire.
    if change is not None and change.conversion.status == change.previous_status:
        change = None
    return _new_tuple(RecordItem, (position, record, change, None))
