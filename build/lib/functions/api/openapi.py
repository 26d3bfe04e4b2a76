"""The OpenAPI 3.1 document of the API, generated from the pydantic models of `schemas`.

The same models parse the requests, so the description cannot drift from the validation.
Served without authentication at `GET /openapi.json`.
"""

from __future__ import annotations

import functools
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


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _ref(schemas.Problem)}}}


_ETAG = {"ETag": {"description": 'The version, quoted: "3"', "schema": {"type": "string"}}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Postback ID"}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
}
_CURSOR = {
    "name": "cursor",
    "in": "query",
    "schema": {"type": "string"},
    "description": "`next_cursor` of the previous page, with the same filters",
}
_COMMON = {"401": _problem("Missing or invalid token"), "500": _problem("Unexpected error")}
_BAD = {"400": _problem("Validation failed; `errors` names every bad field")}
_NOT_FOUND = {"404": _problem("No such postback, or another affiliate's")}


def _operation(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**responses, **_COMMON}, **extra}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _paths() -> dict[str, Any]:
    public: dict[str, Any] = {"security": []}
    return {
        "/health": {
            "get": {
                "summary": "Liveness",
                **public,
                "responses": {"200": _json(schemas.Health, "The API answers")},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                **public,
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
            }
        },
        "/parameters": {
            "get": _operation(
                "The placeholder catalogue and the conversion statuses",
                {"200": _json(schemas.ParameterCatalogue, "The catalogue")},
            )
        },
        "/postbacks": {
            "post": _operation(
                "Create a postback",
                {
                    "201": _json(
                        schemas.PostbackOut,
                        "Created",
                        {**_ETAG, "Location": {"description": "/postbacks/{id}", "schema": {"type": "string"}}},
                    ),
                    **_BAD,
                    "403": _problem("Creating for another affiliate"),
                    "409": _problem("The affiliate has the maximum number of postbacks"),
                    "415": _problem("The body is not JSON"),
                },
                requestBody=_body(schemas.PostbackCreate),
            ),
            "get": _operation(
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
            "get": _operation("One postback", {"200": _json(schemas.PostbackOut, "The postback", _ETAG), **_NOT_FOUND}),
            "patch": _operation(
                "Change a postback (any subset of its mutable fields)",
                {
                    "200": _json(schemas.PostbackOut, "The changed postback", _ETAG),
                    **_BAD,
                    **_NOT_FOUND,
                    "412": _problem("If-Match names a stale version"),
                    "415": _problem("The body is not JSON"),
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
                "Delete a postback; it never fires again", {"204": {"description": "Deleted"}, **_NOT_FOUND}
            ),
        },
        "/postbacks/{id}/deliveries": {
            "parameters": [_ID],
            "get": _operation(
                "The delivery log, newest first",
                {"200": _json(schemas.DeliveryList, "A page"), **_BAD, **_NOT_FOUND},
                parameters=[_LIMIT, _CURSOR],
            ),
        },
        "/postbacks/{id}/test": {
            "parameters": [_ID],
            "post": _operation(
                "Fire the postback now with a sample conversion",
                {"200": _json(schemas.TestFireResult, "The rendered URL and the outcome"), **_BAD, **_NOT_FOUND},
                requestBody={
                    "required": False,
                    "content": {"application/json": {"schema": _ref(schemas.TestConversion)}},
                },
            ),
        },
        "/postbacks/{id}/signing-secret": {
            "parameters": [_ID],
            "get": _operation(
                "The postback's signing secret (owner or admin)",
                {"200": _json(schemas.SigningSecretOut, "The secret (Cache-Control: no-store)"), **_NOT_FOUND},
                operationId="getSigningSecret",
            ),
            "post": _operation(
                "Rotate the signing secret: GETs sent from now on are signed with the new one",
                {"200": _json(schemas.SigningSecretOut, "The new secret (Cache-Control: no-store)"), **_NOT_FOUND},
                operationId="rotateSigningSecret",
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
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
