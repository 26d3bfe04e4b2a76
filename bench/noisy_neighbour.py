"""Benchmark: noisy neighbour — one tarpit tracker must not hold the sender's capacity hostage.

The model (docs/performance.md, noisy neighbour):

- **Trackers**: 100 healthy trackers answering in 50 ms and one tarpit that answers after 10 s,
  past the GET deadline (a tracker that trickles its answer, or never sends one, holds a GET just
  as long). Every tracker is a real HTTP server on loopback, its own host (127.0.0.1 and a port of
  its own).
- **Time** is scaled by `SCALE` (1/5) so that a run takes seconds: every duration of the product
  that shapes the outcome is scaled alike — the GET deadline (10 s -> 2 s; the connect timeout 3 s
  -> 0.6 s; the read timeout is the whole deadline, the worst case), the host pause (60 s ->
  12 s) and its probe, the retry schedule's base (30 s -> 6 s), the host cache (1.5 s -> 0.3 s),
  the backfill's start (1 s -> 0.2 s) and its long poll (1 s -> 0.2 s), the lease and the queue's
  visibility timeout (180 s -> 36 s).
- **Lambda and SQS**: `WORKERS` concurrent invocations (the event source's `MaximumConcurrency`;
  each a thread with its own sender and host cache, as a container has) take batches of up to 10
  visible messages from an in-memory queue with SQS's visibility semantics, call the real
  `DeliverySender.process_batch` with the real `PinnedHttpClient`, and delete the messages the
  batch response acknowledges. An invocation polls again 5 ms after finding the queue empty. While
  a slow GET holds it, the new sender takes messages from the same queue itself (backfill) and
  deletes those it acknowledges. The deliveries, postbacks and host states are in memory
  (`tests/support/fakes.py`); the host states are shared by every invocation, as the table is.
- **Load**: deliveries are created at a steady rate (`rate` per second of each kind), one to a
  healthy tracker (round robin) and, with the tarpit, one to the tarpit. A warm-up of healthy
  deliveries only (`WARMUP_SECONDS`, not measured) comes first in every run, so that neither run
  is judged on the process's cold start; the tarpit's deliveries start with the measured period,
  as when a tracker turns bad, or a new postback points at a dead one. Eight invocations against
  40 tarpit deliveries a second of 2 s each is the saturated case: held for the whole deadline,
  the tarpit's deliveries alone would need ten times the sender's concurrency.

Measured for the healthy deliveries of the measured period, over the whole of it (the tarpit's
first deadlines included): latency = created -> the healthy tracker receives the GET (what the
affiliate sees; an acknowledgement to SQS is nothing it can see) p50/p99, and throughput = healthy
deliveries / time from the start of the period until the last one arrived; each as a ratio to the
same run without the tarpit. Both senders: the one before the tracker protection (no host pause:
`POSTBACKS_HOST_PAUSE_AFTER=0`, no backfill: `POSTBACKS_SENDER_BACKFILL_AFTER_SECONDS=0`) and
the current one (both at their defaults, scaled).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench.report import BenchmarkResult, Row
from bench.stats import median, percentile
from functions.core.model import Delivery, DeliveryState, Postback, Scope, format_timestamp, utc_now
from functions.sender.ports import IncomingMessage

SCALE = 0.2  # every duration of the product below is its default times this
HEALTHY_TRACKERS = 100
HEALTHY_DELAY = 0.05
TARPIT_DELAY = 10.0
DEADLINE = 10.0 * SCALE  # POSTBACKS_TOTAL_TIMEOUT_SECONDS
CONNECT_TIMEOUT = 3.0 * SCALE
PAUSE_SECONDS = 60.0 * SCALE  # POSTBACKS_HOST_PAUSE_SECONDS
PROBE_SECONDS = (10.0 + 5.0) * SCALE  # the probe's claim: the GET deadline and a margin
RETRY_BASE_SECONDS = 30.0 * SCALE
LEASE_SECONDS = 30.0 * SCALE
HOST_CACHE_SECONDS = 1.5 * SCALE
BACKFILL_AFTER_SECONDS = 1.0 * SCALE  # POSTBACKS_SENDER_BACKFILL_AFTER_SECONDS
LONG_POLL_SECONDS = 1.0 * SCALE
VISIBILITY_TIMEOUT = 180.0 * SCALE  # the deliveries queue's VisibilityTimeout (infrastructure/template.json)
WORKERS = 8
BATCH = 10
EMPTY_POLL_SECONDS = 0.005
WARMUP_SECONDS = 3.0
ROUNDS = 3  # alternating pairs (without, with the tarpit) of the current sender
TARGET_P99_RATIO = 1.5
TARGET_THROUGHPUT_RATIO = 0.8


# The trackers: asyncio servers in a child process (other machines, as far as this process's CPU
# and GIL go). Each records when a GET arrives (CLOCK_MONOTONIC, the same clock in both processes),
# waits its delay and answers 200 with keep-alive. Commands on stdin: `count` (healthy measured
# arrivals), `dump` (all arrivals as JSON), `clear`; end of input stops it.
_TRACKERS = r"""
import asyncio, json, sys, time
from urllib.parse import parse_qs, urlsplit

