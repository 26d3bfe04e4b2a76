"""The Postbacks page's local web server (`make run`, WEB_PORT): web/dist plus a runtime config.

- `GET /config.json`: `{"apiBaseUrl": "http://127.0.0.1:<API_PORT>"}` — where the page finds the
  API. In AWS the page is served by CloudFront with `/api/*` routed to API Gateway, and no
  config.json exists there: the page then uses `/api` on its own origin.
- Any other path: the file under web/dist, or index.html (a single-page app), never a file outside
  it. When the page was not built, a 503 says how to build it.
"""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from local.web_build import DIST


class PageHandler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, api_url: str, **kwargs: Any) -> None:
        self.api_url = api_url
        super().__init__(*args, directory=str(DIST), **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == "/config.json":
            self._send(200, "application/json", json.dumps({"apiBaseUrl": self.api_url}).encode())
            return
        if not (DIST / "index.html").is_file():
            self._send(503, "text/plain; charset=utf-8", b"The page is not built: run `make run` (or make web).\n")
            return
        target = Path(self.translate_path(path))
        if not target.is_file() or DIST.resolve() not in target.resolve().parents:
            self.path = "/index.html"
        super().do_GET()

    def do_HEAD(self) -> None:
        self.do_GET()


class WebServer:
    def __init__(self, host: str, port: int, api_url: str) -> None:
        self.server = ThreadingHTTPServer((host, port), partial(PageHandler, api_url=api_url))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="web", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
