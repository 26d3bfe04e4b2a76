"""HTTP routes of the postbacks API (docs/contract.md §5), registered on the `api` blueprint.

Trigger: API Gateway (REST) → the API Lambda (`app.app`), or `chalice local` / the test client.
Each route parses the request, authenticates the caller, calls `PostbackService` and maps the
result; errors become problem documents (`functions.api.errors`). `/health` and
`/openapi.json` need no token; everything else does (`Authorization: Bearer <JWT>`).

The delivery log and test fire (`functions.api.delivery_routes`) register on the same blueprint
and reuse `caller()`, `json_body()` and the helpers of `errors`, `pagination` and `bodies`.
"""

from __future__ import annotations

import json
from typing import Any

from chalice.app import Request, Response

from functions import bootstrap, settings
from functions.api.auth import authenticate, jwt_authorizer
from functions.api.blueprint import api
from functions.api.bodies import (
    dumps,
    health_body,
    parameter_catalogue_body,
    postback_body,
    postback_list_body,
    signing_secret_body,
)
from functions.api.errors import BodyTooLarge, MalformedRequest, UnsupportedMediaType, maps_errors
from functions.api.host_status import host_pauses
from functions.api.links import public_path
from functions.api.service import Principal
from functions.core.model import CONVERSION_STATUSES, Postback
from functions.core.placeholders import CATALOGUE
from functions.core.validation import FieldError, ValidationFailed

JSON_CONTENT_TYPES = ["application/json", "application/merge-patch+json"]
# The largest request body read (413 beyond): the largest valid postback (500 offer IDs of 128
# characters and a 2,048-character URL) is about 70 KB, so 256 KiB leaves room and bounds the
# parser's work. Nesting deeper than the parser's recursion limit is a 400, never a 500.
MAX_BODY_BYTES = 256 * 1024
# Routes that need a token; API Gateway runs the authorizer in front of them when packaged with it.
PROTECTED: dict[str, Any] = {"authorizer": jwt_authorizer} if settings.API_AUTHORIZER else {}


def current_request() -> Request:
    request = api.current_request
    if request is None:
        raise RuntimeError("no current request: a route was called outside a request")
    return request


def caller() -> Principal:
    """The authenticated caller of the current request (401 problem if there is none)."""
    return authenticate(current_request(), bootstrap.token_rules())


def json_body() -> Any:
    """The request body parsed as JSON (400 problem if it is missing or not JSON)."""
    request = current_request()
    raw = request.raw_body
    if raw and len(raw) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"The body must be at most {MAX_BODY_BYTES} bytes.")
    if not raw or not raw.strip():
        raise MalformedRequest("A JSON body is required.")
    content_type = (request.headers.get("content-type") or "application/json").split(";", 1)[0].strip().lower()
    if content_type not in JSON_CONTENT_TYPES:
        raise UnsupportedMediaType("Send the body as application/json.")
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise MalformedRequest("The body is nested too deeply.") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest("The body is not valid JSON.") from exc


def query_param(name: str) -> str | None:
    params = current_request().query_params
    value = params.get(name) if params is not None else None
    return value if isinstance(value, str) else None


def known_query(*names: str) -> None:
    """Refuse query parameters the route does not define (400 naming each), as unknown body fields are."""
    params = current_request().query_params
    unknown = [name for name in (params.keys() if params is not None else ()) if name not in names]
    if unknown:
        raise ValidationFailed([FieldError(name, "unknown query parameter") for name in unknown])


def etag(version: int) -> str:
    return f'"{version}"'


def postback_response(postback: Postback, status_code: int = 200, created: bool = False) -> Response:
    headers: dict[str, str | list[str]] = {"ETag": etag(postback.version), "Content-Type": "application/json"}
    if created:
        headers["Location"] = public_path(current_request(), f"/postbacks/{postback.id}")
    paused_until = host_pauses([postback])[postback.id]
    return Response(body=dumps(postback_body(postback, paused_until)), status_code=status_code, headers=headers)


def json_response(body: str, status_code: int = 200) -> Response:
    return Response(body=body, status_code=status_code, headers={"Content-Type": "application/json"})


@api.route("/health", methods=["GET"])
def health() -> Response:
    return json_response(dumps(health_body("ok")))


@api.route("/openapi.json", methods=["GET"])
def openapi() -> Response:
    from functions.api.openapi import openapi_document  # pydantic's JSON-schema machinery, for this route only

    return json_response(json.dumps(openapi_document()))


@api.route("/parameters", methods=["GET"], **PROTECTED)
@maps_errors
def parameters() -> Response:
    caller()
    return json_response(dumps(parameter_catalogue_body(CATALOGUE, CONVERSION_STATUSES)))


@api.route("/postbacks", methods=["POST"], content_types=JSON_CONTENT_TYPES, **PROTECTED)
@maps_errors
def create_postback() -> Response:
    who = caller()
    postback = bootstrap.postback_service().create(who, json_body())
    return postback_response(postback, 201, created=True)


@api.route("/postbacks", methods=["GET"], **PROTECTED)
@maps_errors
def list_postbacks() -> Response:
    who = caller()
    known_query("affiliate_id", "offer_id", "limit", "cursor")
    result = bootstrap.postback_service().list(
        who,
        affiliate_id=query_param("affiliate_id"),
        offer_id=query_param("offer_id"),
        limit=query_param("limit"),
        cursor=query_param("cursor"),
    )
    paused = host_pauses(result.items)
    items = [postback_body(postback, paused[postback.id]) for postback in result.items]
    return json_response(dumps(postback_list_body(items, result.next_cursor)))


@api.route("/postbacks/{id}", methods=["GET"], **PROTECTED)
@maps_errors
def get_postback(id: str) -> Response:
    who = caller()
    return postback_response(bootstrap.postback_service().get(who, id))


@api.route("/postbacks/{id}", methods=["PATCH"], content_types=JSON_CONTENT_TYPES, **PROTECTED)
@maps_errors
def update_postback(id: str) -> Response:
    who = caller()
    if_match = current_request().headers.get("if-match")
    postback = bootstrap.postback_service().update(who, id, json_body(), if_match)
    return postback_response(postback)


@api.route("/postbacks/{id}", methods=["DELETE"], **PROTECTED)
@maps_errors
def delete_postback(id: str) -> Response:
    who = caller()
    bootstrap.postback_service().delete(who, id)
    return Response(body="", status_code=204)


def signing_secret_response(secret: str) -> Response:
    # Never cached by a browser or a proxy.
    headers: dict[str, str | list[str]] = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return Response(body=dumps(signing_secret_body(secret)), status_code=200, headers=headers)


@api.route("/postbacks/{id}/signing-secret", methods=["GET"], **PROTECTED)
@maps_errors
def get_signing_secret(id: str) -> Response:
    who = caller()
    return signing_secret_response(bootstrap.postback_service().signing_secret(who, id))


@api.route("/postbacks/{id}/signing-secret", methods=["POST"], content_types=JSON_CONTENT_TYPES, **PROTECTED)
@maps_errors
def rotate_signing_secret(id: str) -> Response:
    """Rotate: a request body, if any, is ignored."""
    who = caller()
    return signing_secret_response(bootstrap.postback_service().rotate_signing_secret(who, id))
