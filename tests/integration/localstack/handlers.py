"""Tiny Lambda handlers the poller tests invoke by handler string, with state the tests inspect."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Behaviour:
    fail_items: set[str] = field(default_factory=set)  # item identifiers to report once each
    raise_times: int = 0  # raise on this many invocations
    always_raise: bool = False
    malformed: bool = False  # answer with an empty itemIdentifier
    calls: list[dict[str, Any]] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)


STATE = Behaviour()


def reset() -> Behaviour:
    global STATE
    STATE = Behaviour()
    return STATE


def _invoke(event: dict[str, Any], context: Any, identifier: str) -> dict[str, Any]:
    STATE.calls.append(event)
    STATE.contexts.append(context)
    if STATE.always_raise:
        raise RuntimeError("handler crashed")
    if STATE.raise_times > 0:
        STATE.raise_times -= 1
        raise RuntimeError("handler crashed")
    if STATE.malformed:
        return {"batchItemFailures": [{"itemIdentifier": ""}]}
    failures = []
    for record in event["Records"]:
        item = identifier_of(record, identifier)
        if item in STATE.fail_items:
            STATE.fail_items.discard(item)
            failures.append({"itemIdentifier": item})
    return {"batchItemFailures": failures}


def identifier_of(record: dict[str, Any], identifier: str) -> str:
    if identifier == "sequence":
        return str(record["dynamodb"]["SequenceNumber"])
    return str(record["messageId"])


def on_stream(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _invoke(event, context, "sequence")


def on_queue(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _invoke(event, context, "message")
