"""Benchmark 6: cost per million conversions at AWS list prices, from benchmarks 1 and 3.

Per conversion record (benchmark 1, steady state): evaluator requests, write and read units,
SendMessageBatch calls, deliveries created, and the handler's duration per batch of 100 (measured
on moto in-process, so it includes moto's own CPU: an upper bound). Per delivery (benchmark 3):
the sender's requests and units, and the handler's duration per batch of 10 against a receiver
that answers in 200 ms. Lambda's SQS poller adds one ReceiveMessage and one DeleteMessageBatch
per batch of 10 (empty polls are ignored). Stream reads by Lambda are free. Memory sizes come from
`.chalice/config.json`. The prices are explicit, so the assumptions print with the result.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import BenchmarkResult, Row

ROOT = Path(__file__).resolve().parent.parent
MILLION = 1_000_000
EVALUATOR_BATCH = 100
SENDER_BATCH = 10


@dataclass(frozen=True)
class Prices:
    """List prices, us-east-1, in US dollars."""

    lambda_gb_second: float = 0.0000166667  # x86, first pricing tier
    lambda_request: float = 0.20 / MILLION
    dynamodb_write_unit: float = 0.625 / MILLION  # on-demand write request unit
    dynamodb_read_unit: float = 0.125 / MILLION  # on-demand read request unit
    sqs_request: float = 0.40 / MILLION  # standard queue, per 64 KiB chunk
    as_of: str = "2026-11-30"
    source: str = (
        "AWS list prices for us-east-1 (aws.amazon.com/lambda/pricing, /dynamodb/pricing/on-demand, /sqs/pricing), "
        "as in force on that date, not fetched live: Lambda $0.0000166667/GB-s (x86) and $0.20/M requests; "
        "DynamoDB on-demand $0.625/M WRU and $0.125/M RRU (halved on 2024-11-01); SQS standard $0.40/M requests; "
        "stream reads by Lambda are free; free tiers ignored"
    )
    caveat: str = (
        "before 2024-11-01 DynamoDB on-demand cost $1.25/M WRU and $0.25/M RRU (the DynamoDB lines were twice this)"
    )


@dataclass(frozen=True)
class LambdaFunctionLoad:
    """One function's invocations and duration per million conversions."""

    name: str
    invocations: float
    billed_ms_per_invocation: float
    memory_mb: int

    @property
    def gb_seconds(self) -> float:
        return self.invocations * math.ceil(self.billed_ms_per_invocation) / 1000.0 * self.memory_mb / 1024.0


@dataclass(frozen=True)
class Workload:
    """Per million conversions: Lambda load, DynamoDB request units, SQS request chunks."""

    functions: tuple[LambdaFunctionLoad, ...]
    dynamodb_write_units: float
    dynamodb_read_units: float
    sqs_requests: float


@dataclass(frozen=True)
class CostLine:
    item: str
    quantity: float
    unit: str
    unit_price: float

    @property
    def dollars(self) -> float:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class CostBreakdown:
    lines: tuple[CostLine, ...]

    @property
    def total(self) -> float:
        return math.fsum(line.dollars for line in self.lines)


def cost_per_million(workload: Workload, prices: Prices) -> CostBreakdown:
    lines: list[CostLine] = []
    for f in workload.functions:
        lines.append(CostLine(f"Lambda {f.name} requests", f.invocations, "requests", prices.lambda_request))
        compute = f"Lambda {f.name} compute ({f.memory_mb} MB)"
        lines.append(CostLine(compute, f.gb_seconds, "GB-s", prices.lambda_gb_second))
    lines.append(CostLine("DynamoDB writes", workload.dynamodb_write_units, "WRU", prices.dynamodb_write_unit))
    lines.append(CostLine("DynamoDB reads", workload.dynamodb_read_units, "RRU", prices.dynamodb_read_unit))
    lines.append(CostLine("SQS requests", workload.sqs_requests, "requests", prices.sqs_request))
    return CostBreakdown(tuple(lines))


