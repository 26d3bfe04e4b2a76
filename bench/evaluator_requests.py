"""Benchmark 1: AWS requests per 1,000 conversion records through the real evaluator handler.

Everything runs inside `moto.mock_aws` in this process: the tables and queues are created from
`infrastructure/template.json`, 1,000 affiliates x 20 postbacks are seeded (batch writes, not
counted), and batches of 100 Lambda-shaped stream records (bench/workload.py: Zipf s = 1.1,
~30 % firing status changes) go to `functions.evaluator.handler.on_conversion_change`, resolved
by its handler string as Lambda does. Every request made by any botocore client is counted by
operation (bench/counting.py).

Phases, each with its own records of the same distribution (same seed, other conversion IDs):
- `no cache`: POSTBACKS_RULES_CACHE_SECONDS = 0, compared with the floor computed per batch
  (one query per distinct affiliate, one conditional write per delivery, one SendMessageBatch
  per ten deliveries);
- `naive`: a naive evaluator (below) using the same repositories and queue adapter: a query per
  status-change record, a put and a SendMessage per delivery;
- `steady state`: the product's rules cache (TTL 5 s, validated by the table's rules version: one
  consistent GetItem per batch, counted) after a warm-up, as a warm container runs. The cache clock
  is simulated at NOMINAL_RATE records/s; postbacks reads are the Query and GetItem requests (the
  latter include the rules version). `simulated_steady_reads` gives the figure at other traffic
  rates and rules-edit rates; `reads_per_thousand_at_rate` models a TTL-only cache for comparison.
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

from bench.counting import RequestCounter, TableKeys, Usage, forget_cached_clients
from bench.report import BenchmarkResult, Row
from bench.stats import ZipfSampler, median, ratio
from bench.throughput import InMemoryDeliveries, InMemoryPostbacks, InMemoryQueue
from bench.workload import (
    AFFILIATES,
    FIRING_KINDS,
    ZIPF_EXPONENT,
    GeneratedRecord,
    RecordGenerator,
    all_postbacks,
    floor_for_batch,
    lambda_event,
    postbacks_of,
)
from functions.core.model import Postback
from functions.evaluator.rules_cache import RulesCache
from functions.evaluator.service import ConversionEvaluator
from functions.storage.postbacks import RulesVersion

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


def reads_per_thousand_at_rate(
    records_per_second: float, ttl_seconds: float, status_change_share: float, affiliates: int = AFFILIATES
) -> float:
    """Modelled steady-state postbacks reads per 1,000 records for one warm container.

    Each affiliate costs one read per cache lifetime in which it appears: the expected number of
    distinct affiliates among the status-change records of one TTL window, per 1,000 records.
    """
    window = max(1, round(records_per_second * ttl_seconds * status_change_share))
    sampler = ZipfSampler(affiliates, ZIPF_EXPONENT, random.Random(0))
    return sampler.expected_distinct(window) * 1000.0 / (records_per_second * ttl_seconds)


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

    Same parsing, matching and repositories as the product; per status-change record one query of
    the affiliate's postbacks, per delivery one conditional put and one SendMessage.
    """

    def __init__(self, sqs_client: Any) -> None:
        from functions.settings import load_settings
        from functions.storage.deliveries import DeliveryRepository
        from functions.storage.postbacks import PostbackRepository
        from functions.storage.queues import Queue

        settings = load_settings()
        self._postbacks = PostbackRepository()
        self._deliveries = DeliveryRepository()
        self._queue = Queue(settings.deliveries_queue, client=sqs_client)
        self._ttl_days = settings.delivery_ttl_days

    def process(self, records: Sequence[Mapping[str, Any]]) -> None:
        from functions.core.conversion import is_status_change, parse_change
        from functions.core.matching import match_change
        from functions.core.messages import delivery_message
        from functions.core.model import utc_now

        now = utc_now()
        for record in records:
            change = parse_change(record)
            if change is None or not is_status_change(change):
                continue
            postbacks = self._postbacks.list_for_affiliate(change.conversion.affiliate_id)
            for delivery in match_change(change, postbacks).deliveries:
                self._deliveries.create(delivery, now=now, ttl_days=self._ttl_days)
                self._queue.send(delivery_message(delivery.delivery_id))


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
        counter.enabled = False
        purge()
        counter.enabled = True
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


