"""Benchmark 8: a bulk approval of 10,000 conversions/s for ten minutes, simulated from measured costs.

A discrete-time model (one-second steps) of the path stream -> evaluator -> deliveries table +
queue -> sender -> tracker, driven by what the other benchmarks measured in this run (or, for
`--only scaling`, the newest results file that has them):

- the evaluator's CPU per record (benchmark 2, service path, median) and the time one AWS request
  of the evaluator costs (benchmark 1: the steady-state batch on moto in-process, minus its CPU,
  over its requests — moto's own work included, so an upper bound for DynamoDB's single-digit
  milliseconds); a batch of approvals makes one conditional PutItem per delivery, one
  SendMessageBatch per ten, one rules-version GetItem;
- the sender's batch of ten against a tracker answering in 200 ms (benchmark 3, moto);
- the write units of a delivery (benchmark 7: create, lease, outcome; the `by_postback` index
  rewritten by each, projection ALL);
- which postbacks the approvals fire (the benchmark workload's affiliates, Zipf s = 1.1, matched
  with the product's pure `match_change`): deliveries per approval and the busiest postback's share.

A batch's conditional PutItems are made `POSTBACKS_EVALUATOR_WRITE_CONCURRENCY` at a time (the
settings' default, 16: `functions/settings.py`); the rules-version read, each round of puts and
each SendMessageBatch follow one another.

Stated, not measured: stream shards = the conversions table's partitions, at least one per 1,000
writes/s (DynamoDB's per-partition write limit), so 10 at 10,000/s; Lambda polls each shard with
`ParallelizationFactor` concurrent batches; the SQS event source runs at most `MaximumConcurrency`
sender invocations; a partition key takes at most 1,000 write units/s (the `by_postback` index's
key is the postback ID: the hot key of a bulk approval); prices as in benchmark 6 (`bench.cost`).
The template's values are read from `infrastructure/template.json`, and alternatives are shown
beside them.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.report import BenchmarkResult, Row

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FIGURE = "8 scaling"
RATE = 10_000  # conversions per second
DURATION_SECONDS = 600
PARTITION_WRITE_UNITS = 1_000  # per second, per partition key (and per stream shard's partition)
EVALUATOR_BATCH = 100
SENDER_BATCH = 10
MAX_SECONDS = 6 * 3600
NEEDED = ("throughput", "evaluator_requests", "sender_concurrency", "write_units")
# When a benchmark was not run here and no results file has it: the figures of the last full
# `make bench` on a quiet machine (docs/performance.md, 2026-11-26), reduced to what the model reads.
REFERENCE_RUN = "make bench 2026-11-26 (docs/performance.md)"
REFERENCE_DETAILS: dict[str, dict[str, Any]] = {
    "throughput": {"service_records_per_second": [35_254.0]},
    "evaluator_requests": {
        "phases": {
            "steady state": {
                "records": 500,
                "requests_by_operation": {
                    "dynamodb:GetItem": 5,
                    "dynamodb:PutItem": 162,
                    "dynamodb:Query": 13,
                    "sqs:GetQueueUrl": 1,
                    "sqs:SendMessageBatch": 18,
                },
                "median_batch_seconds": 0.2263,
            }
        }
    },
    "sender_concurrency": {"batch_of_ten_seconds": [0.4059], "read_units_per_delivery": {"postbacks": 0.01}},
}


@dataclass(frozen=True)
class Costs:
    """What the model is driven by, per record and per delivery (measured, see the module docstring)."""

    evaluator_cpu_per_record: float  # seconds
    evaluator_seconds_per_request: float
    sender_batch_seconds: float  # a batch of ten, 200 ms tracker
    table_write_units_per_delivery: float
    index_write_units_per_delivery: float
    deliveries_per_approval: float
    busiest_postback_share: float  # of all deliveries
    sender_read_units_per_delivery: float = 0.1


@dataclass(frozen=True)
class Config:
    shards: int
    parallelization_factor: int
    sender_max_concurrency: int
    evaluator_write_concurrency: int = 16


@dataclass(frozen=True)
class Outcome:
    config: Config
    evaluator_batch_seconds: float
    evaluator_capacity: float  # records/s
    sender_capacity: float  # deliveries/s
    peak_stream_age: float  # seconds
    peak_queue: float  # messages
    drained_after: float  # seconds from the start until every delivery was sent
    p99_written_to_sent: float  # seconds, over all deliveries
    peak_table_write_units: float  # per second, deliveries table
    peak_hot_key_write_units: float  # per second, the busiest postback's `by_postback` key
    peak_evaluator_concurrency: int
    peak_sender_concurrency: int
    rules_version_reads_per_second: float
    peak_sqs_requests_per_second: float


def evaluator_batch_seconds(costs: Costs, write_concurrency: int, batch: int = EVALUATOR_BATCH) -> float:
    """One batch of approvals: CPU, then the version read, the puts `write_concurrency` at a time, the sends."""
    deliveries = batch * costs.deliveries_per_approval
    rounds = 1 + math.ceil(deliveries / write_concurrency) + math.ceil(deliveries / SENDER_BATCH)
    return batch * costs.evaluator_cpu_per_record + rounds * costs.evaluator_seconds_per_request


def simulate(costs: Costs, config: Config, rate: float = RATE, duration: int = DURATION_SECONDS) -> Outcome:
    """The burst second by second until the stream and the queue are empty (or `MAX_SECONDS`)."""
    batch_seconds = evaluator_batch_seconds(costs, config.evaluator_write_concurrency)
    lanes = config.shards * config.parallelization_factor
    evaluator_capacity = lanes * EVALUATOR_BATCH / batch_seconds
    sender_capacity = config.sender_max_concurrency * SENDER_BATCH / costs.sender_batch_seconds
    share = costs.busiest_postback_share
    d = costs.deliveries_per_approval
    written = 0.0  # conversions written so far
    evaluated = 0.0
    queued_hot = queued_rest = 0.0
    created_total = sent_total = 0.0
    arrivals: list[float] = []  # cumulative conversions written by the end of each second
    created_at: list[float] = []  # cumulative deliveries created by the end of each second
    sent_at: list[float] = []
    peak = dict.fromkeys(("age", "queue", "table", "hot", "eval", "send", "sqs"), 0.0)
    oldest = 0  # the second the oldest record not yet evaluated was written
    second = 0
    while second < MAX_SECONDS:
        if second < duration:
            written += rate
        arrivals.append(written)
        processed = min(written - evaluated, evaluator_capacity)
        evaluated += processed
        created = processed * d
        created_total += created
        created_at.append(created_total)
        queued_hot += created * share
        queued_rest += created * (1 - share)
        # The busiest postback's index key: creates, leases and outcomes share its 1,000 units/s.
        index_units = costs.index_write_units_per_delivery
        hot_create_units = created * share * index_units / 3
        hot_room = max(0.0, PARTITION_WRITE_UNITS - hot_create_units) / (index_units * 2 / 3)
        send_room = sender_capacity
        sent_hot = min(queued_hot, hot_room, send_room * share if queued_rest > 0 else send_room)
        sent_rest = min(queued_rest, send_room - sent_hot)
        queued_hot -= sent_hot
        queued_rest -= sent_rest
        sent = sent_hot + sent_rest
        sent_total += sent
        sent_at.append(sent_total)
        backlog = written - evaluated
        while oldest <= second and arrivals[oldest] <= evaluated + 0.5:
            oldest += 1
        if oldest <= second:
            peak["age"] = max(peak["age"], float(second - oldest + 1))
        peak["queue"] = max(peak["queue"], queued_hot + queued_rest)
        table_units = costs.table_write_units_per_delivery
        peak["table"] = max(peak["table"], (created + 2 * sent) * table_units / 3)
        peak["hot"] = max(peak["hot"], hot_create_units + sent_hot * index_units * 2 / 3)
        batches = processed / EVALUATOR_BATCH
        peak["eval"] = max(peak["eval"], min(lanes, math.ceil(batches * batch_seconds)) if processed else 0)
        busy_senders = math.ceil(sent / SENDER_BATCH * costs.sender_batch_seconds) if sent else 0
        peak["send"] = max(peak["send"], min(config.sender_max_concurrency, busy_senders))
        peak["sqs"] = max(peak["sqs"], math.ceil(created / SENDER_BATCH) + 2 * sent / SENDER_BATCH)
        second += 1
        if second >= duration and backlog <= 0.5 and queued_hot + queued_rest <= 0.5:
            break
    return Outcome(
        config=config,
        evaluator_batch_seconds=batch_seconds,
        evaluator_capacity=evaluator_capacity,
        sender_capacity=sender_capacity,
        peak_stream_age=peak["age"],
        peak_queue=peak["queue"],
        drained_after=float(second),
        p99_written_to_sent=_delay_percentile(created_at, sent_at, 0.99),
        peak_table_write_units=peak["table"],
        peak_hot_key_write_units=peak["hot"],
        peak_evaluator_concurrency=int(peak["eval"]),
        peak_sender_concurrency=int(peak["send"]),
        rules_version_reads_per_second=min(evaluator_capacity, rate) / EVALUATOR_BATCH,
        peak_sqs_requests_per_second=peak["sqs"],
    )


def _delay_percentile(created: Sequence[float], sent: Sequence[float], q: float) -> float:
    """The q-quantile of (second sent - second created), deliveries served first in, first out."""
    total = created[-1] if created else 0.0
    if total <= 0:
        return 0.0
    target = q * total
    # The delivery at rank `target` was created at the first second `created` reaches it and sent
    # at the first second `sent` does; FIFO, so the delay at that rank is the difference.
    delays = []
    step = max(total / 200, 1.0)
    rank = step
    while rank <= target:
        delays.append(_first_reaching(sent, rank) - _first_reaching(created, rank))
        rank += step
    return float(max(delays)) if delays else 0.0


def _first_reaching(cumulative: Sequence[float], value: float) -> int:
    low, high = 0, len(cumulative) - 1
    while low < high:
        middle = (low + high) // 2
        if cumulative[middle] >= value - 1e-6:
            high = middle
        else:
            low = middle + 1
    return low


def template_config(shards: int, template_path: Path = ROOT / "infrastructure" / "template.json") -> Config:
    """ParallelizationFactor and MaximumConcurrency as `infrastructure/template.json` sets them."""
    resources = json.loads(template_path.read_text(encoding="utf-8"))["Resources"]
    stream = resources["OnConversionChange"]["Properties"]["Events"]["OnConversionChangeDynamodbEventSource"]
    queue = resources["OnDeliveryMessage"]["Properties"]["Events"]["OnDeliveryMessageSqsEventSource"]
    from functions.settings import Settings

    return Config(
        shards=shards,
        parallelization_factor=int(stream["Properties"].get("ParallelizationFactor", 1)),
        sender_max_concurrency=int(queue["Properties"]["ScalingConfig"]["MaximumConcurrency"]),
        evaluator_write_concurrency=Settings().evaluator_write_concurrency,
    )


def workload_shares(approvals: int = 20_000, seed: int = 11) -> tuple[float, float]:
    """Deliveries per approval and the busiest postback's share, from the workload's approvals."""
    from bench.workload import AFFILIATES, RecordGenerator, all_postbacks
    from functions.core.conversion import parse_change
    from functions.core.matching import match_change

    rules: dict[str, list[Any]] = {}
    for postback in all_postbacks(AFFILIATES):
        rules.setdefault(postback.affiliate_id, []).append(postback)
    generator = RecordGenerator(random.Random(seed))
    fired: Counter[str] = Counter()
    seen = 0
    while seen < approvals:
        generated = generator.next(changed_at=1_800_000_000.0)
        if generated.kind != "approve":
            continue
        seen += 1
        change = parse_change(generated.record)
        if change is None:
            continue
        for planned in match_change(change, rules.get(change.conversion.affiliate_id, ())).deliveries:
            fired[planned.postback_id] += 1
    total = sum(fired.values())
    return total / seen, (max(fired.values()) / total if total else 0.0)


def _latest_details(name: str) -> dict[str, Any] | None:
    for path in [*sorted(RESULTS.glob("2*.json"), reverse=True), RESULTS / "latest.json"]:
        if not path.exists():
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        found = document.get("benchmarks", {}).get(name)
        if found is not None:
            details: dict[str, Any] = found["details"]
            details["_from"] = path.name
            return details
    return None


def measured_costs(details: Mapping[str, Mapping[str, Any]]) -> tuple[Costs, dict[str, str]]:
    """The model's inputs from the benchmarks' details; which results file each came from."""
    sources: dict[str, str] = {}
    found: dict[str, Mapping[str, Any]] = {}
    for name in NEEDED:
        detail = details.get(name) or _latest_details(name)
        if detail is None and name in REFERENCE_DETAILS:
            detail = {**REFERENCE_DETAILS[name], "_from": REFERENCE_RUN}
        if detail is None:
            raise RuntimeError(f"the scaling model needs benchmark {name}: run it (`--only {name}`) first")
        found[name] = detail
        sources[name] = str(detail.get("_from", "this run"))
    rates = sorted(found["throughput"]["service_records_per_second"])
    cpu = 1.0 / rates[len(rates) // 2]
    steady = found["evaluator_requests"]["phases"]["steady state"]
    requests = sum(steady["requests_by_operation"].values())
    batches = steady["records"] / EVALUATOR_BATCH
    per_request = (steady["median_batch_seconds"] - EVALUATOR_BATCH * cpu) / (requests / batches)
    tens = sorted(found["sender_concurrency"]["batch_of_ten_seconds"])
    writes = found["write_units"]["writes"]
    table_units = float(sum(int(w["units"]) for w in writes))
    per_approval, busiest = workload_shares()
    costs = Costs(
        evaluator_cpu_per_record=cpu,
        evaluator_seconds_per_request=max(per_request, 0.001),
        sender_batch_seconds=tens[len(tens) // 2],
        table_write_units_per_delivery=table_units,
        index_write_units_per_delivery=table_units,  # projection ALL: each write rewrites the entry
        deliveries_per_approval=per_approval,
        busiest_postback_share=busiest,
        sender_read_units_per_delivery=float(
            sum(found["sender_concurrency"].get("read_units_per_delivery", {}).values()) or 0.1
        ),
    )
    return costs, sources


def burst_cost(costs: Costs, outcome: Outcome, conversions: float) -> dict[str, float]:
    """US dollars for the burst at the prices of benchmark 6."""
    from bench.cost import Prices, memory_mb

    prices = Prices()
    deliveries = conversions * costs.deliveries_per_approval
    evaluator_invocations = conversions / EVALUATOR_BATCH
    sender_invocations = deliveries / SENDER_BATCH
    gb_seconds = (
        evaluator_invocations * outcome.evaluator_batch_seconds * memory_mb("on_conversion_change") / 1024
        + sender_invocations * costs.sender_batch_seconds * memory_mb("on_delivery_message") / 1024
    )
    write_units = deliveries * (costs.table_write_units_per_delivery + costs.index_write_units_per_delivery)
    read_units = evaluator_invocations + deliveries * costs.sender_read_units_per_delivery
    sqs = deliveries / SENDER_BATCH * 3  # SendMessageBatch, ReceiveMessage, DeleteMessageBatch
    lines = {
        "Lambda requests": (evaluator_invocations + sender_invocations) * prices.lambda_request,
        "Lambda compute": gb_seconds * prices.lambda_gb_second,
        "DynamoDB writes": write_units * prices.dynamodb_write_unit,
        "DynamoDB reads": read_units * prices.dynamodb_read_unit,
        "SQS requests": sqs * prices.sqs_request,
    }
    lines["total"] = math.fsum(lines.values())
    return lines


def _describe(outcome: Outcome) -> dict[str, Any]:
    values = dict(vars(outcome))
    values["config"] = vars(outcome.config)
    return values


def run(details: Mapping[str, Mapping[str, Any]] | None = None) -> BenchmarkResult:
    costs, sources = measured_costs(details or {})
    shards = math.ceil(RATE / PARTITION_WRITE_UNITS)
    configured = template_config(shards)
    outcome = simulate(costs, configured)
    alternatives = [
        simulate(costs, replace(configured, parallelization_factor=pf, sender_max_concurrency=mc))
        for pf, mc in ((1, 20), (4, 20), (10, 20), (10, 50), (10, 100), (10, 200))
    ]
    conversions = RATE * DURATION_SECONDS
    cost = burst_cost(costs, outcome, conversions)
    label = (
        f"{shards} shards x ParallelizationFactor {configured.parallelization_factor}, "
        f"sender MaximumConcurrency {configured.sender_max_concurrency}"
    )
    rows = [
        Row(FIGURE, "10,000 conversions/s for 10 min: drained after", outcome.drained_after / 60, "min", note=label),
        Row(
            FIGURE,
            "evaluator capacity / arrival rate",
            outcome.evaluator_capacity / RATE,
            "x",
            ">= 1",
            outcome.evaluator_capacity >= RATE,
            note=f"batch of 100 approvals {outcome.evaluator_batch_seconds * 1000:.0f} ms; peak stream age "
            f"{outcome.peak_stream_age:.0f} s; up to {outcome.peak_evaluator_concurrency} evaluators",
        ),
        Row(
            FIGURE,
            "sender: deliveries/s at MaximumConcurrency",
            outcome.sender_capacity,
            "deliveries/s",
            note=f"peak queue {outcome.peak_queue:,.0f}; "
            f"p99 created -> sent {outcome.p99_written_to_sent / 60:.0f} min",
        ),
        Row(
            FIGURE,
            "busiest by_postback key, write units/s",
            outcome.peak_hot_key_write_units,
            "WCU/s",
            f"<= {PARTITION_WRITE_UNITS:,}",
            outcome.peak_hot_key_write_units <= PARTITION_WRITE_UNITS,
            note=f"busiest postback {costs.busiest_postback_share:.1%} of deliveries",
        ),
        Row(FIGURE, "deliveries table, peak write units/s", outcome.peak_table_write_units, "WCU/s"),
        Row(FIGURE, "burst cost (6 M conversions)", cost["total"], "USD", note="prices of benchmark 6"),
    ]
    return BenchmarkResult(
        "scaling",
        rows,
        {
            "costs": vars(costs),
            "sources": sources,
            "configured": _describe(outcome),
            "alternatives": [_describe(alternative) for alternative in alternatives],
            "burst_cost_usd": cost,
        },
    )
