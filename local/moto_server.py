"""The moto server of the local stack: its own process, with request routing that does not serialise
every request.

`MotoProcess` runs the server as `python -m local.moto_server` beside the stack's process, so moto
has an interpreter (and a GIL) of its own. In one process, every AWS call of a handler or poller
was a hand-over of the GIL between the calling thread and moto's request thread, among a dozen other
busy threads (the sender's GETs, the API, the pollers); at 25 conversions/s each request then
waited for the interpreter several times, and a stream or queue round trip cost tens of
milliseconds. The child ignores SIGINT (Ctrl-C reaches the whole process group; the stack stops
it in order), stops on SIGTERM, and stops when its parent goes away (its stdin closes).

moto's `DomainDispatcherApplication` picks the backend (DynamoDB, Streams, SQS …) of every request
under one process-wide lock, and the lookup is slow: it lists moto's package directory (~180
`stat` calls) and then tries its URL patterns one by one. That is 0.4-1.1 ms per request with the
lock held, and with the handlers and pollers competing for the interpreter the lock holder is
descheduled mid-lookup, so requests queue behind it: profiled under 25 conversions/s, waiting for
that lock was the largest single item of the stack process. The backend of a signed request is a
function of its credential scope (service, region) and the `X-Amz-Target` prefix (which tells
DynamoDB Streams from DynamoDB), so `_RoutingCache` asks moto once per such key and remembers the
answer; anything else (unsigned requests, `/moto-api`, other services) goes through moto unchanged.

werkzeug's development server answers every request with `Connection: close` (http.server cannot
tell where an unread request body ends), so every AWS call of the stack was a new TCP connection
and a new server thread. `_KeepAliveHandler` keeps the connection of a request that states its
`Content-Length` (every AWS SDK request does): it reads what the application left of the body
before the next request, and drops werkzeug's `Connection: close`; botocore's connection pools
then reuse their connections. Anything else (chunked bodies, no length) still closes.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

# Services whose backend depends only on the routing key below (checked against moto 5.2's
# `infer_service_region_host`); requests to any other service take moto's own path.
CACHEABLE_SERVICES = frozenset({"dynamodb", "sqs"})

RoutingKey = tuple[str, str, str]


def routing_key(environ: dict[str, Any]) -> RoutingKey | None:
    """(service, region, X-Amz-Target prefix) of a SigV4-signed request, or None to let moto decide."""
    path = environ.get("PATH_INFO", "")
    if not isinstance(path, str) or path.startswith(("/moto-api", "/latest/", "/favicon.ico")):
        return None
    auth = environ.get("HTTP_AUTHORIZATION")
    if not isinstance(auth, str) or not auth.startswith("AWS4-"):
        return None
    try:
        credential = auth.split(",", 1)[0].split()[1]
        _, _, region, service, _ = credential.split("/")
    except (IndexError, ValueError):
        return None
    service = service.lower()
    if service not in CACHEABLE_SERVICES:
        return None
    target = environ.get("HTTP_X_AMZ_TARGET") or ""
    return service, region, target.split(".", 1)[0]


def _routing_cache_class() -> type[Any]:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    class _RoutingCache(DomainDispatcherApplication):  # type: ignore[misc]
        def __init__(self, create_app: Any) -> None:
            super().__init__(create_app)
            self._routes: dict[RoutingKey, Any] = {}

        def get_application(self, environ: dict[str, Any]) -> Any:
            key = routing_key(environ)
            if key is None:
                return super().get_application(environ)
            app = self._routes.get(key)
            if app is None:
                app = super().get_application(environ)
                self._routes[key] = app
            return app

    return _RoutingCache


class _BoundedBody:
    """The request's body as a stream that never reads past its `Content-Length`."""

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self.remaining = length

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data: bytes = self._stream.read(size) if size else b""
        self.remaining -= len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data: bytes = self._stream.readline(size) if size else b""
        self.remaining -= len(data)
        return data

    def drain(self) -> None:
        while self.remaining and self.read(65536):
            pass


