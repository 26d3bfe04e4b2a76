"""A tracker stand-in on loopback: records every GET it receives and answers with scripted statuses.

Used by `make demo` and the end-to-end tests:

    with Receiver() as receiver:
        url = receiver.url("/cb?click={affS1}")
        ...
        [hit] = receiver.wait_for(1, timeout=10)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class ReceivedRequest:
    path: str  # path and query, as received
    headers: dict[str, str]
    at: float  # time.time() when it arrived
    status: int  # what the receiver answered

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}


class _BackloggedServer(ThreadingHTTPServer):
    """A listen backlog for bursts: the sender opens up to 50 connections at once, and refused
    connections would count as failures of the host (and could pause it, docs/sender.md)."""

    request_queue_size = 128


class Receiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._requests: list[ReceivedRequest] = []
        self._scripts: dict[str, deque[int]] = {}
        self._default_status: dict[str, int] = {}
        self._changed = threading.Condition()
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status = receiver._status_for(urlsplit(self.path).path)
                body = b"ok" if status < 400 else b"failure"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                receiver._record(ReceivedRequest(self.path, dict(self.headers.items()), time.time(), status))

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = _BackloggedServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path_and_query: str) -> str:
        return self.base_url + path_and_query

    def script(self, route: str, statuses: list[int], then: int = 200) -> None:
        """Answer GETs of `route` with `statuses` in turn, then with `then`."""
        with self._changed:
            self._scripts[route] = deque(statuses)
            self._default_status[route] = then

    def _status_for(self, route: str) -> int:
        with self._changed:
            script = self._scripts.get(route)
            if script:
                return script.popleft()
            return self._default_status.get(route, 200)

    def _record(self, request: ReceivedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    def requests(self, route: str | None = None) -> list[ReceivedRequest]:
        with self._changed:
            return [r for r in self._requests if route is None or r.route == route]

    def wait_for(self, count: int, route: str | None = None, timeout: float = 10.0) -> list[ReceivedRequest]:
        """Wait until at least `count` GETs (of `route`) arrived; TimeoutError with what did arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [r for r in self._requests if route is None or r.route == route]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(found)} of {count} requests to {route or 'any route'} after {timeout} s")
                self._changed.wait(remaining)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
