"""HTTP routes of a postback's deliveries (contract §5): the delivery log and the test fire.

Trigger: API Gateway → the API Lambda (`app.app`), registered on the shared `api` blueprint
(`app.py` imports this module). Authorization is that of the postback: an admin may use any, an
affiliate only its own; another affiliate's postback is a 404 (`PostbackService.get`).

- `GET /postbacks/{id}/deliveries?limit=&cursor=`: newest first, `limit` 1-100 (default 50),
  `next_cursor` null on the last page. Test fires appear with `"test": true`.
- `POST /postbacks/{id}/test`: the body (optional) is a JSON object of conversion-record
  attributes (contract §3) to use instead of the sample's; `null` removes an optional one. The
  URL is rendered and fetched at once through the same pinned HTTP client as the sender (same
  egress guard, timeouts, no redirects). A disabled postback can be test-fired. The answer is
  200 whatever the tracker said: the outcome is in the body.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from chalice.app import Response
from pydantic import ValidationError

from functions import bootstrap
from functions.api.blueprint import api
from functions.api.errors import maps_errors
from functions.api.pagination import decode_cursor, encode_cursor, parse_limit
from functions.api.routes import (
    JSON_CONTENT_TYPES,
    PROTECTED,
    caller,
    current_request,
    json_body,
    json_response,
    known_query,
    query_param,
)
from functions.api.schemas import (
    DeliveryAttemptOut,
    DeliveryList,
    DeliveryOut,
    TestConversion,
    TestFireResult,
    TestOutcome,
)
from functions.api.service import field_name
from functions.core.conversion import normalise_status
from functions.core.model import CONVERSION_STATUSES, CONVERSION_TYPE_PATTERN, Delivery
from functions.core.rendering import RenderError
from functions.core.validation import FieldError, ValidationFailed
from functions.storage.delivery_attempts import PAGE_KEY_ATTRIBUTES

if TYPE_CHECKING:
    # Annotations only: the sender's stack (urllib3) is loaded by the test fire when it runs.
    from functions.sender.service import ConversionValue

REQUIRED_ATTRIBUTES = ("conversion_id", "offer_id", "conversion_type", "status")
MAX_ATTRIBUTE_LENGTH = 1024


def delivery_out(record: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=record.delivery_id,
        conversion_id=record.conversion_id,
        status=record.conversion_status,
        url=record.url,
        state=record.state.value,
        reason=record.reason,
        attempts=[
            DeliveryAttemptOut(
                number=attempt.number,
                at=attempt.at,
                outcome=attempt.outcome,
                status_code=attempt.status_code,
                duration_ms=attempt.duration_ms,
                error=attempt.error,
                response_excerpt=attempt.response_excerpt,
            )
            for attempt in record.attempts
        ],
        next_attempt_at=record.next_attempt_at,
        created_at=record.created_at,
        test=record.is_test,
    )


def _amount(name: str, value: int | float, errors: list[FieldError]) -> Decimal | None:
    if isinstance(value, float) and not math.isfinite(value):
        errors.append(FieldError(name, "must be a finite number"))
        return None
    return Decimal(str(value))


def parse_test_body(body: Any) -> dict[str, ConversionValue | None]:
    """The conversion attributes a test-fire body gives; `ValidationFailed` naming every bad field.

    A value of None removes an optional attribute from the sample.
    """
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    errors: list[FieldError] = []
    try:
        values: dict[str, Any] = TestConversion.model_validate(body).model_dump(exclude_unset=True)
    except ValidationError as exc:
        for error in exc.errors():
            # Keep the attribute and list indexes; drop the union-member tags (`payout.int`).
            location = error["loc"]
            name = field_name((location[0], *(part for part in location[1:] if isinstance(part, int))))
            if name not in {known.field for known in errors}:
                message = "unknown field" if error["type"] == "extra_forbidden" else str(error["msg"])
                errors.append(FieldError(name, message))
        # The fields pydantic did not report are well typed: check their values too.
        bad = {str(error["loc"][0]) for error in exc.errors()}
        values = {
            name: value for name, value in body.items() if name in TestConversion.model_fields and name not in bad
        }
    overrides: dict[str, ConversionValue | None] = {}
    for name, value in values.items():
        if value is None:
            if name in REQUIRED_ATTRIBUTES:
                errors.append(FieldError(name, "must not be null"))
            overrides[name] = None
        elif isinstance(value, int | float):
            overrides[name] = _amount(name, value, errors)
        elif isinstance(value, str):
            if len(value) > MAX_ATTRIBUTE_LENGTH:
                errors.append(FieldError(name, f"must be at most {MAX_ATTRIBUTE_LENGTH} characters"))
            elif name in REQUIRED_ATTRIBUTES and not value.strip():
                errors.append(FieldError(name, "must not be empty"))
            overrides[name] = value
        else:
            overrides[name] = [str(item) for item in value]
    status = overrides.get("status")
    if isinstance(status, str):
        normalised = normalise_status(status)
        if normalised not in CONVERSION_STATUSES:
            errors.append(FieldError("status", f"must be one of {', '.join(CONVERSION_STATUSES)}"))
        overrides["status"] = normalised
    conversion_type = overrides.get("conversion_type")
    if isinstance(conversion_type, str) and not CONVERSION_TYPE_PATTERN.match(conversion_type):
        errors.append(FieldError("conversion_type", "must be 1-64 characters of a-z, 0-9, _ and -"))
    if errors:
        raise ValidationFailed(errors)
    return overrides


def _optional_json_body() -> Any:
    raw = current_request().raw_body
    if not raw or not raw.strip():
        return {}
    return json_body()


def _present(overrides: Mapping[str, ConversionValue | None]) -> tuple[dict[str, ConversionValue], frozenset[str]]:
    given = {name: value for name, value in overrides.items() if value is not None}
    removed = frozenset(name for name, value in overrides.items() if value is None)
    return given, removed


@api.route("/postbacks/{id}/deliveries", methods=["GET"], **PROTECTED)
@maps_errors
def list_deliveries(id: str) -> Response:
    who = caller()
    postback = bootstrap.postback_service().get(who, id)
    known_query("limit", "cursor")
    limit = parse_limit(query_param("limit"))
    query = {"list": "deliveries", "postback_id": postback.id}
    start_key = decode_cursor(query_param("cursor"), query, PAGE_KEY_ATTRIBUTES, {"postback_id": postback.id})
    page = bootstrap.delivery_attempts().page_for_postback(postback.id, limit, start_key)
    listing = DeliveryList(
        items=[delivery_out(record) for record in page.items],
        next_cursor=None if page.last_key is None else encode_cursor(query, page.last_key),
    )
    return json_response(listing.model_dump_json())


@api.route("/postbacks/{id}/test", methods=["POST"], content_types=JSON_CONTENT_TYPES, **PROTECTED)
@maps_errors
def fire_postback_test(id: str) -> Response:
    who = caller()
    postback = bootstrap.postback_service().get(who, id)
    given, removed = _present(parse_test_body(_optional_json_body()))
    try:
        outcome = bootstrap.postback_test_fire().fire(postback, given, removed)
    except RenderError as exc:
        raise ValidationFailed([FieldError("body", f"the values cannot be placed in the URL: {exc}")]) from exc
    result = TestFireResult(
        delivery_id=outcome.delivery_id,
        url=outcome.url,
        outcome=TestOutcome(
            status_code=outcome.status_code,
            duration_ms=outcome.duration_ms,
            error=outcome.error,
            classification=outcome.classification.outcome.value,
            delivered=outcome.delivered,
        ),
    )
    return json_response(result.model_dump_json())
