"""Benchmark 2: evaluator CPU throughput (parse + match + render) with in-memory fakes.

The real `ConversionEvaluator.process` runs over batches of 100 stream records with every AWS
call replaced by the tests' in-memory fakes (`tests/support/fakes.py`: postbacks, deliveries by ID,
messages in a list), for 1,000 affiliates x 20 postbacks, its rules cache warm as in a warm
container. Throughput is records per CPU second of this process
(`time.process_time`: other processes on the shared machine do not count against it), the median
of several runs; a pure `parse_change` + `match_change` loop is measured alongside to show how
much of the time the service itself adds.

The benchmark's own data (20,000 pre-built stream records, 20,000 postbacks, the warm cache) is
moved out of the garbage collector's sight before the runs (`gc.freeze`), and each run starts
after a collection: otherwise a full collection, triggered by what the runs leave in the fakes,
walks all of that data inside whichever run it lands in (~0.22 s each, three times in one run of
this benchmark without the freeze) — work a Lambda invocation, which holds one batch, never does.
The collector still runs on everything the evaluator allocates during a run.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Sequence
from typing import Any

from bench.report import BenchmarkResult, Row
from bench.stats import median
from bench.workload import AFFILIATES, RecordGenerator, all_postbacks
from functions.core.conversion import parse_change
from functions.core.matching import match_change
from functions.core.model import Postback
from functions.evaluator.rules_cache import RulesCache
from functions.evaluator.service import ConversionEvaluator
from tests.support.fakes import InMemoryPlannedDeliveries, InMemoryPostbacks, InMemoryQueue

TARGET_RECORDS_PER_SECOND = 25_000  # the service path, median
TARGET_PURE_RECORDS_PER_SECOND = 40_000  # parse + match + render alone, median
BATCH_SIZE = 100


def _run_service(
    postbacks: InMemoryPostbacks, cache: RulesCache, batches: Sequence[Sequence[dict[str, Any]]]
) -> tuple[float, int]:
    """CPU seconds of one evaluator (empty deliveries store, `cache` shared) over every batch."""
    deliveries = InMemoryPlannedDeliveries()
    evaluator = ConversionEvaluator(
        postbacks=postbacks,
        deliveries=deliveries,
        deliveries_queue=InMemoryQueue(),
        dead_letter_queue=InMemoryQueue(),
        rules_cache=cache,
        delivery_ttl_days=90,
    )
    gc.collect()
    started = time.process_time()
    for batch in batches:
        evaluator.process(batch)
    return time.process_time() - started, len(deliveries.items)


def _batches(records: int, seed: int) -> list[list[dict[str, Any]]]:
    generator = RecordGenerator(random.Random(seed))
    changed_at = time.time()
    return [
        [generated.record for generated in generator.batch(BATCH_SIZE, changed_at)]
        for _ in range(records // BATCH_SIZE)
    ]


def _run_pure(postbacks: Sequence[Postback], batches: Sequence[Sequence[dict[str, Any]]]) -> float:
    rules: dict[str, list[Postback]] = {}
    for postback in postbacks:
        rules.setdefault(postback.affiliate_id, []).append(postback)
    gc.collect()
    started = time.process_time()
    for batch in batches:
        for record in batch:
            change = parse_change(record)
            if change is not None and change.previous_status != change.conversion.status:
                match_change(change, rules.get(change.conversion.affiliate_id, ()))
    return time.process_time() - started


def _spread(rates: Sequence[float]) -> str:
    return f"{min(rates):,.0f} / {median(rates):,.0f} / {max(rates):,.0f}"


def run(quick: bool = True) -> BenchmarkResult:
    records = 20_000 if quick else 100_000
    runs = 7 if quick else 11
    every_postback = all_postbacks(AFFILIATES)
    postbacks = InMemoryPostbacks(every_postback)
    batches = _batches(records, seed=7)
    # A warm container's rules cache, filled by the warm-up run and never expiring during the runs
    # (its clock stands still): the figure is parsing, matching, rendering and the service's work.
    cache = RulesCache(5.0, clock=lambda: 0.0)
    _run_service(postbacks, cache, batches)  # warm-up: the cache, imports, regex compilation
    service_rates: list[float] = []
    pure_rates: list[float] = []
    deliveries = 0
    gc.collect()
    gc.freeze()  # the data above, as the module-level state of a warm container
    try:
        for _ in range(runs):
            seconds, deliveries = _run_service(postbacks, cache, batches)
            service_rates.append(records / seconds)
            pure_rates.append(records / _run_pure(every_postback, batches))
    finally:
        gc.unfreeze()
    service_rate = median(service_rates)
    pure_rate = median(pure_rates)
    rows = [
        Row(
            "2 evaluator CPU",
            "records/s, parse+match+render+service (fakes), median",
            service_rate,
            "records/s",
            f">= {TARGET_RECORDS_PER_SECOND:,}",
            service_rate >= TARGET_RECORDS_PER_SECOND,
            note=f"{runs} runs over {records:,} records each, CPU time of one core, min / median / max "
            f"{_spread(service_rates)}; {deliveries:,} deliveries/run",
        ),
        Row(
            "2 evaluator CPU",
            "records/s, pure parse+match+render, median",
            pure_rate,
            "records/s",
            f">= {TARGET_PURE_RECORDS_PER_SECOND:,}",
            pure_rate >= TARGET_PURE_RECORDS_PER_SECOND,
            note=f"min / median / max {_spread(pure_rates)}",
        ),
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
        },
    )
