"""CORS for browser clients (docs/contract.md §5): the origins of `POSTBACKS_CORS_ORIGINS`, nobody else.

- `cors_headers` / `preflight_headers`: pure functions from the request's `Origin` and the allowed
  origins to the response headers. An origin not in the list (or no `Origin` at all) gets no
  `Access-Control-*` header, so the browser keeps the response from the page.
- `cors_middleware`: registered first on the `api` blueprint (`functions.api.blueprint`), so it is
  the outermost middleware and adds the headers to every response the app produces — problem
  documents, Chalice's own 405/415 and the 500 of an unexpected error included.
- `preflight_response`: the answer to `OPTIONS` on every path (the routes are added by
  `functions.api.methods.complete_routes`): 204 with `Allow`, and for an allowed origin the methods,
  the request headers `Authorization`, `Content-Type`, `If-Match` and a max age.

Every response to an allowed origin exposes `ETag`, `Location` and `Retry-After` and varies on
`Origin`. Credentials are bearer tokens in a header, never cookies, so no
`Access-Control-Allow-Credentials` is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from chalice.app import Request, Response

from functions import bootstrap

ALLOWED_REQUEST_HEADERS = ("Authorization", "Content-Type", "If-Match")
EXPOSED_RESPONSE_HEADERS = ("ETag", "Location", "Retry-After")
PREFLIGHT_MAX_AGE_SECONDS = 600


def allowed_origin(origin: str | None, allowed: Collection[str]) -> str | None:
    """The origin to echo, or None when it is absent or not allowed (compared case-insensitively)."""
    if not origin:
        return None
    origin = origin.strip()
    return origin if origin.lower() in allowed else None


def cors_headers(origin: str | None, allowed: Collection[str]) -> dict[str, str]:
    """Headers for an ordinary response: empty unless the origin is allowed."""
    echoed = allowed_origin(origin, allowed)
    if echoed is None:
        return {}
    return {
        "Access-Control-Allow-Origin": echoed,
        "Access-Control-Expose-Headers": ", ".join(EXPOSED_RESPONSE_HEADERS),
    }


def preflight_headers(origin: str | None, allowed: Collection[str], methods: Iterable[str]) -> dict[str, str]:
    """Headers for a preflight (`OPTIONS`) answer: empty unless the origin is allowed."""
    headers = cors_headers(origin, allowed)
    if headers:
        headers.update(
            {
                "Access-Control-Allow-Methods": ", ".join(methods),
                "Access-Control-Allow-Headers": ", ".join(ALLOWED_REQUEST_HEADERS),
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
            }
        )
    return headers


def _add_vary_origin(response: Response) -> None:
    for key, value in list(response.headers.items()):
        if key.lower() == "vary" and isinstance(value, str):
            if "origin" not in value.lower():
                response.headers[key] = f"{value}, Origin"
            return
    response.headers["Vary"] = "Origin"


def cors_middleware(request: Request, get_response: Callable[[Request], Response]) -> Response:
    response = get_response(request)
    allowed = bootstrap.settings().cors_origins
    if allowed:
        _add_vary_origin(response)
        response.headers.update(cors_headers(request.headers.get("origin"), allowed))
    return response


def preflight_response(request: Request, methods: Iterable[str]) -> Response:
    """204 to `OPTIONS`: `Allow` for anyone, the CORS preflight headers for an allowed origin."""
    listed = [*methods, "OPTIONS"]
    headers: dict[str, str | list[str]] = {"Allow": ", ".join(listed)}
    headers.update(preflight_headers(request.headers.get("origin"), bootstrap.settings().cors_origins, listed))
    return Response(body="", status_code=204, headers=headers)
