"""The HTTP client of every GET to a tracker: the send-time egress guard and one hardened GET.

Used by the sender and by the API's test fire (`POST /postbacks/{id}/test`), so both go out the
same way. Built once per cold start by `functions.bootstrap.http_client`.

Contract (`PinnedHttpClient.get`): the URL's host is resolved exactly once (A and AAAA); if any
answer is not allowed by the egress policy (or the port is not), the request is refused as
`blocked_destination` before any connection is made. Otherwise the client connects to the checked
address itself, with the `Host` header, TLS SNI and certificate verification bound to the original
name, so the name is never resolved again (no DNS rebinding). Proxy environment variables are not
read, redirects are never followed, and the request carries only `Host`, `User-Agent:
postbacks/<version>` and `Accept-Encoding: identity`.

Time is bounded three ways: a connect timeout, a read timeout per socket read, and a total
deadline enforced by a watchdog that shuts the socket down when it passes, so a response that
drips one byte at a time cannot hold a sender thread. At most `max_response_bytes` of the body are
read, raw (never decompressed), and the connection is closed if more remains.

Failure semantics: `get` never raises for network or HTTP failures; it returns an `HttpOutcome`
whose `error` is one of `HttpErrorCode`. Connections are pooled per (scheme, name, port, address)
and the client is safe to use from many threads at once.

Bounded descriptors: at most `max_pools` pools are kept (least recently used closed first), each
keeps at most `pool_maxsize` idle connections, and after every GET the least recently used pools
are closed until no more than `max_idle_connections` idle connections remain in all — so GETs to
ever new addresses (DNS that answers a new address each time) never pile up open sockets.
The name is resolved in a worker thread within the connect timeout (and the total deadline): a
resolver that hangs is cut off (`connect_timeout`) instead of holding the GET past its budget.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import cast
from urllib.parse import urlsplit

import certifi
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.response import HTTPResponse

from functions import __version__
from functions.core.egress import (
    EgressPolicy,
    InvalidUrl,
    Target,
    address_allowed,
    host_problems,
    parse_target,
    port_allowed,
)

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]

USER_AGENT = f"postbacks/{__version__}"
_READ_CHUNK = 16384
# Pools kept (one per scheme, name, port and address) and idle connections kept in all of them.
MAX_POOLS = 64
MAX_IDLE_CONNECTIONS = 64


class HttpErrorCode(StrEnum):
    TIMEOUT = "timeout"
    CONNECT_TIMEOUT = "connect_timeout"
    READ_TIMEOUT = "read_timeout"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    DNS_ERROR = "dns_error"
    TLS_ERROR = "tls_error"
    BLOCKED_DESTINATION = "blocked_destination"
    INVALID_URL = "invalid_url"
    PROTOCOL_ERROR = "protocol_error"


@dataclass(frozen=True)
class HttpOutcome:
    """The result of one GET: the status, or the error that prevented one, and what the answer held."""

    status_code: int | None  # None when no response
    error: str | None  # an HttpErrorCode value, or None
    duration_ms: int
    resolved_address: str | None
    headers: Mapping[str, str] = field(default_factory=dict)  # case-insensitive when from a response
    body_excerpt: bytes = b""  # at most max_response_bytes, as received (not decompressed)


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """A and AAAA answers for `host` in the system resolver's order, without duplicates."""
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class _Watchdog:
    """Shuts a socket down when the request's deadline passes; `disarm` says whether it fired."""

    def __init__(self, sock: socket.socket, delay: float) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._fired = False
        self._disarmed = False
        self._timer = threading.Timer(max(delay, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._disarmed:
                return
            self._fired = True
            # An already closed socket has nothing left to interrupt.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> bool:
        self._timer.cancel()
        with self._lock:
            self._disarmed = True
            return self._fired


class _RequestScope(threading.local):
    """Per-thread state of the request in progress, read by the connections below."""

    deadline: float | None = None
    watchdog: _Watchdog | None = None


_scope = _RequestScope()


def _arm_watchdog(sock: socket.socket | None) -> None:
    deadline = _scope.deadline
    if deadline is not None and sock is not None and _scope.watchdog is None:
        _scope.watchdog = _Watchdog(sock, deadline - time.monotonic())


class _DeadlineHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _arm_watchdog(self.sock)
        return super().getresponse()


class _DeadlineHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _arm_watchdog(self.sock)
        return super().getresponse()


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


def _cause(exc: BaseException) -> BaseException | None:
    if isinstance(exc, ProtocolError) and len(exc.args) > 1 and isinstance(exc.args[1], BaseException):
        return exc.args[1]
    return exc.__cause__ or exc.__context__


def classify_error(exc: BaseException) -> HttpErrorCode:
    """Map a transport exception to its error code by type (never by message)."""
    if isinstance(exc, NewConnectionError):
        cause = _cause(exc)
        if isinstance(cause, TimeoutError):
            return HttpErrorCode.CONNECT_TIMEOUT
        return HttpErrorCode.CONNECTION_REFUSED
    if isinstance(exc, ConnectTimeoutError):
        return HttpErrorCode.CONNECT_TIMEOUT
    if isinstance(exc, ReadTimeoutError):
        return HttpErrorCode.READ_TIMEOUT
    if isinstance(exc, SSLError | ssl.SSLError | ssl.CertificateError):
        return HttpErrorCode.TLS_ERROR
    if isinstance(exc, ProtocolError):
        cause = _cause(exc)
        return HttpErrorCode.PROTOCOL_ERROR if cause is None or cause is exc else classify_error(cause)
    if isinstance(exc, ConnectionRefusedError):
        return HttpErrorCode.CONNECTION_REFUSED
    if isinstance(
        exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError | http.client.RemoteDisconnected
    ):
        return HttpErrorCode.CONNECTION_RESET
    if isinstance(exc, TimeoutError):
        return HttpErrorCode.TIMEOUT
    return HttpErrorCode.PROTOCOL_ERROR


def _request_target(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _read_body(response: HTTPResponse, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` raw bytes of the body, and whether the body ended within them."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = response.read(min(remaining, _READ_CHUNK), decode_content=False)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks), response.length_remaining == 0


def _idle_connections(pool: HTTPConnectionPool) -> int:
    """Connections waiting in the pool (its queue holds None for the slots never filled)."""
    queue = pool.pool
    if queue is None:
        return 0
    return sum(1 for connection in list(queue.queue) if connection is not None)


def _resolve_within(resolver: Resolver, host: str, port: int, budget: float) -> list[IPAddress]:
    """Run the resolver in a daemon thread and wait at most `budget` seconds (getaddrinfo has no timeout)."""
    if budget <= 0:
        raise TimeoutError("no time left to resolve")
    result: list[list[IPAddress]] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            result.append(resolver(host, port))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name="resolve", daemon=True).start()
    if not done.wait(budget):
        raise TimeoutError(f"resolving took longer than {budget:.1f} s")
    if failure:
        raise failure[0]
    return result[0]


class PinnedHttpClient:
    def __init__(
        self,
        policy: EgressPolicy,
        *,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
        max_response_bytes: int,
        resolver: Resolver | None = None,
        pool_maxsize: int = 50,
        max_pools: int = MAX_POOLS,
        max_idle_connections: int = MAX_IDLE_CONNECTIONS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._policy = policy
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._total_timeout = total_timeout
        self._max_response_bytes = max_response_bytes
        self._resolver = resolver or system_resolver
        self._pool_maxsize = pool_maxsize
        self._max_pools = max(1, max_pools)
        self._max_idle = max(0, max_idle_connections)
        self._ssl_context = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self._pools: OrderedDict[tuple[str, str, int, str], HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()

    def _pool(self, target: Target, address: IPAddress) -> HTTPConnectionPool:
        key = (target.scheme, target.host, target.port, str(address))
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            if target.scheme == "https":
                pool = _PinnedHTTPSPool(
                    str(address),
                    target.port,
                    maxsize=self._pool_maxsize,
                    block=False,
                    retries=False,
                    server_hostname=target.host,
                    assert_hostname=target.host,
                    cert_reqs="CERT_REQUIRED",
                    ssl_context=self._ssl_context,
                )
            else:
                pool = _PinnedHTTPPool(
                    str(address), target.port, maxsize=self._pool_maxsize, block=False, retries=False
                )
            self._pools[key] = pool
            evicted = self._pools.popitem(last=False)[1] if len(self._pools) > self._max_pools else None
        if evicted is not None:
            evicted.close()
        return pool

    def _trim(self) -> None:
        """Close the least recently used pools while more than `max_idle_connections` idle connections remain."""
        closing: list[HTTPConnectionPool] = []
        with self._lock:
            idle = {key: _idle_connections(pool) for key, pool in self._pools.items()}
            total = sum(idle.values())
            for key in list(self._pools):
                if total <= self._max_idle:
                    break
                total -= idle[key]
                closing.append(self._pools.pop(key))
        for pool in closing:
            pool.close()

    def open_connections(self) -> int:
        """Idle connections kept in the pools (what `max_idle_connections` bounds)."""
        with self._lock:
            return sum(_idle_connections(pool) for pool in self._pools.values())

    def _resolve(self, target: Target, budget: float) -> list[IPAddress]:
        """The resolver's answers, or TimeoutError when it takes longer than `budget` seconds."""
        if target.address is not None:
            return [target.address]
        return _resolve_within(self._resolver, target.host, target.port, budget)

    def get(self, url: str) -> HttpOutcome:
        started = time.monotonic()
        deadline = started + self._total_timeout

        def outcome(
            error: HttpErrorCode | None,
            status: int | None = None,
            address: IPAddress | None = None,
            headers: Mapping[str, str] | None = None,
            body: bytes = b"",
        ) -> HttpOutcome:
            return HttpOutcome(
                status_code=status,
                error=None if error is None else error.value,
                duration_ms=int((time.monotonic() - started) * 1000),
                resolved_address=None if address is None else str(address),
                headers={} if headers is None else headers,
                body_excerpt=body,
            )

        try:
            target = parse_target(url)
        except InvalidUrl as exc:
            return outcome(HttpErrorCode.BLOCKED_DESTINATION if exc.forbidden else HttpErrorCode.INVALID_URL)
        if host_problems(target, self._policy):
            return outcome(HttpErrorCode.BLOCKED_DESTINATION, address=target.address)
        try:
            addresses = self._resolve(target, min(self._connect_timeout, deadline - time.monotonic()))
        except TimeoutError:
            return outcome(HttpErrorCode.CONNECT_TIMEOUT)
        except (OSError, UnicodeError):
            return outcome(HttpErrorCode.DNS_ERROR)
        if not addresses:
            return outcome(HttpErrorCode.DNS_ERROR)
        for candidate in addresses:
            if not address_allowed(candidate, self._policy) or not port_allowed(target.port, candidate, self._policy):
                return outcome(HttpErrorCode.BLOCKED_DESTINATION, address=candidate)
        address = addresses[0]
        return self._send(target, address, _request_target(url), deadline, outcome)

    def _send(
        self,
        target: Target,
        address: IPAddress,
        request_target: str,
        deadline: float,
        outcome: Callable[..., HttpOutcome],
    ) -> HttpOutcome:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return outcome(HttpErrorCode.DEADLINE_EXCEEDED, address=address)
        pool = self._pool(target, address)
        timeout = Timeout(connect=min(self._connect_timeout, remaining), read=min(self._read_timeout, remaining))
        headers = {"Host": target.host_header, "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        response: HTTPResponse | None = None
        _scope.deadline = deadline
        _scope.watchdog = None
        try:
            response = cast(
                HTTPResponse,
                pool.urlopen(
                    "GET",
                    request_target,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    timeout=timeout,
                    preload_content=False,
                    decode_content=False,
                    release_conn=False,
                ),
            )
            body, complete = _read_body(response, self._max_response_bytes)
        except (HTTPError, OSError, http.client.HTTPException) as exc:
            fired = self._finish(response, reusable=False)
            expired = fired or time.monotonic() >= deadline
            error = HttpErrorCode.DEADLINE_EXCEEDED if expired else classify_error(exc)
            status = None if response is None else response.status
            headers_seen = None if response is None else response.headers
            return outcome(error, status, address, headers_seen)
        fired = self._finish(response, reusable=complete)
        self._trim()
        late = HttpErrorCode.DEADLINE_EXCEEDED if fired else None
        return outcome(late, response.status, address, response.headers, body)

    @staticmethod
    def _finish(response: HTTPResponse | None, *, reusable: bool) -> bool:
        """Disarm the watchdog, then return the connection to its pool (closed unless reusable)."""
        watchdog = _scope.watchdog
        _scope.deadline = None
        _scope.watchdog = None
        fired = watchdog.disarm() if watchdog is not None else False
        if response is not None:
            if fired or not reusable:
                response.close()
            response.release_conn()
        return fired
