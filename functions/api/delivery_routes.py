"""HTTP routes of a postback's deliveries (docs/contract.md §5): the delivery log and the test fire.

Trigger: API Gateway → the API Lambda (`app.app`), registered on the shared `api` blueprint
(`app.py` imports this module). Each route authenticates the caller, hands the request's values to
`functions.api.delivery_service.DeliveryService` (authorization, checks, the work) and maps the
result; errors become problem documents (`functions.api.errors`).

- `GET /postbacks/{id}/deliveries?limit=&cursor=`: newest first, `limit` 1-100 (default 50),
  `next_cursor` null on the last page. Test fires appear with `"test": true`.
- `POST /postbacks/{id}/test`: the body (optional) is a JSON object of conversion-record
  attributes (docs/contract.md §3) to use instead of the sample's; `null` removes an optional one.
  The URL is rendered and fetched at once through the same pinned HTTP client as the sender (same
  egress guard, timeouts, no redirects). A disabled postback can be test-fired. The answer is
  200 whatever the tracker said: the outcome is in the body.
"""

from __future__ import annotations

from typing import Any

from chalice.app import Response

from functions import bootstrap
from functions.api.blueprint import api
from functions.api.bodies import delivery_list_body, dumps, fire_result_body
from functions.api.errors import maps_errors
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


def _optional_json_body() -> Any:
    raw = current_request().raw_body
    if not raw or not raw.strip():
        return {}
    return json_body()


@api.route("/postbacks/{id}/deliveries", methods=["GET"], **PROTECTED)
@maps_errors
def list_deliveries(id: str) -> Response:
    known_query("limit", "cursor")
    log = bootstrap.delivery_service().log(caller(), id, limit=query_param("limit"), cursor=query_param("cursor"))
    return json_response(dumps(delivery_list_body(log.items, log.next_cursor)))


@api.route("/postbacks/{id}/test", methods=["POST"], content_types=JSON_CONTENT_TYPES, **PROTECTED)
@maps_errors
def fire_postback_test(id: str) -> Response:
    outcome = bootstrap.delivery_service().test(caller(), id, _optional_json_body)
    result = fire_result_body(
        outcome.delivery_id,
        outcome.url,
        status_code=outcome.status_code,
        duration_ms=outcome.duration_ms,
        error=outcome.error,
        classification=outcome.classification.outcome.value,
        delivered=outcome.delivered,
    )
    return json_response(dumps(result))
