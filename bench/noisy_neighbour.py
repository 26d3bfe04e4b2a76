"""Benchmark: noisy neighbour — one tarpit tracker must not hold the sender's capacity hostage.

Half of the deliveries go to one affiliate whose tracker never answers within the GET deadline
(it sleeps 10 s; the deadline here is scaled down to 2 s so that a run takes seconds, not minutes);
the other half go to 100 healthy trackers answering in 50 ms. Every tracker is a real HTTP server on
loopback (each its own host: 127.0.0.1 and a port of its own). Deliveries arrive at a steady rate;
`WORKERS` concurrent "invocations" (threads, each one Lambda container with its own sender and host
cache) take batches of 10 from an in-memory queue with SQS's visibility semantics, call the real
`DeliverySender.process_batch` with the real `PinnedHttpClient`, and delete or hide the messages as
Lambda and SQS would. The deliveries, postbacks and host states are in memory
(`tests/support/fakes.py`); the host states are shared by every worker, as the table is.

Measured for the healthy deliveries: latency (enqueue -> the tracker receives the GET) p50/p99, and
throughput (healthy deliveries / time until the last one arrived), each as a ratio to the same run
without the tarpit's deliveries. Both senders: without the host pause (the old behaviour,
`POSTBACKS_HOST_PAUSE_AFTER=0`) and with it (default: 5 failures, 60 s pause).

Before the pause can act, the tarpit's first GETs must fail: for one GET deadline every worker is
held (the transient). The pause then lasts 60 s, doubling to 1 h while the probes fail, so in real
time the transient is one deadline (10 s) an hour. The run reports the whole run and the steady
state (deliveries enqueued after the host was paused); the target is judged on the steady state, and
the whole run's figures are printed beside it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.report import BenchmarkResult, Row
from bench.stats import percentile
from functions.core.model import Delivery, DeliveryState, Postback, Scope, format_timestamp, utc_now

HEALTHY_TRACKERS = 100
HEALTHY_DELAY = 0.05
TARPIT_DELAY = 10.0
DEADLINE = 2.0  # scaled from the default 10 s
WORKERS = 8
BATCH = 10
TARGET_P99_RATIO = 1.5
TARGET_THROUGHPUT_RATIO = 0.8


class Tracker(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: dict[str, float] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: Tracker
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        delivery_id = parse_qs(urlsplit(self.path).query).get("d", [""])[0]
        if self.server.delay < TARPIT_DELAY:
            with self.server.lock:
                self.server.received.setdefault(delivery_id, time.monotonic())
        time.sleep(self.server.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def trackers() -> Iterator[tuple[list[Tracker], Tracker]]:
    healthy = [Tracker(HEALTHY_DELAY) for _ in range(HEALTHY_TRACKERS)]
    tarpit = Tracker(TARPIT_DELAY)
    for server in [*healthy, tarpit]:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield healthy, tarpit
    finally:
        for server in [*healthy, tarpit]:
            server.shutdown()
            server.server_close()


@dataclass
class _Message:
    message_id: str
    visible_at: float
    receives: int = 0


@dataclass
class SimQueue:
    """SQS's part: visible messages, a visibility timeout per receive, hidden until changed or deleted."""

    visibility_timeout: float = 30.0
    messages: dict[str, _Message] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, delivery_id: str) -> None:
        with self.lock:
            self.messages[delivery_id] = _Message(delivery_id, time.monotonic())

    def receive(self, count: int) -> list[str]:
        now = time.monotonic()
        with self.lock:
            visible = [m for m in self.messages.values() if m.visible_at <= now][:count]
            for message in visible:
                message.visible_at = now + self.visibility_timeout
                message.receives += 1
            return [m.message_id for m in visible]

    def change_visibility(self, receipt_handle: str, seconds: float) -> None:
        with self.lock:
            message = self.messages.get(receipt_handle)
            if message is not None:
                message.visible_at = time.monotonic() + seconds

    def delete(self, receipt_handle: str) -> None:
        with self.lock:
            self.messages.pop(receipt_handle, None)


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
    latencies: list[float]  # healthy, seconds, in enqueue order
    steady_latencies: list[float]
    throughput: float
    steady_throughput: float
    tarpit_gets: int
    paused_at: float | None