def _keep_alive_handler_class() -> type[Any]:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class _KeepAliveHandler(MotoRequestHandler):  # type: ignore[misc]
        # An idle kept connection ends (with its thread) after this many seconds.
        timeout = 60
        # A kept connection must not wait for delayed ACKs between the header and body writes.
        disable_nagle_algorithm = True
        _keep_alive = False

        def run_wsgi(self) -> None:
            length = self.headers.get("Content-Length")
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            self._keep_alive = length is not None and length.isdigit() and not chunked
            if not self._keep_alive:
                super().run_wsgi()
                return
            connection = self.rfile
            body = _BoundedBody(connection, int(str(length)))
            self.rfile = body  # type: ignore[assignment]
            try:
                super().run_wsgi()
            finally:
                self.rfile = connection
                body.drain()

        def send_header(self, keyword: str, value: str) -> None:
            if self._keep_alive and keyword.lower() == "connection" and value.lower() == "close":
                return
            super().send_header(keyword, value)

    return _KeepAliveHandler


def dispatcher() -> Any:
    """moto's WSGI application (every backend), with cached routing and the SQS hot paths of
    `local/moto_speedups.py`."""
    from moto.moto_server.werkzeug_app import create_backend_app

    from local import moto_speedups

    moto_speedups.apply()
    return _routing_cache_class()(create_backend_app)


class MotoServer:
    """A threaded moto server on `host:port` (what `moto.server.ThreadedMotoServer` runs, with the
    routing cache)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def bind(self) -> None:
        """Create the server and bind its socket (OSError when the port is taken)."""
        from werkzeug.serving import make_server

        self._server = make_server(
            self.host, self.port, dispatcher(), threaded=True, request_handler=_keep_alive_handler_class()
        )
        self._server.daemon_threads = True

    def serve(self) -> None:
        """Serve in this thread until `stop` or `shutdown_soon`."""
        self._server.serve_forever()
        self._server.server_close()

    def shutdown_soon(self) -> None:
        """Make `serve` return (from another thread or a signal handler)."""
        threading.Thread(target=self._server.shutdown, daemon=True).start()

    def start(self) -> None:
        """Serve in a background thread of this process."""
        self.bind()
        self._thread = threading.Thread(target=self.serve, name="moto", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)


class MotoProcessError(RuntimeError):
    """The moto server process did not start."""


class MotoProcess:
    """`python -m local.moto_server` as a child process, listening on `host:port` once `start` returns."""

    def __init__(self, host: str, port: int, start_timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        root = Path(__file__).resolve().parent.parent
        self._process = subprocess.Popen(
            [sys.executable, "-m", "local.moto_server", "--host", self.host, "--port", str(self.port)],
            cwd=root,
            stdin=subprocess.PIPE,  # closes when this process ends, however it ends: the child then stops
            stdout=subprocess.PIPE,
            text=True,
        )
        line = _read_line(self._process.stdout, self._start_timeout)
        if line.strip() != "listening":
            code = self._process.poll()
            self.stop()
            raise MotoProcessError(f"moto server on {self.host}:{self.port} did not start (exit {code})")

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    """The first line of a child's stdout, or "" after `timeout` seconds or at its end."""
    if stream is None:
        return ""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def _watch_parent(server: MotoServer, stdin: IO[str]) -> None:
    """Stop the server when the parent closes our stdin (it stopped, or it died)."""
    stdin.read()
    server.shutdown_soon()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.moto_server", description="The local stack's moto server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    server = MotoServer(args.host, args.port)
    try:
        server.bind()
    except OSError as exc:
        print(f"moto server: {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda _signum, _frame: server.shutdown_soon())
    threading.Thread(target=_watch_parent, args=(server, sys.stdin), name="parent-watch", daemon=True).start()
    print("listening", flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