HEALTHY, HEALTHY_DELAY, TARPIT_DELAY = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
arrivals = {}

def serve(delay):
    async def answer(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                delivery_id = parse_qs(urlsplit(target).query).get("d", [""])[0]
                arrivals.setdefault(delivery_id, time.monotonic())
                await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()
    return answer

async def main():
    healthy = [await asyncio.start_server(serve(HEALTHY_DELAY), "127.0.0.1", 0) for _ in range(HEALTHY)]
    tarpit = await asyncio.start_server(serve(TARPIT_DELAY), "127.0.0.1", 0)
    port = lambda server: server.sockets[0].getsockname()[1]
    print(json.dumps({"healthy": [port(s) for s in healthy], "tarpit": port(tarpit)}), flush=True)
    loop = asyncio.get_running_loop()
    while command := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if command == "count":
            print(sum(1 for key in arrivals if key.startswith("dl_h")), flush=True)
        elif command == "dump":
            print(json.dumps(arrivals), flush=True)
        elif command == "clear":
            arrivals.clear()
            print("ok", flush=True)

asyncio.run(main())
"""


class Trackers:
    """The trackers' process: their ports, and when each delivery's GET arrived."""

    def __init__(self) -> None:
        command = [sys.executable, "-c", _TRACKERS, str(HEALTHY_TRACKERS), str(HEALTHY_DELAY), str(TARPIT_DELAY)]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ports = json.loads(self._read())
        self.healthy_ports: list[int] = ports["healthy"]
        self.tarpit_port: int = ports["tarpit"]

    def _read(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the trackers' process stopped")
        return line

    def _ask(self, command: str) -> str:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._read()

    def clear(self) -> None:
        self._ask("clear")

    def measured_arrivals(self) -> int:
        return int(self._ask("count"))

    def arrivals(self) -> dict[str, float]:
        answer: dict[str, float] = json.loads(self._ask("dump"))
        return answer

    def stop(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextmanager
def trackers() -> Iterator[Trackers]:
    running = Trackers()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class _Message:
    message_id: str
    visible_at: float
    receives: int = 0


@dataclass
class SimQueue:
    """SQS's part: visible messages, a visibility timeout per receive, hidden until changed or deleted.

    Messages become visible in the order of their visibility time (a heap; entries made stale by a
    later change or a delete are skipped), so a receive costs the same however many are hidden.
    """

    visibility_timeout: float = VISIBILITY_TIMEOUT
    messages: dict[str, _Message] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _heap: list[tuple[float, int, str]] = field(default_factory=list)
    _sequence: int = 0

    def _schedule(self, message: _Message) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, (message.visible_at, self._sequence, message.message_id))

    def send(self, delivery_id: str) -> None:
        with self.lock:
            message = _Message(delivery_id, time.monotonic())
            self.messages[delivery_id] = message
            self._schedule(message)

    def receive(self, count: int) -> list[IncomingMessage]:
        now = time.monotonic()
        visible: list[_Message] = []
        with self.lock:
            while self._heap and len(visible) < count and self._heap[0][0] <= now:
                visible_at, _, message_id = heapq.heappop(self._heap)
                message = self.messages.get(message_id)
                if message is None or message.visible_at != visible_at or message in visible:
                    continue  # deleted, or its visibility changed since this entry
                message.visible_at = now + self.visibility_timeout
                message.receives += 1
                self._schedule(message)
                visible.append(message)
        return [
            IncomingMessage(m.message_id, m.message_id, f'{{"v": 1, "delivery_id": "{m.message_id}"}}', m.receives)
            for m in visible
        ]

    def change_visibility(self, receipt_handle: str, seconds: float) -> None:
        with self.lock:
            message = self.messages.get(receipt_handle)
            if message is not None:
                message.visible_at = time.monotonic() + seconds
                self._schedule(message)

    def delete(self, receipt_handle: str) -> None:
        with self.lock:
            self.messages.pop(receipt_handle, None)


class BackfillQueue:
    """The backfill's view of the queue (`functions.sender.backfill.BackfillSource`): long polling, deletes."""

    def __init__(self, queue: SimQueue) -> None:
        self._queue = queue
        self.taken = 0
        self._lock = threading.Lock()

    def receive(self, max_messages: int) -> list[IncomingMessage]:
        until = time.monotonic() + LONG_POLL_SECONDS
        while True:
            messages = self._queue.receive(max_messages)
            if messages or time.monotonic() >= until:
                with self._lock:
                    self.taken += len(messages)
                return messages
            time.sleep(EMPTY_POLL_SECONDS)

    def delete(self, receipt_handles: Sequence[str]) -> None:
        for handle in receipt_handles:
            self._queue.delete(handle)


class _DeadLetters:
    def send(self, body: dict[str, Any], attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str:
        return "dead-letter"


def _postback(index: int, port: int) -> Postback:
    stamp = "2026-01-01T00:00:00.000000Z"
    return Postback(
        id=f"pb_noisy{index}",
        affiliate_id=f"aff-{index}",
        scope=Scope.GLOBAL,
        included_offer_ids=(),
        excluded_offer_ids=(),
        conversion_types=("sale",),
        conversion_statuses=("approved",),
        url=f"http://127.0.0.1:{port}/pb?d={{deliveryId}}",
        enabled=True,
        created_at=stamp,
        updated_at=stamp,
        version=1,
    )


@dataclass
class RunResult:
    latencies: list[float]  # healthy deliveries of the measured period, seconds, in creation order
    throughput: float
    tarpit_gets: int
    taken: int  # messages taken by backfill
    pauses: list[float]  # when the tarpit was paused, seconds from the start of the measured period


def _run(trackers: Trackers, *, with_tarpit: bool, protected: bool, rate: float, seconds: float) -> RunResult:
    from functions import bootstrap
    from functions.core.host_pause import HostPausePolicy
    from functions.core.schedule import RetryPolicy
    from functions.egress_http import PinnedHttpClient
    from functions.sender.backfill import Backfill
    from functions.sender.hosts import HostGuard
    from functions.sender.service import DeliverySender
    from tests.support.fakes import InMemoryDeliveries, InMemoryHealth, InMemoryHosts, InMemoryPostbacks

    class _CountingPauses(InMemoryHosts):
        """The shared host states, noting when each pause was written."""

        def __init__(self, postbacks: InMemoryPostbacks) -> None:
            super().__init__(postbacks)
            self.paused_at: list[float] = []

        def pause(self, host: str, until: float, pauses_before: int, now: float) -> Any:
            state = super().pause(host, until, pauses_before, now)
            if state is not None:
                self.paused_at.append(time.monotonic())
            return state

    trackers.clear()
    tarpit_port = trackers.tarpit_port
    postbacks = InMemoryPostbacks(
        [_postback(n, port) for n, port in enumerate(trackers.healthy_ports)] + [_postback(999, tarpit_port)]
    )
    deliveries = InMemoryDeliveries()
    hosts = _CountingPauses(postbacks)
    queue = SimQueue()
    backfill_queue = BackfillQueue(queue)
    dead_letters = _DeadLetters()
    policy = HostPausePolicy(
        pause_after=5 if protected else 0, pause_seconds=PAUSE_SECONDS, probe_seconds=PROBE_SECONDS
    )
    egress = bootstrap.egress_policy()
    tarpit_gets = [0]
    lock = threading.Lock()

    class CountingClient(PinnedHttpClient):
        def get(self, url: str) -> Any:
            if f":{tarpit_port}/" in url:
                with lock:
                    tarpit_gets[0] += 1
            return super().get(url)

    def new_sender() -> DeliverySender:
        guard = HostGuard(
            hosts,
            policy,
            deliveries=deliveries,
            queue=queue,
            dead_letters=dead_letters,
            retry_deadline_seconds=8640 * RETRY_BASE_SECONDS,
            cache_seconds=HOST_CACHE_SECONDS,
        )
        client = CountingClient(
            egress,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=DEADLINE,
            total_timeout=DEADLINE,
            max_response_bytes=65536,
        )
        return DeliverySender(
            deliveries=deliveries,
            postbacks=postbacks,
            health=InMemoryHealth(),
            http=client,
            queue=queue,
            dead_letters=dead_letters,
            policy=RetryPolicy(base_seconds=RETRY_BASE_SECONDS, max_attempts=13),
            hosts=guard if protected else None,
            backfill=Backfill(backfill_queue, after_seconds=BACKFILL_AFTER_SECONDS) if protected else None,
            lease_seconds=LEASE_SECONDS,
            request_deadline_seconds=DEADLINE,
        )

    created: dict[str, float] = {}  # measured healthy deliveries
    stop = threading.Event()
    produced = threading.Event()
    measured_from = [0.0]

    def create(kind: str, n: int, postback_index: int) -> None:
        delivery_id = f"dl_{kind}{n:06d}"
        at = time.monotonic()
        now = utc_now()
        postback = postbacks.get(f"pb_noisy{postback_index}")
        assert postback is not None
        deliveries.records[delivery_id] = Delivery(
            delivery_id=delivery_id,
            postback_id=postback.id,
            affiliate_id=postback.affiliate_id,
            conversion_id=f"c{n}",
            conversion_status="approved",
            url=postback.url.replace("{deliveryId}", delivery_id),
            target_host="127.0.0.1",
            state=DeliveryState.PENDING,
            created_at=format_timestamp(now),
            updated_at=format_timestamp(now),
            expires_at=int((now + timedelta(days=1)).timestamp()),
        )
        if kind == "h":
            created[delivery_id] = at
        queue.send(delivery_id)

    def produce() -> None:
        start = time.monotonic()
        warmup = int(WARMUP_SECONDS * rate)
        for n in range(warmup + int(seconds * rate)):
            pause_for = start + n / rate - time.monotonic()
            if pause_for > 0:
                time.sleep(pause_for)
            if n < warmup:
                create("w", n, n % HEALTHY_TRACKERS)
                continue
            if n == warmup:
                measured_from[0] = time.monotonic()
            create("h", n, n % HEALTHY_TRACKERS)
            if with_tarpit:
                create("t", n, 999)
        produced.set()

    def work() -> None:
        sender = new_sender()
        while not stop.is_set():
            messages = queue.receive(BATCH)
            if not messages:
                time.sleep(EMPTY_POLL_SECONDS)
                continue
            failed = set(sender.process_batch(messages, lambda: 900_000))
            for message in messages:
                if message.message_id not in failed:
                    queue.delete(message.receipt_handle)

    threads = [threading.Thread(target=produce, daemon=True)] + [
        threading.Thread(target=work, daemon=True) for _ in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    produced.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if trackers.measured_arrivals() >= len(created):
            break
        time.sleep(0.05)
    stop.set()
    for thread in threads[1:]:
        thread.join(timeout=DEADLINE * 3)
    arrivals = trackers.arrivals()
    missing = [d for d in created if d not in arrivals]
    if missing:
        raise RuntimeError(f"{len(missing)} healthy deliveries never arrived")
    order = sorted(created, key=created.__getitem__)
    latencies = [arrivals[d] - created[d] for d in order]
    throughput = len(order) / (max(arrivals[d] for d in order) - measured_from[0])
    pauses = [round(at - measured_from[0], 2) for at in hosts.paused_at]
    return RunResult(latencies, throughput, tarpit_gets[0], backfill_queue.taken, pauses)


def run(quick: bool = True) -> BenchmarkResult:
    from bench.environment import prepare
    from functions import bootstrap
    from functions.settings import Settings, parse_private_targets

    prepare()
    bootstrap.reset(dataclasses.replace(Settings(), allow_private_targets=parse_private_targets("1")))
    rate, seconds = (40.0, 20.0) if quick else (60.0, 60.0)
    pairs: dict[str, list[tuple[RunResult, RunResult]]] = {"old": [], "new": []}
    try:
        with trackers() as running:
            # The old sender once (its ratios are in the hundreds); the current one in ROUNDS
            # alternating pairs, so that a burst of load from elsewhere moves one pair, not the figure.
            for sender, rounds in (("old", 1), ("new", ROUNDS)):
                for _ in range(rounds):
                    protected = sender == "new"
                    base = _run(running, with_tarpit=False, protected=protected, rate=rate, seconds=seconds)
                    loaded = _run(running, with_tarpit=True, protected=protected, rate=rate, seconds=seconds)
                    pairs[sender].append((base, loaded))
    finally:
        bootstrap.reset()
    return _result(pairs, rate, seconds)


def _ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("inf")


def _ratios(base: RunResult, loaded: RunResult) -> dict[str, float]:
    return {
        "p50": _ratio(percentile(loaded.latencies, 50), percentile(base.latencies, 50)),
        "p99": _ratio(percentile(loaded.latencies, 99), percentile(base.latencies, 99)),
        "throughput": _ratio(loaded.throughput, base.throughput),
    }


def _pair_details(base: RunResult, loaded: RunResult) -> dict[str, Any]:
    return {
        "baseline_p50_ms": percentile(base.latencies, 50) * 1000,
        "baseline_p99_ms": percentile(base.latencies, 99) * 1000,
        "tarpit_p50_ms": percentile(loaded.latencies, 50) * 1000,
        "tarpit_p99_ms": percentile(loaded.latencies, 99) * 1000,
        "tarpit_max_ms": max(loaded.latencies) * 1000,
        "baseline_throughput": base.throughput,
        "tarpit_throughput": loaded.throughput,
        "tarpit_gets": loaded.tarpit_gets,
        "taken_by_backfill": loaded.taken,
        "baseline_taken_by_backfill": base.taken,
        "tarpit_paused_at_seconds": loaded.pauses,
        **_ratios(base, loaded),
    }


def _result(pairs: dict[str, list[tuple[RunResult, RunResult]]], rate: float, seconds: float) -> BenchmarkResult:
    name = "noisy_neighbour"
    rows: list[Row] = []
    details: dict[str, Any] = {
        "rate_per_second": rate,
        "seconds": seconds,
        "warmup_seconds": WARMUP_SECONDS,
        "workers": WORKERS,
        "scale": SCALE,
        "deadline": DEADLINE,
    }
    for sender, label in (("old", "no host pause, no backfill (old)"), ("new", "host pause + backfill")):
        judged = sender == "new"
        measured = [_ratios(base, loaded) for base, loaded in pairs[sender]]
        figures = {key: median([ratios[key] for ratios in measured]) for key in ("p50", "p99", "throughput")}

        def spread(key: str, values: list[dict[str, float]] = measured) -> str:
            if len(values) < 2:
                return ""
            ordered = sorted(ratios[key] for ratios in values)
            return f"median of {len(values)} alternating pairs; pairs {ordered[0]:.2f}-{ordered[-1]:.2f}x"

        p99, tput = figures["p99"], figures["throughput"]
        rows += [
            Row(name, f"healthy p50 with tarpit / without ({label})", figures["p50"], "x", note=spread("p50")),
            Row(
                name,
                f"healthy p99 with tarpit / without ({label})",
                p99,
                "x",
                target=f"<= {TARGET_P99_RATIO}x" if judged else "",
                met=(p99 <= TARGET_P99_RATIO) if judged else None,
                note=spread("p99")
                + ("; whole measured period, the tarpit's first deadlines included" if judged else ""),
            ),
            Row(
                name,
                f"healthy throughput with tarpit / without ({label})",
                tput,
                "x",
                target=f">= {TARGET_THROUGHPUT_RATIO}x" if judged else "",
                met=(tput >= TARGET_THROUGHPUT_RATIO) if judged else None,
                note=spread("throughput"),
            ),
            Row(
                name, f"GETs to the tarpit ({label})", median([float(p[1].tarpit_gets) for p in pairs[sender]]), "count"
            ),
        ]
        if judged:
            taken = median([float(loaded.taken) for _, loaded in pairs[sender]])
            rows.append(Row(name, f"messages taken by backfill ({label})", taken, "count"))
        details[sender] = [_pair_details(base, loaded) for base, loaded in pairs[sender]]
    return BenchmarkResult(name, rows, details)
