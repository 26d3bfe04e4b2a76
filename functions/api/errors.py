"""Errors as RFC 9457 problem details (`application/problem+json`): the one exception → HTTP mapping.

- `problem_for(exc)` maps the typed errors of the service, validation, pagination and
  authentication to a problem response; `maps_errors` applies it around a route.
- `problem_details_middleware` rewrites the error responses Chalice produces itself (405 for a
  method a path does not have, 415, and the 500 it returns for an unexpected exception after
  logging it) into problem documents, so no error leaves the API in another shape and no stack
  trace is ever sent.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from chalice.app import Request, Response

from functions.api.auth import AuthenticationError
from functions.api.blueprint import api
from functions.api.bodies import dumps, problem_body
from functions.api.delivery_service import TestFiresLimited
from functions.api.service import Forbidden, LimitReached, PostbackNotFound, PreconditionFailed
from functions.core.validation import FieldError, ValidationFailed
from functions.logs import Event, log_event
from functions.storage.postback_types import StoreBusy

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "/problems/"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# How long a client should wait before retrying a write that collided with concurrent writes.
BUSY_RETRY_AFTER_SECONDS = 1


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: Sequence[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    document = problem_body(
        PROBLEM_BASE + slug if slug else "about:blank", title or TITLES.get(status, "Error"), status, detail, errors
    )
    return Response(
        body=dumps(document),
        status_code=status,
        headers={"Content-Type": PROBLEM_CONTENT_TYPE, **(headers or {})},
    )


class MalformedRequest(Exception):
    """The request cannot be read (a body that is not JSON); 400 without field errors."""


class UnsupportedMediaType(Exception):
    """A body in a media type other than JSON (415)."""


class BodyTooLarge(Exception):
    """A request body over the API's size limit (413)."""


KNOWN_ERRORS: tuple[type[Exception], ...] = (
    ValidationFailed,
    AuthenticationError,
    Forbidden,
    PostbackNotFound,
    LimitReached,
    PreconditionFailed,
    MalformedRequest,
    UnsupportedMediaType,
    BodyTooLarge,
    StoreBusy,
    TestFiresLimited,
)


def problem_for(exc: Exception) -> Response:
    """The problem response for one of `KNOWN_ERRORS`; anything else is a bug (500)."""
    if isinstance(exc, ValidationFailed):
        fields = ", ".join(dict.fromkeys(error.field for error in exc.errors))
        return problem(
            400,
            f"The request is not valid: {fields}.",
            slug="validation-failed",
            title="Validation failed",
            errors=exc.errors,
        )
    if isinstance(exc, AuthenticationError):
        return problem(401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="postbacks"'})
    if isinstance(exc, Forbidden):
        return problem(403, str(exc))
    if isinstance(exc, PostbackNotFound):
        return problem(404, "No such postback.")
    if isinstance(exc, LimitReached):
        return problem(409, str(exc), slug="postback-limit-reached", title="Postback limit reached")
    if isinstance(exc, PreconditionFailed):
        return problem(412, str(exc))
    if isinstance(exc, MalformedRequest):
        return problem(400, str(exc), slug="malformed-request", title="Malformed request")
    if isinstance(exc, UnsupportedMediaType):
        return problem(415, str(exc))
    if isinstance(exc, BodyTooLarge):
        return problem(413, str(exc), slug="body-too-large", title="Body too large")
    if isinstance(exc, TestFiresLimited):
        return problem(
            429,
            str(exc),
            slug="test-fire-limit",
            title="Test fire limit reached",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, StoreBusy):
        return problem(
            503,
            "Postbacks are being changed concurrently; nothing was written. Retry shortly.",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )
    return problem(500, TITLES[500])


F = TypeVar("F", bound=Callable[..., Any])


def maps_errors(view: F) -> F:
    """Turn the known errors a route raises into problem responses; anything else propagates."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except KNOWN_ERRORS as exc:
            return problem_for(exc)

    return wrapper  # type: ignore[return-value]


def _is_problem(response: Response) -> bool:
    content_type = next((value for key, value in response.headers.items() if key.lower() == "content-type"), "")
    return isinstance(content_type, str) and content_type.startswith(PROBLEM_CONTENT_TYPE)


def _chalice_error_detail(response: Response) -> str:
    body = response.body
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    if response.status_code >= 500 or not isinstance(body, dict):
        return TITLES.get(response.status_code, "The request failed.")
    return str(body.get("Message") or body.get("message") or TITLES.get(response.status_code, "Error"))


def _problem_type(response: Response) -> str | None:
    body = response.body
    try:
        document = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return None
    kind = document.get("type") if isinstance(document, dict) else None
    return kind if isinstance(kind, str) else None


def log_error_response(request: Request, response: Response) -> None:
    """The `api.error` line of a problem response: method, route template, status, problem type, postback id.

    Never the request's body, query or headers (a postback's URL, a token).
    """
    context = request.context if isinstance(request.context, dict) else {}
    route = context.get("resourcePath")
    uri_params = request.uri_params or {}
    log_event(
        logger,
        Event.API_ERROR,
        logging.ERROR if response.status_code >= 500 else logging.INFO,
        method=request.method,
        route=route if isinstance(route, str) else None,
        status_code=response.status_code,
        problem=_problem_type(response),
        postback_id=uri_params.get("id"),
    )


@api.middleware("http")
def problem_details_middleware(request: Request, get_response: Callable[[Request], Response]) -> Response:
    response = get_response(request)
    if response.status_code < 400:
        return response
    if not _is_problem(response):
        kept = {
            key: value
            for key, value in response.headers.items()
            if key.lower() in ("allow", "www-authenticate") and isinstance(value, str)
        }
        response = problem(response.status_code, _chalice_error_detail(response), headers=kept)
    log_error_response(request, response)
    return response
