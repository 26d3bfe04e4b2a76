"""Bounded connections and resolution in `PinnedHttpClient` (functions/egress_http.py), against real loopback servers.

Twelve keep-alive servers on distinct loopback addresses (127.0.0.2 … 127.0.0.13) stand in for
trackers whose DNS answers a new address each time: the client keeps at most its cap of idle
connections (and so of open descriptors), however many addresses it has talked to. A resolver
that hangs is cut off within the connect timeout instead of holding the GET.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

import pytest

from functions.core.egress import EgressPolicy
from functions.egress_http import HttpErrorCode, PinnedHttpClient

pytestmark = pytest.mark.integration

LOOPBACK = EgressPolicy(allowed_ports=frozenset({80, 443}), allow_private=(ip_network("127.0.0.0/8"),))
ADDRESSES = [f"127.0.0.{n}" for n in range(2, 14)]


class _KeepAlive(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def servers() -> Iterator[list[tuple[str, int]]]:
    started: list[http.server.ThreadingHTTPServer] = []
    try:
        for address in ADDRESSES:
            server = http.server.ThreadingHTTPServer((address, 0), _KeepAlive)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            started.append(server)
    except OSError as exc:  # a system without the whole 127.0.0.0/8 on its loopback interface
        pytest.skip(f"cannot listen on {address}: {exc}")
    yield [(str(server.server_address[0]), int(server.server_address[1])) for server in started]
    for server in started:
        server.shutdown()
        server.server_close()


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_idle_connections_stay_under_the_cap_however_many_addresses(servers: list[tuple[str, int]]) -> None:
    client = PinnedHttpClient(
        LOOPBACK,
        connect_timeout=1.0,
        read_timeout=1.0,
        total_timeout=2.0,
        max_response_bytes=1024,
        max_pools=8,
        max_idle_connections=4,
    )
    before = _open_descriptors()

    for round_ in range(3):
        for address, port in servers:
            outcome = client.get(f"http://{address}:{port}/cb?r={round_}")
            assert outcome.status_code == 200, outcome
            assert client.open_connections() <= 4

    assert client.open_connections() == 4  # the most recently used are kept, for reuse
    # Both ends of each kept connection live in this process (the servers close theirs when the
    # client hangs up): twice the cap, give or take one socket still closing. Without the cap the
    # 36 GETs to 12 addresses would leave 12 connections, 24 descriptors.
    assert _open_descriptors() - before <= 2 * 4 + 2
    client.close()
    assert client.open_connections() == 0


def test_connections_to_one_address_are_reused_within_the_cap(servers: list[tuple[str, int]]) -> None:
    client = PinnedHttpClient(
        LOOPBACK, connect_timeout=1.0, read_timeout=1.0, total_timeout=2.0, max_response_bytes=1024
    )
    address, port = servers[0]
    for n in range(20):
        assert client.get(f"http://{address}:{port}/cb?n={n}").status_code == 200
    assert client.open_connections() == 1
    client.close()


def test_a_hanging_resolver_is_cut_off_within_the_connect_timeout() -> None:
    release = threading.Event()
    calls: list[str] = []

    def hanging(host: str, port: int) -> list[IPv4Address | IPv6Address]:
        calls.append(host)
        release.wait(30)  # a resolver that does not answer (getaddrinfo has no timeout of its own)
        return [ip_address("127.0.0.1")]

    client = PinnedHttpClient(
        LOOPBACK,
        connect_timeout=0.2,
        read_timeout=1.0,
        total_timeout=3.0,
        max_response_bytes=1024,
        resolver=hanging,
    )
    try:
        outcome = client.get("http://tracker.example/cb")
        # The GET returned while the resolver was still stuck: it was not waited for.
        assert not release.is_set() and calls == ["tracker.example"]
        assert outcome.error == HttpErrorCode.CONNECT_TIMEOUT.value
        assert outcome.status_code is None
    finally:
        release.set()


def test_a_resolver_error_is_still_a_dns_error() -> None:
    def failing(host: str, port: int) -> list[IPv4Address | IPv6Address]:
        raise OSError("no such name")

    client = PinnedHttpClient(
        LOOPBACK, connect_timeout=0.5, read_timeout=1.0, total_timeout=2.0, max_response_bytes=1024, resolver=failing
    )
    assert client.get("http://tracker.example/cb").error == HttpErrorCode.DNS_ERROR.value