def format_breakdown(breakdown: CostBreakdown, prices: Prices) -> str:
    lines = [f"{'item':<44} {'quantity':>14} {'unit':<9} {'unit price':>14} {'USD':>10}"]
    for line in breakdown.lines:
        lines.append(
            f"{line.item:<44} {line.quantity:>14,.1f} {line.unit:<9} {line.unit_price:>14.10f} {line.dollars:>10.4f}"
        )
    lines.append(f"{'total per million conversions':<44} {'':>14} {'':<9} {'':>14} {breakdown.total:>10.4f}")
    lines.append(f"prices as of {prices.as_of}: {prices.source}")
    lines.append(f"caveat: {prices.caveat}")
    return "\n".join(lines)


def memory_mb(function: str, config_path: Path = ROOT / ".chalice" / "config.json") -> int:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    specific = config.get("lambda_functions", {}).get(function, {})
    return int(specific.get("lambda_memory_size", config.get("lambda_memory_size", 128)))


def workload_from(evaluator: dict[str, Any], sender: dict[str, Any]) -> tuple[Workload, dict[str, float]]:
    """The workload per million conversions from the details of benchmarks 1 and 3."""
    steady = evaluator["phases"]["steady state"]
    records = float(steady["records"])
    deliveries_per_record = steady["deliveries"] / records
    deliveries = deliveries_per_record * MILLION
    evaluator_sends = steady["requests_by_operation"].get("sqs:SendMessageBatch", 0) / records * MILLION
    sender_requests = sender["aws_requests_per_delivery"]
    sender_sqs = sum(count for name, count in sender_requests.items() if name.startswith("sqs:")) * deliveries
    poller_sqs = 2 * deliveries / SENDER_BATCH
    write_units = (
        sum(steady["write_units"].values()) / records * MILLION
        + sum(sender["write_units_per_delivery"].values()) * deliveries
    )
    read_units = (
        sum(steady["read_units"].values()) / records * MILLION
        + sum(sender["read_units_per_delivery"].values()) * deliveries
    )
    batch_of_ten = sorted(sender["batch_of_ten_seconds"])
    functions = (
        LambdaFunctionLoad(
            "evaluator",
            MILLION / EVALUATOR_BATCH,
            float(steady["median_batch_seconds"]) * 1000.0,
            memory_mb("on_conversion_change"),
        ),
        LambdaFunctionLoad(
            "sender",
            deliveries / SENDER_BATCH,
            batch_of_ten[len(batch_of_ten) // 2] * 1000.0,
            memory_mb("on_delivery_message"),
        ),
    )
    inputs = {
        "deliveries_per_conversion": deliveries_per_record,
        "evaluator_send_message_batch_per_million": evaluator_sends,
        "sender_sqs_requests_per_million": sender_sqs,
        "lambda_poller_sqs_requests_per_million": poller_sqs,
    }
    return Workload(functions, write_units, read_units, evaluator_sends + sender_sqs + poller_sqs), inputs


def run(evaluator: BenchmarkResult, sender: BenchmarkResult, prices: Prices | None = None) -> BenchmarkResult:
    prices = prices or Prices()
    workload, inputs = workload_from(evaluator.details, sender.details)
    breakdown = cost_per_million(workload, prices)
    rows = [
        Row(
            "6 cost",
            "USD per million conversions (list prices)",
            breakdown.total,
            "USD",
            "printed",
            None,
            note=f"{inputs['deliveries_per_conversion']:.3f} deliveries per conversion; see the price table below",
        )
    ]
    rows.extend(Row("6 cost", line.item, line.dollars, "USD") for line in breakdown.lines)
    return BenchmarkResult(
        "cost",
        rows,
        {
            "inputs": inputs,
            "workload": {
                "functions": [vars(function) for function in workload.functions],
                "dynamodb_write_units": workload.dynamodb_write_units,
                "dynamodb_read_units": workload.dynamodb_read_units,
                "sqs_requests": workload.sqs_requests,
            },
            "prices": vars(prices),
            "table": format_breakdown(breakdown, prices),
        },
    )
