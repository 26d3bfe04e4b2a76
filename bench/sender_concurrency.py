"""Benchmark 3: sender concurrency — a batch of 50 deliveries to receivers that answer in 200 ms.

The real handler (`functions.sender.handler.on_delivery_message`, resolved by its handler string)
gets one Lambda-shaped SQS event of 50 records — one call with 50 records, since Lambda's SQS
batch is 10 but the target is stated for 50 — against moto in-process (tables and queues from the
template; delivery and postback records seeded) and loopback receivers (ThreadingHTTPServer,
each request sleeps 200 ms, then 200 OK). The deliveries are spread over five loopback hosts
(127.0.0.1-5, ten each: the sender caps concurrency per host at
`POSTBACKS_SENDER_PER_HOST_CONCURRENCY` = 10); the same 50 on one host are measured too, to show
the per-host cap. The baseline sends the same URLs one after another with the same HTTP client
(`PinnedHttpClient`). A batch of 10 (what Lambda delivers) is timed for the cost model, and the
sender's AWS requests per delivery are counted.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.counting import RequestCounter, forget_cached_clients
from bench.report import BenchmarkResult, Row
from bench.stats import median, ratio

HANDLER = "functions.sender.handler.on_delivery_message"
RECEIVER_DELAY_SECONDS = 0.2
BATCH = 50
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
TARGET_WALL_SECONDS = 2 * RECEIVER_DELAY_SECONDS
TARGET_RATIO = 20.0


class SlowReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, delay: float) -> None:
        self.delay = delay
        self.received: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        super().__init__((host, 0), _SlowHandler)


class _SlowHandler(BaseHTTPRequestHandler):
    server: SlowReceiver

    def do_GET(self) -> None:
        time.sleep(self.server.delay)
        with self.server.lock:
            self.server.received.append((time.time(), self.path))
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def receivers(hosts: tuple[str, ...], delay: float) -> Iterator[list[SlowReceiver]]:
    servers = [SlowReceiver(host, delay) for host in hosts]
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def run(quick: bool = True) -> BenchmarkResult:
    import boto3
    from moto import mock_aws

    from bench.environment import prepare

    prepare()
    forget_cached_clients()
    counter = RequestCounter()
    with counter.installed(), mock_aws(), receivers(HOSTS, RECEIVER_DELAY_SECONDS) as servers:
        return _run(counter, servers, quick, boto3)


def _run(counter: RequestCounter, servers: list[SlowReceiver], quick: bool, boto3: Any) -> BenchmarkResult:
    from functions.core.matching import PlannedDelivery
    from functions.core.model import Postback, Scope, delivery_id_for, utc_now
    from functions.sender import service as sender_service
    from functions.sender.http_client import PinnedHttpClient
    from functions.settings import load_settings
    from functions.storage.deliveries import DeliveryRepository
    from functions.storage.postbacks import PostbackRepository
    from infrastructure.resources import create_all
    from local.lambda_runtime import LambdaContext, resolve_handler, sqs_event_record

    counter.enabled = False
    settings = load_settings()
    sqs = boto3.client("sqs")
    created = create_all(boto3.client("dynamodb"), sqs, settings, conversions=False)
    queue_arn = sqs.get_queue_attributes(QueueUrl=created.queue_urls["DeliveriesQueue"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    postbacks = PostbackRepository()
    deliveries = DeliveryRepository()
    postback_ids = []
    now_text = "2026-01-01T00:00:00.000000Z"
    for index, server in enumerate(servers):
        host, port = str(server.server_address[0]), int(server.server_address[1])
        postback = Postback(
            id=f"pb_benchsender{index}",
            affiliate_id=f"aff-sender-{index}",
            scope=Scope.GLOBAL,
            included_offer_ids=(),
            excluded_offer_ids=(),
            conversion_types=("sale",),
            conversion_statuses=("approved",),
            url=f"http://{host}:{port}/pb?d={{deliveryId}}",
            enabled=True,
            created_at=now_text,
            updated_at=now_text,
            version=1,
        )
        postbacks.create(postback, limit=100)
        postback_ids.append(postback.id)

    def make_batch(size: int, hosts: int) -> list[dict[str, Any]]:
        records = []
        for number in range(size):
            server = servers[number % hosts]
            host, port = str(server.server_address[0]), int(server.server_address[1])
            postback_id = postback_ids[number % hosts]
            conversion_id = f"cv-{uuid.uuid4().hex}"
            delivery_id = delivery_id_for(postback_id, conversion_id, "approved")
            deliveries.create(
                PlannedDelivery(
                    delivery_id=delivery_id,
                    postback_id=postback_id,
                    affiliate_id=f"aff-sender-{number % hosts}",
                    conversion_id=conversion_id,
                    conversion_status="approved",
                    previous_status="pending",
                    offer_id="offer-1",
                    url=f"http://{host}:{port}/pb?d={delivery_id}",
                    target_host=str(host),
                ),
                now=utc_now(),
                ttl_days=settings.delivery_ttl_days,
            )
            message = {
                "MessageId": str(uuid.uuid4()),
                "ReceiptHandle": uuid.uuid4().hex,
                "Body": json.dumps({"v": 1, "delivery_id": delivery_id}),
                "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
            }
            records.append(sqs_event_record(message, queue_arn))
        return records

    sender_service.set_delivery_sender(None)
    handler = resolve_handler(HANDLER)

    def timed_call(records: list[dict[str, Any]]) -> float:
        started = time.perf_counter()
        response = handler({"Records": records}, LambdaContext("on_delivery_message", 30.0))
        elapsed = time.perf_counter() - started
        if response.get("batchItemFailures"):
            raise RuntimeError(f"the sender reported failures: {response}")
        return elapsed

    timed_call(make_batch(5, 5))  # cold start: builds the sender, pools, clients
    runs = 3 if quick else 7
    concurrent: list[float] = []
    prepared = [make_batch(BATCH, len(HOSTS)) for _ in range(runs)]
    before = counter.snapshot()
    counter.enabled = True
    for records in prepared:
        concurrent.append(timed_call(records))
    counter.enabled = False
    usage = counter.snapshot().minus(before)
    one_host = [timed_call(make_batch(BATCH, 1)) for _ in range(max(1, runs // 2))]
    batch_of_ten = [timed_call(make_batch(10, len(HOSTS))) for _ in range(runs)]

    client = PinnedHttpClient.from_settings(settings)
    urls = [
        f"http://{server.server_address[0]!s}:{server.server_address[1]}/seq?n={number}"
        for number, server in ((n, servers[n % len(servers)]) for n in range(BATCH))
    ]
    client.get(urls[0])  # warm the pool like the handler's warm-up
    started = time.perf_counter()
    for url in urls:
        outcome = client.get(url)
        if outcome.status_code != 200:
            raise RuntimeError(f"sequential baseline got {outcome.status_code} {outcome.error}")
    sequential = time.perf_counter() - started
    client.close()
    sender_service.set_delivery_sender(None)

    wall = median(concurrent)
    speedup = ratio(sequential, wall)
    deliveries_sent = BATCH * runs
    per_delivery = {name: count / deliveries_sent for name, count in usage.by_operation().items()}
    rows = [
        Row(
            "3 sender concurrency",
            f"{BATCH} deliveries, 200 ms receiver, 5 hosts (one handler call)",
            wall,
            "s",
            f"< {TARGET_WALL_SECONDS:.1f} s",
            wall < TARGET_WALL_SECONDS,
            note=f"median of {runs}: {[round(value, 3) for value in concurrent]}",
        ),
        Row("3 sender concurrency", f"{BATCH} deliveries sent sequentially, same client", sequential, "s"),
        Row(
            "3 sender concurrency",
            "sequential / concurrent",
            speedup,
            "x",
            f">= {TARGET_RATIO:.0f}x",
            speedup >= TARGET_RATIO,
        ),
        Row(
            "3 sender concurrency",
            f"{BATCH} deliveries to one host (per-host cap {settings.sender_per_host_concurrency})",
            median(one_host),
            "s",
        ),
        Row("3 sender concurrency", "batch of 10 (Lambda's SQS batch)", median(batch_of_ten), "s"),
    ]
    return BenchmarkResult(
        "sender_concurrency",
        rows,
        {
            "concurrent_seconds": concurrent,
            "one_host_seconds": one_host,
            "batch_of_ten_seconds": batch_of_ten,
            "sequential_seconds": sequential,
            "aws_requests_per_delivery": per_delivery,
            "write_units_per_delivery": {t: u / deliveries_sent for t, u in usage.write_units.items()},
            "read_units_per_delivery": {t: u / deliveries_sent for t, u in usage.read_units.items()},
            "received": sum(len(server.received) for server in servers),
        },
    )
