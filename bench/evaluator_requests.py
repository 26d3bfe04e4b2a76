"""Benchmark 1: AWS requests per 1,000 conversion records through the real evaluator handler.

Everything runs inside `moto.mock_aws` in this process: the tables and queues are created from
`infrastructure/template.json`, the postbacks of the affiliates the records name are seeded (batch
writes, not counted), and batches of 100 Lambda-shaped stream records (bench/workload.py: Zipf
s = 1.1, ~30 % firing status changes) go to `functions.evaluator.handler.on_conversion_change`,
resolved by its handler string as Lambda does. Every request made by any botocore client is
counted by operation, and DynamoDB capacity is billed from item sizes (bench/counting.py).

Phases, each with its own records of the same distribution (same seed, other conversion IDs):
- `no cache`: POSTBACKS_RULES_CACHE_SECONDS = 0, compared with the floor computed per batch
  (one query per distinct affiliate, one conditional write per delivery, one SendMessageBatch
  per ten deliveries);
- `naive`: a naive evaluator (below) using the same repositories and queue: a query per
  status-change record, a put and a SendMessage per delivery;
- `steady state`: the product's rules cache (TTL 5 s, validated by the table's rules version: one
  consistent GetItem per batch, counted) after a warm-up, as a warm container runs. The cache clock
  is simulated at NOMINAL_RATE records/s (moto serves ~10 records/s here, which would say nothing
  about the cache): the cache is warmed over two TTLs in memory, then the measured batches go
  through the handler. Postbacks reads are the Query and GetItem requests (the latter include the
  rules version).
The deliveries queue is drained between batches (uncounted): moto's SQS slows with depth.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from bench.counting import RequestCounter, TableKeys, Usage
from bench.report import BenchmarkResult, Row
from bench.stats import median, ratio
from bench.workload import (
    AFFILIATES,
    FIRING_KINDS,
    GeneratedRecord,
    RecordGenerator,
    all_postbacks,
    floor_for_batch,
    postbacks_of,
)
from functions.evaluator.rules_cache import RulesCache
from functions.evaluator.service import ConversionEvaluator
from functions.storage.postbacks import RulesVersion
from tests.support.fakes import InMemoryPlannedDeliveries, InMemoryPostbacks, InMemoryQueue
from tests.support.streams import stream_event

HANDLER = "functions.evaluator.handler.on_conversion_change"
BATCH_SIZE = 100
STEADY_STATE_TARGET = 50  # postbacks reads per 1,000 records
NAIVE_RATIO_TARGET = 3.0
NOMINAL_RATE = 1000  # records/s reaching one warm container, for the steady-state phase


@dataclasses.dataclass
class Phase:
    name: str
    records: int = 0
    usage: Usage = dataclasses.field(default_factory=Usage)
    floor_queries: int = 0
    floor_writes: int = 0
    floor_sends: int = 0
    deliveries: int = 0
    durations: list[float] = dataclasses.field(default_factory=list)

    def per_thousand(self, value: float) -> float:
        return value * 1000.0 / self.records if self.records else 0.0

    @property
    def floor_total(self) -> int:
        return self.floor_queries + self.floor_writes + self.floor_sends

    def summary(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "deliveries": self.deliveries,
            "requests_by_operation": self.usage.by_operation(),
            "requests_total": self.usage.total(),
            "requests_per_1000_records": self.per_thousand(self.usage.total()),
            "floor": {"queries": self.floor_queries, "writes": self.floor_writes, "sends": self.floor_sends},
            "write_units": dict(self.usage.write_units),
            "read_units": dict(self.usage.read_units),
            "median_batch_seconds": median(self.durations) if self.durations else None,
        }


def table_keys(dynamodb: Any, table_names: Sequence[str]) -> dict[str, TableKeys]:
    """Key attributes of the tables and their GSIs, as DynamoDB describes them."""
    keys: dict[str, TableKeys] = {}
    for name in table_names:
        table = dynamodb.describe_table(TableName=name)["Table"]
        keys[name] = TableKeys(
            tuple(element["AttributeName"] for element in table["KeySchema"]),
            tuple(
                tuple(element["AttributeName"] for element in index["KeySchema"])
                for index in table.get("GlobalSecondaryIndexes", [])
            ),
        )
    return keys


def _seed_postbacks(ranks: Iterable[int]) -> None:
    from functions.storage.models import PostbackModel
    from functions.storage.postbacks import new_item

    with PostbackModel.batch_write() as batch:
        for postback in (postback for rank in sorted(ranks) for postback in postbacks_of(rank)):
            item = new_item(postback)
            item.version = 1  # as a create through the API leaves it
            batch.save(item)


class NaiveEvaluator:
    """The comparison baseline: what an evaluator without batching would do, per record.

    Same parsing, matching, repositories and queue as the product; per status-change record one
    query of the affiliate's postbacks, per delivery one conditional put and one SendMessage.
    """

    def process(self, records: Sequence[Mapping[str, Any]]) -> None:
        from functions import bootstrap
        from functions.core.conversion import is_status_change, parse_change
        from functions.core.matching import match_change
        from functions.core.messages import delivery_message
        from functions.core.model import utc_now

        postbacks, deliveries, queue = (
            bootstrap.postback_repository(),
            bootstrap.delivery_repository(),
            bootstrap.deliveries_queue(),
        )
        ttl_days = bootstrap.settings().delivery_ttl_days
        now = utc_now()
        for record in records:
            change = parse_change(record)
            if change is None or not is_status_change(change):
                continue
            matched = match_change(change, postbacks.list_for_affiliate(change.conversion.affiliate_id))
            for delivery in matched.deliveries:
                deliveries.create(delivery, now=now, ttl_days=ttl_days)
                queue.send(delivery_message(delivery.delivery_id))


def _run_phase(
    name: str,
    counter: RequestCounter,
    batches: Sequence[Sequence[GeneratedRecord]],
    process: Callable[[list[GeneratedRecord]], None],
    purge: Callable[[], None],
) -> Phase:
    phase = Phase(name)
    for batch in batches:
        before = counter.snapshot()
        started = time.perf_counter()
        process(list(batch))
        phase.durations.append(time.perf_counter() - started)
        delta = counter.snapshot().minus(before)
        created = delta.operation("PutItem", "dynamodb")
        floor = floor_for_batch(len({generated.affiliate_rank for generated in batch}), created)
        phase.records += len(batch)
        phase.deliveries += created
        phase.floor_queries += floor.queries
        phase.floor_writes += floor.writes
        phase.floor_sends += floor.sends
        phase.usage = phase.usage.plus(delta)
        with counter.paused():
            purge()
    return phase


def drain_queue(sqs: Any, queue_url: str) -> int:
    """Receive and delete until the queue is empty (PurgeQueue is limited to once a minute)."""
    drained = 0
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return drained
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        drained += len(messages)


def _batches(seed: int, prefix: str, count: int, changed_at: float) -> list[list[GeneratedRecord]]:
    generator = RecordGenerator(random.Random(seed), conversion_prefix=prefix)
    return [generator.batch(BATCH_SIZE, changed_at) for _ in range(count)]


class SimulatedClock:
    """The rules cache's clock, advanced by the records' arrival at a nominal traffic rate."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _SeededVersion:
    """The seeded table's rules version: it has no version item, so version 0, never changed."""

    def rules_version(self) -> RulesVersion:
        return RulesVersion(0, None)


