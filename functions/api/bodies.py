"""The JSON bodies the API sends (docs/contract.md §5), built as plain dicts and serialised with `json`.

The response models of `functions.api.schemas` document these bodies (the OpenAPI document); the
routes do not build them, so that no route loads pydantic to answer (it costs about half of the
API's cold start, docs/performance.md). Each function here gives the fields of its model in the
model's order with the same values, and `dumps` writes what `model_dump_json()` wrote: compact,
UTF-8 text unescaped. `tests/unit/api/test_bodies.py` holds each body to its model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from functions.core.model import Attempt, Delivery, Postback
from functions.core.placeholders import Placeholder
from functions.core.validation import FieldError

JsonObject = dict[str, Any]


def dumps(body: JsonObject) -> str:
    """The body as the API sends it: `{"a":1}`, no spaces, non-ASCII characters as themselves."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def postback_body(postback: Postback, host_paused_until: str | None = None) -> JsonObject:
    """`PostbackOut`: the postback resource."""
    return {
        "id": postback.id,
        "affiliate_id": postback.affiliate_id,
        "scope": postback.scope.value,
        "included_offer_ids": list(postback.included_offer_ids),
        "excluded_offer_ids": list(postback.excluded_offer_ids),
        "conversion_types": list(postback.conversion_types),
        "conversion_statuses": list(postback.conversion_statuses),
        "url": postback.url,
        "enabled": postback.enabled,
        "delay_seconds": postback.delay_seconds,
        "created_at": postback.created_at,
        "updated_at": postback.updated_at,
        "version": postback.version,
        "created_by": postback.created_by,
        "updated_by": postback.updated_by,
        "last_success_at": postback.last_success_at,
        "consecutive_failures": postback.consecutive_failures,
        "last_failure_reason": postback.last_failure_reason,
        "host_paused_until": host_paused_until,
    }


def postback_list_body(items: Iterable[JsonObject], next_cursor: str | None) -> JsonObject:
    """`PostbackList`."""
    return {"items": list(items), "next_cursor": next_cursor}


def signing_secret_body(secret: str) -> JsonObject:
    """`SigningSecretOut`."""
    return {"secret": secret}


def health_body(status: str) -> JsonObject:
    """`Health`."""
    return {"status": status}


def parameter_catalogue_body(catalogue: Iterable[Placeholder], statuses: Sequence[str]) -> JsonObject:
    """`ParameterCatalogue`: the placeholders a URL may use and the conversion statuses."""
    return {
        "parameters": [
            {
                "name": placeholder.name,
                "label": placeholder.label,
                "description": placeholder.description,
                "restricted": placeholder.restricted,
            }
            for placeholder in catalogue
        ],
        "conversion_statuses": list(statuses),
    }


def problem_body(
    type_: str, title: str, status: int, detail: str, errors: Sequence[FieldError] | None = None
) -> JsonObject:
    """`Problem` (RFC 9457); `errors` is left out when there are none to give (not sent as null)."""
    body: JsonObject = {"type": type_, "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = [{"field": error.field, "message": error.message} for error in errors]
    return body


def _attempt_body(attempt: Attempt) -> JsonObject:
    """`DeliveryAttemptOut`."""
    return {
        "number": attempt.number,
        "at": attempt.at,
        "outcome": attempt.outcome,
        "status_code": attempt.status_code,
        "duration_ms": attempt.duration_ms,
        "error": attempt.error,
        "response_excerpt": attempt.response_excerpt,
    }


def delivery_body(record: Delivery) -> JsonObject:
    """`DeliveryOut`: one entry of a postback's delivery log."""
    return {
        "id": record.delivery_id,
        "conversion_id": record.conversion_id,
        "status": record.conversion_status,
        "url": record.url,
        "state": record.state.value,
        "reason": record.reason,
        "attempts": [_attempt_body(attempt) for attempt in record.attempts],
        "next_attempt_at": record.next_attempt_at,
        "created_at": record.created_at,
        "test": record.is_test,
        "host_paused_until": record.host_paused_until,
        "host_pause_waits": record.host_pause_waits,
    }


def delivery_list_body(records: Iterable[Delivery], next_cursor: str | None) -> JsonObject:
    """`DeliveryList`."""
    return {"items": [delivery_body(record) for record in records], "next_cursor": next_cursor}


def fire_result_body(
    delivery_id: str,
    url: str,
    *,
    status_code: int | None,
    duration_ms: int | None,
    error: str | None,
    classification: str,
    delivered: bool,
) -> JsonObject:
    """`TestFireResult`: the rendered URL and what the tracker answered (`TestOutcome`)."""
    return {
        "delivery_id": delivery_id,
        "url": url,
        "outcome": {
            "status_code": status_code,
            "duration_ms": duration_ms,
            "error": error,
            "classification": classification,
            "delivered": delivered,
        },
    }
