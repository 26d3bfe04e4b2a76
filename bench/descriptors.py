"""Benchmark: open file descriptors after 1,000 GETs to distinct addresses stay within the connection cap.

A tracker whose DNS answers a new address each time makes every GET a new pool: without a bound,
each one leaves an idle keep-alive connection, an open descriptor, and Lambda allows 1,024. The
product's client (`functions/egress_http.py`, built by `bootstrap.new_http_client` from the
local-development configuration, the only one that lets loopback through the egress guard) keeps
at most `MAX_POOLS` pools and `MAX_IDLE_CONNECTIONS` idle connections in all.

Real GETs: a receiver in a child process (so that this process's descriptors are the client's
only) listens on one port of 1,000 loopback addresses (127.0.1.1 … 127.0.4.250: every one its
own listening socket, nothing outside loopback) and answers 200 with keep-alive. This process sends
one GET to each address, one after another, counting its open descriptors (`/proc/self/fd`) before,
after every GET, and at the end. The same run with a client whose caps are lifted (pools and idle
connections up to 2,000) shows what the caps prevent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.report import BenchmarkResult, Row

ADDRESSES = [f"127.0.{block}.{host}" for block in range(1, 5) for host in range(1, 251)]
UNCAPPED = 2000

# The receiver: asyncio servers on one port of every address, HTTP/1.1 keep-alive, 200 "ok".
_RECEIVER = r"""
import asyncio, sys

async def answer(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main(addresses):
    first = await asyncio.start_server(answer, addresses[0], 0)
    port = first.sockets[0].getsockname()[1]
    for address in addresses[1:]:
        await asyncio.start_server(answer, address, port)
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(sys.argv[1:]))
"""


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextmanager
def receiver(addresses: list[str]) -> Iterator[int]:
    """The receiver's port; it stops when its standard input closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", _RECEIVER, *addresses], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError("the receiver did not start (are 127.0.1.1-127.0.4.250 on the loopback interface?)")
        yield int(line)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _measure(client: Any, port: int) -> dict[str, int]:
    before = open_descriptors()
    peak = before
    failed = 0
    for n, address in enumerate(ADDRESSES):
        outcome = client.get(f"http://{address}:{port}/cb?n={n}")
        failed += outcome.status_code != 200
        peak = max(peak, open_descriptors())
    after = open_descriptors()
    kept = client.open_connections()
    client.close()
    return {
        "before": before,
        "after": after,
        "growth": after - before,
        "peak_growth": peak - before,
        "kept_connections": kept,
        "after_close_growth": open_descriptors() - before,
        "failed_gets": failed,
    }


def run(quick: bool = True) -> BenchmarkResult:
    from bench.environment import prepare
    from functions import bootstrap
    from functions.egress_http import MAX_IDLE_CONNECTIONS, MAX_POOLS, PinnedHttpClient

    prepare()  # the local-development configuration: local mode, loopback allowed
    bootstrap.reset()
    try:
        config = bootstrap.settings()
        if not config.allow_private_targets:
            raise RuntimeError("loopback targets need the local-development configuration")
        with receiver(ADDRESSES) as port:
            capped = _measure(bootstrap.new_http_client(), port)
            uncapped = _measure(
                PinnedHttpClient(
                    bootstrap.egress_policy(),
                    connect_timeout=config.connect_timeout_seconds,
                    read_timeout=config.read_timeout_seconds,
                    total_timeout=config.total_timeout_seconds,
                    max_response_bytes=config.max_response_bytes,
                    max_pools=UNCAPPED,
                    max_idle_connections=UNCAPPED,
                ),
                port,
            )
    finally:
        bootstrap.reset()
    if capped["failed_gets"] or uncapped["failed_gets"]:
        raise RuntimeError(f"GETs failed: {capped['failed_gets']} capped, {uncapped['failed_gets']} uncapped")
    name = "descriptors"
    cap = MAX_IDLE_CONNECTIONS
    rows = [
        Row(
            name,
            f"open descriptors after {len(ADDRESSES):,} GETs to distinct addresses (growth)",
            float(capped["growth"]),
            "count",
            target=f"<= {cap} (the idle-connection cap)",
            met=capped["growth"] <= cap,
            note=f"peak during the run +{capped['peak_growth']}; {capped['kept_connections']} connections kept",
        ),
        Row(
            name,
            f"open descriptors after {len(ADDRESSES):,} GETs, caps lifted to {UNCAPPED:,} (growth)",
            float(uncapped["growth"]),
            "count",
        ),
    ]
    details = {"addresses": len(ADDRESSES), "max_pools": MAX_POOLS, "max_idle_connections": cap}
    return BenchmarkResult(name, rows, {**details, "capped": capped, "uncapped": uncapped})
