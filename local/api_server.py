"""The API's local HTTP server: Chalice's local server, answering every method as AWS would.

Chalice's request handler knows only the methods API Gateway has; any other (`TRACE`, `PROPFIND`,
...) would get the standard library's HTML 501. Here every method goes through the app, so a path
answers with its 405 problem (`functions.api.methods`). A path the app does not have gets what
the AWS stack's gateway response gives (`MISSING_AUTHENTICATION_TOKEN` → 404 problem, see
infrastructure/template.json) instead of Chalice's 403, with the CORS headers of an allowed origin.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer, LocalGatewayException

from functions import bootstrap
from functions.api.cors import cors_headers

NOT_FOUND = {
    "type": "about:blank",
    "title": "Not Found",
    "status": 404,
    "detail": "No such resource.",
}


# Chalice's app keeps one current request: two requests handled at once on the server's threads
# could read each other's. Lambda gives a container one request at a time; so does this server.
_ONE_REQUEST_AT_A_TIME = threading.Lock()


class ApiRequestHandler(ChaliceRequestHandler):
    def _generic_handle(self) -> None:
        with _ONE_REQUEST_AT_A_TIME:
            super()._generic_handle()

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler looks up `do_<METHOD>`: every method is handled by the app.
        if name.startswith("do_") and name[3:].isalpha() and name[3:].isupper():
            return self._generic_handle
        raise AttributeError(name)

    def _send_error_response(self, error: LocalGatewayException) -> None:
        if error.CODE != 403:
            super()._send_error_response(error)
            return
        headers: dict[str, Any] = {"Content-Type": "application/problem+json"}
        allowed = bootstrap.settings().cors_origins
        if allowed:
            headers["Vary"] = "Origin"
            headers.update(cors_headers(self.headers.get("origin"), allowed))
        self._send_http_response(404, headers, json.dumps(NOT_FOUND))


def create_api_server(app: Chalice, config: Config, host: str, port: int) -> LocalDevServer:
    return LocalDevServer(app, config, host, port, handler_cls=ApiRequestHandler)