def _run(
    healthy: list[Tracker], tarpit: Tracker, *, with_tarpit: bool, pause: bool, rate: float, seconds: float
) -> RunResult:
    from functions import bootstrap
    from functions.core.host_pause import HostPausePolicy
    from functions.core.schedule import RetryPolicy
    from functions.egress_http import PinnedHttpClient
    from functions.sender.hosts import HostGuard
    from functions.sender.ports import IncomingMessage
    from functions.sender.service import DeliverySender
    from tests.support.fakes import InMemoryDeliveries, InMemoryHealth, InMemoryHosts, InMemoryPostbacks

    for server in healthy:
        server.received.clear()
    postbacks = InMemoryPostbacks(
        [_postback(n, server.port) for n, server in enumerate(healthy)] + [_postback(999, tarpit.port)]
    )
    deliveries = InMemoryDeliveries()
    hosts = InMemoryHosts(postbacks)
    queue = SimQueue()
    dead_letters = _DeadLetters()
    policy = HostPausePolicy(pause_after=5 if pause else 0, pause_seconds=60.0, probe_seconds=DEADLINE + 5)
    egress = bootstrap.egress_policy()
    tarpit_gets = [0]
    lock = threading.Lock()

    class CountingClient(PinnedHttpClient):
        def get(self, url: str) -> Any:
            if f":{tarpit.port}/" in url:
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
            retry_deadline_seconds=8640 * 30,
        )
        client = CountingClient(
            egress, connect_timeout=1.0, read_timeout=DEADLINE, total_timeout=DEADLINE, max_response_bytes=65536
        )
        return DeliverySender(
            deliveries=deliveries,
            postbacks=postbacks,
            health=InMemoryHealth(),
            http=client,
            queue=queue,
            dead_letters=dead_letters,
            policy=RetryPolicy(base_seconds=30.0, max_attempts=13),
            hosts=guard if pause else None,
            request_deadline_seconds=DEADLINE,
        )

    enqueued: dict[str, float] = {}
    stop = threading.Event()
    produced = threading.Event()

    def produce() -> None:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            due = start + n / rate
            pause_for = due - time.monotonic()
            if pause_for > 0:
                time.sleep(pause_for)
            index = n % HEALTHY_TRACKERS
            kinds = [("h", index)] + ([("t", 999)] if with_tarpit else [])
            for kind, postback_index in kinds:
                delivery_id = f"dl_{kind}{n:06d}"
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
                    enqueued[delivery_id] = time.monotonic()
                queue.send(delivery_id)
            n += 1
        produced.set()

    def work() -> None:
        sender = new_sender()
        while not stop.is_set():
            handles = queue.receive(BATCH)
            if not handles:
                time.sleep(0.005)
                continue
            messages = [IncomingMessage(handle, handle, f'{{"v": 1, "delivery_id": "{handle}"}}') for handle in handles]
            failed = set(sender.process_batch(messages, lambda: 900_000))
            for handle in handles:
                if handle not in failed:
                    queue.delete(handle)

    started = time.monotonic()
    threads = [threading.Thread(target=produce, daemon=True)] + [
        threading.Thread(target=work, daemon=True) for _ in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    produced.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with lock:
            received = sum(len(server.received) for server in healthy)
        if received >= len(enqueued):
            break
        time.sleep(0.05)
    stop.set()
    for thread in threads[1:]:
        thread.join(timeout=DEADLINE + 5)
    arrivals: dict[str, float] = {}
    for server in healthy:
        arrivals.update(server.received)
    missing = [d for d in enqueued if d not in arrivals]
    if missing:
        raise RuntimeError(f"{len(missing)} healthy deliveries never arrived")
    paused = [state.paused_until for state in hosts.states.values() if state.paused_until is not None]
    paused_at = (min(paused) - 60.0 - time.time() + time.monotonic()) if paused else None
    order = sorted(enqueued, key=enqueued.__getitem__)
    latencies = [arrivals[d] - enqueued[d] for d in order]
    steady_ids = [d for d in order if paused_at is None or enqueued[d] >= paused_at]
    steady = [arrivals[d] - enqueued[d] for d in steady_ids]
    last = max(arrivals.values())
    throughput = len(order) / (last - started)
    steady_start = enqueued[steady_ids[0]] if steady_ids else started
    steady_throughput = (
        len(steady_ids) / max(1e-9, max(arrivals[d] for d in steady_ids) - steady_start) if steady_ids else 0.0
    )
    return RunResult(
        latencies, steady, throughput, steady_throughput, tarpit_gets[0], paused_at and paused_at - started
    )


def run(quick: bool = True) -> BenchmarkResult:
    from bench.environment import prepare
    from functions import bootstrap
    from functions.settings import Settings, parse_private_targets

    prepare()
    bootstrap.reset(dataclasses.replace(Settings(), allow_private_targets=parse_private_targets("1")))
    rate, seconds = (40.0, 20.0) if quick else (60.0, 60.0)
    results: dict[str, RunResult] = {}
    with trackers() as (healthy, tarpit):
        for name, with_tarpit, pause in (
            ("baseline_old", False, False),
            ("tarpit_old", True, False),
            ("baseline_new", False, True),
            ("tarpit_new", True, True),
        ):
            results[name] = _run(healthy, tarpit, with_tarpit=with_tarpit, pause=pause, rate=rate, seconds=seconds)
    bootstrap.reset()
    return _result(results, rate, seconds)


def _ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("inf")


def _result(results: dict[str, RunResult], rate: float, seconds: float) -> BenchmarkResult:
    name = "noisy_neighbour"
    rows: list[Row] = []
    details: dict[str, Any] = {"rate_per_second": rate, "seconds": seconds, "workers": WORKERS, "deadline": DEADLINE}
    for sender in ("old", "new"):
        base, loaded = results[f"baseline_{sender}"], results[f"tarpit_{sender}"]
        steady = sender == "new"
        latencies = loaded.steady_latencies if steady and loaded.steady_latencies else loaded.latencies
        throughput = loaded.steady_throughput if steady and loaded.steady_latencies else loaded.throughput
        p50 = _ratio(percentile(latencies, 50), percentile(base.latencies, 50))
        p99 = _ratio(percentile(latencies, 99), percentile(base.latencies, 99))
        tput = _ratio(throughput, base.throughput)
        label = "host pause, steady state" if steady else "no host pause (old)"
        judged = steady
        rows += [
            Row(name, f"healthy p50 with tarpit / without ({label})", p50, "x"),
            Row(
                name,
                f"healthy p99 with tarpit / without ({label})",
                p99,
                "x",
                target=f"<= {TARGET_P99_RATIO}x" if judged else "",
                met=(p99 <= TARGET_P99_RATIO) if judged else None,
            ),
            Row(
                name,
                f"healthy throughput with tarpit / without ({label})",
                tput,
                "x",
                target=f">= {TARGET_THROUGHPUT_RATIO}x" if judged else "",
                met=(tput >= TARGET_THROUGHPUT_RATIO) if judged else None,
            ),
        ]
        if steady:
            whole_p99 = _ratio(percentile(loaded.latencies, 99), percentile(base.latencies, 99))
            whole_tput = _ratio(loaded.throughput, base.throughput)
            rows += [
                Row(
                    name,
                    "healthy p99 with tarpit / without (host pause, whole run)",
                    whole_p99,
                    "x",
                    note="includes the transient: one GET deadline before the first pause",
                ),
                Row(name, "healthy throughput with tarpit / without (host pause, whole run)", whole_tput, "x"),
            ]
        details[sender] = {
            "baseline_p50_ms": percentile(base.latencies, 50) * 1000,
            "baseline_p99_ms": percentile(base.latencies, 99) * 1000,
            "tarpit_p50_ms": percentile(loaded.latencies, 50) * 1000,
            "tarpit_p99_ms": percentile(loaded.latencies, 99) * 1000,
            "steady_p99_ms": percentile(loaded.steady_latencies, 99) * 1000 if loaded.steady_latencies else None,
            "baseline_throughput": base.throughput,
            "tarpit_throughput": loaded.throughput,
            "tarpit_gets": loaded.tarpit_gets,
            "paused_after_seconds": loaded.paused_at,
        }
        rows.append(Row(name, f"GETs to the tarpit ({label})", float(loaded.tarpit_gets), "count"))
    return BenchmarkResult(name, rows, details)