def run(quick: bool = True) -> BenchmarkResult:
    import boto3
    from moto import mock_aws

    from bench.environment import prepare

    prepare()
    forget_cached_clients()
    counter = RequestCounter()
    with counter.installed(), mock_aws():
        return _run_in_moto(counter, quick, boto3)


class SimulatedClock:
    """The rules cache's clock, advanced by the records' arrival at a nominal traffic rate."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _CountingPostbacks(InMemoryPostbacks):
    def __init__(self, postbacks: Iterable[Postback]) -> None:
        super().__init__(postbacks)
        self.loads = 0

    def list_for_affiliate(self, affiliate_id: str) -> list[Postback]:
        self.loads += 1
        return super().list_for_affiliate(affiliate_id)


class SimulatedVersions:
    """The table's rules version, read by the evaluator once per batch: `number` changes (an edit of
    some postback) every `edit_every` seconds of `clock`; version 0, never changed, if None (the
    seeded moto table has no version item, which is version 0)."""

    def __init__(self, clock: Callable[[], float], edit_every: float | None = None) -> None:
        self._clock = clock
        self._edit_every = edit_every
        self.reads = 0

    def rules_version(self) -> RulesVersion:
        self.reads += 1
        if self._edit_every is None:
            return RulesVersion(0, None)
        edits = int(self._clock() // self._edit_every)
        return RulesVersion(edits, edits * self._edit_every if edits else None)


def _warm_evaluator(
    postbacks: InMemoryPostbacks, cache: RulesCache, clock: SimulatedClock, batches: Sequence[Sequence[GeneratedRecord]]
) -> ConversionEvaluator:
    evaluator = ConversionEvaluator(
        postbacks=postbacks,
        deliveries=InMemoryDeliveries(),
        deliveries_queue=InMemoryQueue(),
        dead_letter_queue=InMemoryQueue(),
        rules_cache=cache,
        delivery_ttl_days=90,
        rules_versions=SimulatedVersions(clock),
    )
    for batch in batches:
        evaluator.process([generated.record for generated in batch])
        clock.advance(len(batch) / NOMINAL_RATE)
    return evaluator


def simulated_steady_reads(
    records_per_second: float,
    ttl_seconds: float,
    measured_records: int = 5000,
    edit_every: float | None = None,
    warm_seconds: float | None = None,
) -> float:
    """Postbacks reads (queries + rules-version reads) per 1,000 records of the real evaluator
    service with in-memory fakes and a simulated clock (also the cache's wall clock), a rules edit
    every `edit_every` seconds (None: none): warm for `warm_seconds` (default two TTLs, as the
    measured phase), then count the reads."""
    clock = SimulatedClock()
    clock.now = 1_000_000.0
    postbacks = _CountingPostbacks(all_postbacks(AFFILIATES))
    versions = SimulatedVersions(clock, edit_every)
    evaluator = ConversionEvaluator(
        postbacks=postbacks,
        deliveries=InMemoryDeliveries(),
        deliveries_queue=InMemoryQueue(),
        dead_letter_queue=InMemoryQueue(),
        rules_cache=RulesCache(ttl_seconds, clock=clock, wall_clock=clock),
        delivery_ttl_days=90,
        rules_versions=versions,
    )
    generator = RecordGenerator(random.Random(3), conversion_prefix=f"sim{int(records_per_second)}")
    warm = 2 * ttl_seconds if warm_seconds is None else warm_seconds
    warm_batches = max(1, math.ceil(warm * records_per_second / BATCH_SIZE))
    changed_at = time.time()
    for index in range(warm_batches + measured_records // BATCH_SIZE):
        if index == warm_batches:
            postbacks.loads = versions.reads = 0
        evaluator.process([generated.record for generated in generator.batch(BATCH_SIZE, changed_at)])
        clock.advance(BATCH_SIZE / records_per_second)
    return (postbacks.loads + versions.reads) * 1000.0 / measured_records


def _run_in_moto(counter: RequestCounter, quick: bool, boto3: Any) -> BenchmarkResult:
    from functions import bootstrap
    from functions.settings import load_settings
    from functions.storage.deliveries import DeliveryRepository
    from functions.storage.postbacks import PostbackRepository
    from functions.storage.queues import Queue
    from infrastructure.resources import create_all
    from local.lambda_runtime import LambdaContext, resolve_handler

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

    counter.enabled = False
    settings = load_settings()
    dynamodb = boto3.client("dynamodb")
    created = create_all(dynamodb, boto3.client("sqs"), settings, conversions=False)
    counter.set_tables(table_keys(dynamodb, list(created.tables.values())))
    seed_started = time.perf_counter()
    _seed_postbacks(needed)
    seed_seconds = time.perf_counter() - seed_started
    sqs = boto3.client("sqs")
    queue_url = created.queue_urls["DeliveriesQueue"]

    def purge() -> None:
        drain_queue(sqs, queue_url)

    handler = resolve_handler(HANDLER)

    def through_handler(batch: list[GeneratedRecord]) -> None:
        response = handler(lambda_event(batch), LambdaContext("on_conversion_change", 60.0))
        if response.get("batchItemFailures"):
            raise RuntimeError(f"the evaluator reported failures: {response}")

    counter.enabled = True

    # Phase 1: no cache, against the floor; the handler builds its evaluator through the
    # composition root from the environment, as in Lambda.
    os.environ["POSTBACKS_RULES_CACHE_SECONDS"] = "0"
    bootstrap.reset()
    no_cache = _run_phase("no cache", counter, no_cache_batches, through_handler, purge)

    # Phase 2: the naive design, same records (other conversion IDs).
    naive_evaluator = NaiveEvaluator(sqs)
    naive = _run_phase(
        "naive",
        counter,
        naive_batches,
        lambda batch: naive_evaluator.process([generated.record for generated in batch]),
        purge,
    )

    # Phase 3: steady state. The product's wiring (`build_evaluator`'s: the repository is also the
    # rules-version source) with a rules cache on a simulated clock at NOMINAL_RATE; the cache is
    # warmed over two TTLs in memory (same postbacks, same version 0 as the seeded table, which has
    # no version item), then the measured batches go through the real handler.
    clock = SimulatedClock()
    cache = RulesCache(settings.rules_cache_seconds, clock=clock)
    _warm_evaluator(InMemoryPostbacks(all_postbacks(AFFILIATES)), cache, clock, warm_up)
    os.environ["POSTBACKS_RULES_CACHE_SECONDS"] = "5"
    bootstrap.reset()
    settings = bootstrap.settings()
    repository = PostbackRepository()
    steady_evaluator = ConversionEvaluator(
        postbacks=repository,
        rules_versions=repository,
        deliveries=DeliveryRepository(),
        deliveries_queue=Queue(settings.deliveries_queue, client=sqs),
        dead_letter_queue=Queue(settings.evaluator_dlq, client=sqs),
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

    simulated = {
        f"{rate:,}": round(simulated_steady_reads(rate, settings.rules_cache_seconds), 1)
        for rate in (500, 1000, 2000, 5000, 10000)
    }
    # A container that has run for a while (30 s warm), and rules edited every N seconds somewhere in
    # the network (each edit drops the whole cache), both measured over 60 s at NOMINAL_RATE.
    long_warm_seconds, long_measured_records = 30.0, 60 * NOMINAL_RATE
    simulated_edits = {
        f"{label}": round(
            simulated_steady_reads(
                NOMINAL_RATE,
                settings.rules_cache_seconds,
                edit_every=every,
                warm_seconds=long_warm_seconds,
                measured_records=long_measured_records,
            ),
            1,
        )
        for label, every in (("no edits", None), ("every 60 s", 60.0), ("every 10 s", 10.0))
    }
    status_share = 1.0 - 0.25  # every kind but `correction` changes the status (inserts included)
    modelled = {
        f"{rate:,}": round(reads_per_thousand_at_rate(rate, settings.rules_cache_seconds, status_share), 1)
        for rate in (500, 1000, 2000, 5000, 10000)
    }
    # Postbacks reads: the Queries and the rules-version GetItems (a GetItem of the deliveries table,
    # after a refused write, would be counted too: an over-estimate).
    steady_reads = steady.per_thousand(
        steady.usage.operation("Query", "dynamodb") + steady.usage.operation("GetItem", "dynamodb")
    )
    naive_ratio = ratio(naive.usage.total(), steady.usage.total())
    rows = [
        Row(
            "1 evaluator requests",
            "requests/1,000 records, no cache",
            no_cache.per_thousand(no_cache.usage.total()),
            "requests",
            f"<= floor {no_cache.per_thousand(no_cache.floor_total):,.0f}",
            no_cache.usage.total() <= no_cache.floor_total,
            note=_ops(no_cache),
        ),
        Row(
            "1 evaluator requests",
            "requests/1,000 records, naive design",
            naive.per_thousand(naive.usage.total()),
            "requests",
            note=_ops(naive),
        ),
        Row(
            "1 evaluator requests",
            f"requests/1,000 records, steady state, versioned cache, {NOMINAL_RATE:,} rec/s",
            steady.per_thousand(steady.usage.total()),
            "requests",
            note=_ops(steady),
        ),
        Row(
            "1 evaluator requests",
            f"postbacks reads/1,000 records, steady state, {NOMINAL_RATE:,} rec/s",
            steady_reads,
            "reads",
            f"<= {STEADY_STATE_TARGET}",
            steady_reads <= STEADY_STATE_TARGET,
            note=(
                "Query + rules-version GetItem, per warm container; reads/1,000 by records/s per container, "
                f"simulated with the real service and in-memory fakes, no edits: {simulated}; at "
                f"{NOMINAL_RATE:,} rec/s after 30 s warm, by rules-edit interval: {simulated_edits}; "
                f"a 5 s TTL-only cache (Zipf model): {modelled}"
            ),
        ),
        Row(
            "1 evaluator requests",
            "naive / steady-state requests",
            naive_ratio,
            "x",
            f">= {NAIVE_RATIO_TARGET:.0f}x fewer",
            naive_ratio >= NAIVE_RATIO_TARGET,
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
            "simulated_reads_per_1000_by_rate": simulated,
            "simulated_reads_per_1000_by_edit_interval": simulated_edits,
            "modelled_ttl_only_reads_per_1000_by_rate": modelled,
            "firing_share": sum(1 for batch in steady_all for generated in batch if generated.kind in FIRING_KINDS)
            / (len(steady_all) * BATCH_SIZE),
        },
    )


def _ops(phase: Phase) -> str:
    keep = ("Query", "PutItem", "GetItem", "SendMessageBatch", "SendMessage")
    parts = [f"{op} {phase.per_thousand(phase.usage.operation(op)):,.0f}" for op in keep if phase.usage.operation(op)]
    return (
        "per 1,000 records: "
        + ", ".join(parts)
        + f"; floor q/w/s {phase.per_thousand(phase.floor_queries):,.0f}/"
        + f"{phase.per_thousand(phase.floor_writes):,.0f}/{phase.per_thousand(phase.floor_sends):,.0f}"
    )