def _warm(cache: RulesCache, clock: SimulatedClock, batches: Sequence[Sequence[GeneratedRecord]]) -> None:
    """Fill `cache` as a container running at NOMINAL_RATE over `batches` would (in memory)."""
    evaluator = ConversionEvaluator(
        postbacks=InMemoryPostbacks(all_postbacks(AFFILIATES)),
        deliveries=InMemoryPlannedDeliveries(),
        deliveries_queue=InMemoryQueue(),
        dead_letter_queue=InMemoryQueue(),
        rules_cache=cache,
        delivery_ttl_days=90,
        rules_versions=_SeededVersion(),
    )
    for batch in batches:
        evaluator.process([generated.record for generated in batch])
        clock.advance(len(batch) / NOMINAL_RATE)


def run(quick: bool = True) -> BenchmarkResult:
    import boto3
    from moto import mock_aws

    from bench.environment import prepare

    prepare()
    counter = RequestCounter()
    with counter.installed(), mock_aws():
        return _run_in_moto(counter, quick, boto3)


def _run_in_moto(counter: RequestCounter, quick: bool, boto3: Any) -> BenchmarkResult:
    from functions import bootstrap
    from functions.invocation import LambdaContext, resolve_handler
    from infrastructure.resources import create_all

    measured_batches = 5 if quick else 10
    warm_batches = math.ceil(2 * 5.0 * NOMINAL_RATE / BATCH_SIZE)
    changed_at = time.time()
    no_cache_batches = _batches(1, "nc", measured_batches, changed_at)
    naive_batches = _batches(1, "nv", measured_batches, changed_at)
    steady_all = _batches(2, "ss", warm_batches + measured_batches, changed_at)
    warm_up, steady_batches = steady_all[:warm_batches], steady_all[warm_batches:]
    # Only affiliates that reach AWS need their postbacks in moto (moto's index queries scan the
    # whole table, so seeding the others would only slow moto down; it changes no count).
    needed = {generated.affiliate_rank for batch in (*no_cache_batches, *steady_batches) for generated in batch}

    with counter.paused():
        os.environ["POSTBACKS_RULES_CACHE_SECONDS"] = "0"
        bootstrap.reset()
        settings = bootstrap.settings()
        dynamodb = boto3.client("dynamodb")
        created = create_all(dynamodb, bootstrap.sqs_client(), settings, conversions=False)
        counter.set_tables(table_keys(dynamodb, list(created.tables.values())))
        seed_started = time.perf_counter()
        _seed_postbacks(needed)
        seed_seconds = time.perf_counter() - seed_started
    queue_url = created.queue_urls["DeliveriesQueue"]

    def purge() -> None:
        drain_queue(bootstrap.sqs_client(), queue_url)

    handler = resolve_handler(HANDLER)

    def through_handler(batch: list[GeneratedRecord]) -> None:
        event = stream_event(generated.record for generated in batch)
        response = handler(event, LambdaContext("on_conversion_change", 60.0))
        if response.get("batchItemFailures"):
            raise RuntimeError(f"the evaluator reported failures: {response}")

    # Phase 1: no cache, against the floor; the handler builds its evaluator through the
    # composition root from the environment, as in Lambda.
    no_cache = _run_phase("no cache", counter, no_cache_batches, through_handler, purge)

    # Phase 2: the naive design, same records (other conversion IDs).
    naive_evaluator = NaiveEvaluator()
    naive = _run_phase(
        "naive",
        counter,
        naive_batches,
        lambda batch: naive_evaluator.process([generated.record for generated in batch]),
        purge,
    )

    # Phase 3: steady state. The evaluator of the composition root's wiring (the repository is also
    # the rules-version source) with a rules cache on a simulated clock at NOMINAL_RATE, warmed over
    # two TTLs in memory (same postbacks, same version 0 as the seeded table); then the measured
    # batches go through the real handler.
    os.environ["POSTBACKS_RULES_CACHE_SECONDS"] = "5"
    bootstrap.reset()
    settings = bootstrap.settings()
    clock = SimulatedClock()
    cache = RulesCache(settings.rules_cache_seconds, clock=clock)
    _warm(cache, clock, warm_up)
    repository = bootstrap.postback_repository()
    steady_evaluator = ConversionEvaluator(
        postbacks=repository,
        rules_versions=repository,
        deliveries=bootstrap.delivery_repository(),
        deliveries_queue=bootstrap.deliveries_queue(),
        dead_letter_queue=bootstrap.evaluator_dlq(),
        rules_cache=cache,
        delivery_ttl_days=settings.delivery_ttl_days,
    )

    def steady_step(batch: list[GeneratedRecord]) -> None:
        through_handler(batch)
        clock.advance(len(batch) / NOMINAL_RATE)

    # The handler asks the composition root for its evaluator: hand it this one for the phase.
    original = bootstrap.conversion_evaluator
    bootstrap.conversion_evaluator = lambda: steady_evaluator  # type: ignore[assignment]
    try:
        steady = _run_phase("steady state", counter, steady_batches, steady_step, purge)
    finally:
        bootstrap.conversion_evaluator = original
        bootstrap.reset()

    # Postbacks reads: the Queries and the rules-version GetItems (a GetItem of the deliveries table,
    # after a refused write, would be counted too: an over-estimate).
    steady_reads = steady.per_thousand(
        steady.usage.operation("Query", "dynamodb") + steady.usage.operation("GetItem", "dynamodb")
    )
    naive_ratio = ratio(naive.usage.total(), steady.usage.total())
    figure = "1 evaluator requests"
    rows = [
        Row(
            figure,
            "requests/1,000 records, no cache",
            no_cache.per_thousand(no_cache.usage.total()),
            "requests",
            f"<= floor {no_cache.per_thousand(no_cache.floor_total):,.0f}",
            no_cache.usage.total() <= no_cache.floor_total,
            note=_ops(no_cache),
        ),
        Row(figure, "requests/1,000 records, naive design", naive.per_thousand(naive.usage.total()), "requests"),
        Row(
            figure,
            f"requests/1,000 records, steady state, versioned cache, {NOMINAL_RATE:,} rec/s",
            steady.per_thousand(steady.usage.total()),
            "requests",
            note=_ops(steady),
        ),
        Row(
            figure,
            f"postbacks reads/1,000 records, steady state, {NOMINAL_RATE:,} rec/s",
            steady_reads,
            "reads",
            f"<= {STEADY_STATE_TARGET}",
            steady_reads <= STEADY_STATE_TARGET,
            note="Query + rules-version GetItem, per warm container",
        ),
        Row(
            figure,
            "naive / steady-state requests",
            naive_ratio,
            "x",
            f">= {NAIVE_RATIO_TARGET:.0f}x fewer",
            naive_ratio >= NAIVE_RATIO_TARGET,
            note=_ops(naive),
        ),
    ]
    return BenchmarkResult(
        "evaluator_requests",
        rows,
        {
            "seed_seconds": seed_seconds,
            "seeded_affiliates": len(needed),
            "nominal_records_per_second": NOMINAL_RATE,
            "phases": {phase.name: phase.summary() for phase in (no_cache, naive, steady)},
            "firing_share": sum(1 for batch in steady_all for generated in batch if generated.kind in FIRING_KINDS)
            / (len(steady_all) * BATCH_SIZE),
        },
    )


def _ops(phase: Phase) -> str:
    keep = ("Query", "PutItem", "GetItem", "SendMessageBatch", "SendMessage")
    parts = [f"{op} {phase.per_thousand(phase.usage.operation(op)):,.0f}" for op in keep if phase.usage.operation(op)]
    return (
        f"{phase.name}, per 1,000 records: "
        + ", ".join(parts)
        + f"; floor q/w/s {phase.per_thousand(phase.floor_queries):,.0f}/"
        + f"{phase.per_thousand(phase.floor_writes):,.0f}/{phase.per_thousand(phase.floor_sends):,.0f}"
    )
