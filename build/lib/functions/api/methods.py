"""Every method on every path gets an answer from the app: preflights and 405 problems (docs/contract.md §5).

`complete_routes(app)` runs once in `app.py`, after the blueprints are registered. For each path
of the API it adds, without an authorizer:

- an `OPTIONS` route: the CORS preflight (`functions.api.cors.preflight_response`);
- a route for every other method API Gateway knows that the path lacks (`HEAD`, `PUT`, ...):
  a 405 problem with `Allow`.

Declared as routes, they reach the Lambda in AWS as well (API Gateway would otherwise answer an
undeclared method with its own 403 before the app runs). A method outside API Gateway's set
(`TRACE`, ...) is answered by the app's own 405 under the local server (`local.api_server`).
"""

from __future__ import annotations

from typing import Any

from chalice.app import Chalice, Response

from functions.api.cors import preflight_response
from functions.api.errors import problem

# API Gateway's methods (Chalice's ALL_HTTP_METHODS), in the order `Allow` lists them.
GATEWAY_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _view_name(prefix: str, path: str) -> str:
    cleaned = "".join(char if char.isalnum() else "_" for char in path).strip("_") or "root"
    return f"{prefix}_{cleaned}"


def allowed_methods(declared: list[str]) -> list[str]:
    """The methods a path answers, in `GATEWAY_METHODS` order, without OPTIONS."""
    return [method for method in GATEWAY_METHODS if method in declared and method != "OPTIONS"]


def complete_routes(app: Chalice) -> None:
    for path, views in list(app.routes.items()):
        methods = allowed_methods(list(views))
        missing = [method for method in GATEWAY_METHODS if method not in views and method != "OPTIONS"]
        if "OPTIONS" not in views:
            app.route(path, methods=["OPTIONS"], name=_view_name("preflight", path))(_preflight_view(app, methods))
        if missing:
            app.route(path, methods=missing, name=_view_name("method_not_allowed", path))(
                _method_not_allowed_view(app, methods)
            )


def _preflight_view(app: Chalice, methods: list[str]) -> Any:
    def preflight(**_path_params: str) -> Response:
        request = app.current_request
        assert request is not None
        return preflight_response(request, methods)

    return preflight


def _method_not_allowed_view(app: Chalice, methods: list[str]) -> Any:
    def method_not_allowed(**_path_params: str) -> Response:
        request = app.current_request
        method = request.method if request is not None else "this method"
        return problem(
            405,
            f"{method} is not supported here; use {', '.join(methods)}.",
            headers={"Allow": ", ".join([*methods, "OPTIONS"])},
        )

    return method_not_allowed
