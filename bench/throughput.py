"""Benchmark 2: evaluator CPU throughput (parse + match + render) with in-memory fakes.

The real `ConversionEvaluator.process` runs over batches of 100 stream records with every AWS
call replaced by a fake that holds state (postbacks by affiliate, deliveries by ID, messages in a
list), for 1,000 affiliates x 20 postbacks. Throughput is records per CPU second of this process
(`time.process_time`: other processes on the shared machine do not count against it), the median
of several runs; a pure `parse_change` + `match_change` loop is measured alongside to show how
much of the time the service itself adds. A cProfile of one run names the hot spots.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import random
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from bench.report import BenchmarkResult, Row
from bench.stats import median
from bench.workload import AFFILIATES, RecordGenerator, all_postbacks
from functions.core.conversion import parse_change
from functions.core.matching import PlannedDelivery, match_change
from functions.core.model import Postback
from functions.evaluator.rules_cache import RulesCache
from functions.evaluator.service import ConversionEvaluator
from functions.storage.deliveries import CreateOutcome
from functions.storage.queues import OutgoingMessage

TARGET_RECORDS_PER_SECOND = 20_000
BATCH_SIZE = 100


class InMemoryPostbacks:
    def __init__(self, postbacks: Iterable[Postback]) -> None:
        self.by_affiliate: dict[str, list[Postback]] = {}
        for postback in postbacks:
            self.by_affiliate.setdefault(postback.affiliate_id, []).append(postback)

    def list_for_affiliate(self, affiliate_id: str) -> list[Postback]:
        return list(self.by_affiliate.get(affiliate_id, []))


class InMemoryDeliveries:
    def __init__(self) -> None:
        self.items: dict[str, PlannedDelivery] = {}

    def create(self, planned: PlannedDelivery, *, now: datetime, ttl_days: int) -> CreateOutcome:
        if planned.delivery_id in self.items:
            return CreateOutcome.EXISTS_HANDLED
        self.items[planned.delivery_id] = planned
        return CreateOutcome.CREATED


class InMemoryQueue:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, body: dict[str, Any], attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str:
        self.messages.append(body)
        return str(len(self.messages))

    def send_batch(self, messages: Iterable[OutgoingMessage]) -> None:
        self.messages.extend(message.body for message in messages)


def _evaluator(postbacks: InMemoryPostbacks) -> tuple[ConversionEvaluator, InMemoryDeliveries]:
    deliveries = InMemoryDeliveries()
    evaluator = ConversionEvaluator(
        postbacks=postbacks,
        deliveries=deliveries,
        deliveries_queue=InMemoryQueue(),
        dead_letter_queue=InMemoryQueue(),
        rules_cache=RulesCache(5.0),
        delivery_ttl_days=90,
    )
    return evaluator, deliveries


def _batches(records: int, seed: int) -> list[list[dict[str, Any]]]:
    generator = RecordGenerator(random.Random(seed))
    changed_at = time.time()
    return [
        [generated.record for generated in generator.batch(BATCH_SIZE, changed_at)]
        for _ in range(records // BATCH_SIZE)
    ]


def _run_service(postbacks: InMemoryPostbacks, batches: Sequence[Sequence[dict[str, Any]]]) -> tuple[float, int]:
    evaluator, deliveries = _evaluator(postbacks)
    started = time.process_time()
    for batch in batches:
        evaluator.process(batch)
    return time.process_time() - started, len(deliveries.items)


def _run_pure(postbacks: InMemoryPostbacks, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
    rules = {affiliate: tuple(items) for affiliate, items in postbacks.by_affiliate.items()}
    started = time.process_time()
    for batch in batches:
        for record in batch:
            change = parse_change(record)
            if change is not None and change.previous_status != change.conversion.status:
                match_change(change, rules.get(change.conversion.affiliate_id, ()))
    return time.process_time() - started


def profile_service(postbacks: InMemoryPostbacks, batches: Sequence[Sequence[dict[str, Any]]], top: int = 12) -> str:
    evaluator, _ = _evaluator(postbacks)
    profiler = cProfile.Profile()
    profiler.enable()
    for batch in batches:
        evaluator.process(batch)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def run(quick: bool = True) -> BenchmarkResult:
    records = 20_000 if quick else 100_000
    runs = 5 if quick else 9
    postbacks = InMemoryPostbacks(all_postbacks(AFFILIATES))
    batches = _batches(records, seed=7)
    _run_service(postbacks, batches[:20])  # warm-up: imports, regex compilation, caches
    service_rates: list[float] = []
    pure_rates: list[float] = []
    deliveries = 0
    for _ in range(runs):
        seconds, deliveries = _run_service(postbacks, batches)
        service_rates.append(records / seconds)
        pure_rates.append(records / _run_pure(postbacks, batches))
    service_rate = median(service_rates)
    pure_rate = median(pure_rates)
    profile = profile_service(postbacks, batches[: max(1, len(batches) // 4)])
    rows = [
        Row(
            "2 evaluator CPU",
            "records/s, parse+match+render+service (fakes)",
            service_rate,
            "records/s",
            f">= {TARGET_RECORDS_PER_SECOND:,}",
            service_rate >= TARGET_RECORDS_PER_SECOND,
            note=f"median of {runs} runs over {records:,} records, CPU time of one core; {deliveries:,} deliveries/run",
        ),
        Row("2 evaluator CPU", "records/s, pure parse+match+render", pure_rate, "records/s"),
    ]
    return BenchmarkResult(
        "throughput",
        rows,
        {
            "records": records,
            "runs": runs,
            "service_records_per_second": service_rates,
            "pure_records_per_second": pure_rates,
            "deliveries_per_run": deliveries,
            "profile_top_tottime": profile,
        },
    )
