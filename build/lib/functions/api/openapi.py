"""The OpenAPI 3.1 document of the API, generated from the pydantic models of `schemas`.

The same models parse the requests, so the description cannot drift from the validation.
Served without authentication at `GET /openapi.json`.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from functions.api import schemas
from functions.api.pagination import DEFAULT_LIMIT, MAX_LIMIT

REF = "#/components/schemas/{model}"
PROBLEM_JSON = "application/problem+json"

_MODELS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (schemas.PostbackCreate, "validation"),
    (schemas.PostbackPatch, "validation"),
    (schemas.TestConversion, "validation"),
    (schemas.PostbackOut, "serialization"),
    (schemas.PostbackList, "serialization"),
    (schemas.ParameterCatalogue, "serialization"),
    (schemas.Health, "serialization"),
    (schemas.Problem, "serialization"),
    (schemas.DeliveryList, "serialization"),
    (schemas.TestFireResult, "serialization"),
    (schemas.SigningSecretOut, "serialization"),
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref(model)}}}
    if headers:
        response["headers"] = headers
    return response


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _ref(schemas.Problem)}},
    }
    if headers:
        response["headers"] = headers
    return response


_STRING = {"schema": {"type": "string"}}
_ETAG = {"ETag": {"description": 'The version, quoted: "3"', **_STRING}}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
_ALLOW = {"Allow": {"description": "The methods this path supports", **_STRING}}
_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
    "description": "Postback ID",
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
}
_CURSOR = {
    "name": "cursor",
    "in": "query",
    "schema": {"type": "string"},
    "description": "`next_cursor` of the previous page, with the same filters (opaque: any other value is a 400)",
}
# Every operation can answer these.
_ALWAYS = {
    "405": _problem("The path does not support this method", _ALLOW),
    "500": _problem("Unexpected error"),
}
_AUTHENTICATED = {"401": _problem("Missing or invalid token", {"WWW-Authenticate": _STRING}), **_ALWAYS}
_BAD = {"400": _problem("Validation failed; `errors` names every bad field")}
_BODY_ERRORS = {
    **_BAD,
    "413": _problem("The body is too large"),
    "415": _problem("The body is not JSON"),
}
_NOT_FOUND = {"404": _problem("No such postback, or another affiliate's")}
_BUSY = {"503": _problem("Postbacks are being changed concurrently; nothing was written", _RETRY_AFTER)}
_TEST_FIRE_LIMIT = {"429": _problem("Too many test fires of this postback; wait and retry", _RETRY_AFTER)}

TAG_POSTBACKS = "Postbacks"
TAG_DELIVERIES = "Deliveries"
TAG_CATALOGUE = "Catalogue"
TAG_SERVICE = "Service"


def _operation(
    operation_id: str, tag: str, summary: str, responses: dict[str, Any], *, public: bool = False, **extra: Any
) -> dict[str, Any]:
    common = _ALWAYS if public else _AUTHENTICATED
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "responses": {**responses, **common},
        **extra,
    }
    if public:
        operation["security"] = []
    return operation


def _body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(model)}}}


def _paths() -> dict[str, Any]:
    return {
        "/health": {
            "get": _operation(
                "getHealth", TAG_SERVICE, "Liveness", {"200": _json(schemas.Health, "The API answers")}, public=True
            )
        },
        "/openapi.json": {
            "get": _operation(
                "getOpenApi",
                TAG_SERVICE,
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
                public=True,
            )
        },
        "/parameters": {
            "get": _operation(
                "getParameters",
                TAG_CATALOGUE,
                "The placeholder catalogue and the conversion statuses",
                {"200": _json(schemas.ParameterCatalogue, "The catalogue")},
            )
        },
        "/postbacks": {
            "post": _operation(
                "createPostback",
                TAG_POSTBACKS,
                "Create a postback",
                {
                    "201": _json(
                        schemas.PostbackOut,
                        "Created",
                        {**_ETAG, "Location": {"description": "The new postback's URL path", **_STRING}},
                    ),
                    **_BODY_ERRORS,
                    "403": _problem("Creating for another affiliate"),
                    "409": _problem("The affiliate has the maximum number of postbacks"),
                    **_BUSY,
                },
                requestBody=_body(schemas.PostbackCreate),
            ),
            "get": _operation(
                "listPostbacks",
                TAG_POSTBACKS,
                "List postbacks, newest first",
                {
                    "200": _json(schemas.PostbackList, "A page"),
                    **_BAD,
                    "403": _problem("An affiliate asked for another affiliate's postbacks"),
                },
                parameters=[
                    {
                        "name": "affiliate_id",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Admins: one affiliate's postbacks. Affiliates: only their own ID.",
                    },
                    {
                        "name": "offer_id",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Only postbacks whose scope covers this offer",
                    },
                    _LIMIT,
                    _CURSOR,
                ],
            ),
        },
        "/postbacks/{id}": {
            "parameters": [_ID],
            "get": _operation(
                "getPostback",
                TAG_POSTBACKS,
                "One postback",
                {"200": _json(schemas.PostbackOut, "The postback", _ETAG), **_NOT_FOUND},
            ),
            "patch": _operation(
                "updatePostback",
                TAG_POSTBACKS,
                "Change a postback (any subset of its mutable fields)",
                {
                    "200": _json(schemas.PostbackOut, "The changed postback", _ETAG),
                    **_BODY_ERRORS,
                    "403": _problem("The change is not allowed to this caller"),
                    **_NOT_FOUND,
                    "412": _problem("If-Match names a stale version"),
                    **_BUSY,
                },
                parameters=[
                    {
                        "name": "If-Match",
                        "in": "header",
                        "schema": {"type": "string"},
                        "description": 'The ETag read ("3"); the change is refused with 412 if it is stale',
                    }
                ],
                requestBody=_body(schemas.PostbackPatch),
            ),
            "delete": _operation(
                "deletePostback",
                TAG_POSTBACKS,
                "Delete a postback; it never fires again",
                {"204": {"description": "Deleted"}, **_NOT_FOUND, **_BUSY},
            ),
        },
        "/postbacks/{id}/deliveries": {
            "parameters": [_ID],
            "get": _operation(
                "listDeliveries",
                TAG_DELIVERIES,
                "The delivery log, newest first",
                {"200": _json(schemas.DeliveryList, "A page"), **_BAD, **_NOT_FOUND},
                parameters=[_LIMIT, _CURSOR],
            ),
        },
        "/postbacks/{id}/test": {
            "parameters": [_ID],
            "post": _operation(
                "testPostback",
                TAG_DELIVERIES,
                "Fire the postback now with a sample conversion",
                {
                    "200": _json(schemas.TestFireResult, "The rendered URL and the outcome"),
                    **_BODY_ERRORS,
                    **_NOT_FOUND,
                    **_TEST_FIRE_LIMIT,
                },
                requestBody=_body(schemas.TestConversion, required=False),
            ),
        },
        "/postbacks/{id}/signing-secret": {
            "parameters": [_ID],
            "get": _operation(
                "getSigningSecret",
                TAG_POSTBACKS,
                "The postback's signing secret (owner or admin)",
                {"200": _json(schemas.SigningSecretOut, "The secret (Cache-Control: no-store)"), **_NOT_FOUND},
            ),
            "post": _operation(
                "rotateSigningSecret",
                TAG_POSTBACKS,
                "Rotate the signing secret: GETs sent from now on are signed with the new one",
                {"200": _json(schemas.SigningSecretOut, "The new secret (Cache-Control: no-store)"), **_NOT_FOUND},
            ),
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, definitions = models_json_schema(_MODELS, ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Postbacks API",
            "version": "1.0.0",
            "description": (
                "Manage affiliate postbacks. Errors are RFC 9457 problem details (application/problem+json)."
            ),
        },
        "servers": [
            {"url": "/api", "description": "Behind the Postbacks page's distribution (same origin as the page)"},
            {"url": "/", "description": "The API's own address (API Gateway stage URL, or the local stack)"},
        ],
        "tags": [
            {"name": TAG_POSTBACKS, "description": "Create, read, change and delete postbacks"},
            {"name": TAG_DELIVERIES, "description": "A postback's delivery log and test fires"},
            {"name": TAG_CATALOGUE, "description": "Placeholders and conversion statuses"},
            {"name": TAG_SERVICE, "description": "Liveness and this description"},
        ],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def main() -> int:
    """`python -m functions.api.openapi`: print the document (no server needed), for client generators."""
    print(json.dumps(openapi_document(), indent=2, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
