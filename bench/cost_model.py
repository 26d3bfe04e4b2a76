"""Benchmark 6: cost per million conversions, from benchmarks 1 and 3 and `.chalice/config.json`.

Per conversion record (benchmark 1, steady state): evaluator requests, write and read units,
SendMessageBatch calls, deliveries created, and the handler's duration per batch of 100 (measured
on moto in-process, so it includes moto's own CPU: an upper bound). Per delivery (benchmark 3):
the sender's requests and units, and the handler's duration per batch of 10 against a receiver
that answers in 200 ms. Lambda's SQS poller adds one ReceiveMessage and one DeleteMessageBatch
per batch of 10 (empty polls are ignored). Stream reads by Lambda are free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.cost import LambdaFunctionLoad, Prices, Workload, cost_per_million, format_breakdown
from bench.report import BenchmarkResult, Row

ROOT = Path(__file__).resolve().parent.parent
MILLION = 1_000_000
EVALUATOR_BATCH = 100
SENDER_BATCH = 10


def memory_mb(function: str, config_path: Path = ROOT / ".chalice" / "config.json") -> int:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    specific = config.get("lambda_functions", {}).get(function, {})
    return int(specific.get("lambda_memory_size", config.get("lambda_memory_size", 128)))


def workload_from(evaluator: dict[str, Any], sender: dict[str, Any]) -> tuple[Workload, dict[str, float]]:
    steady = evaluator["phases"]["steady state"]
    records = float(steady["records"])
    deliveries_per_record = steady["deliveries"] / records
    deliveries = deliveries_per_record * MILLION
    requests = steady["requests_by_operation"]
    evaluator_sends = requests.get("sqs:SendMessageBatch", 0) / records * MILLION
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
            sorted(sender["batch_of_ten_seconds"])[len(sender["batch_of_ten_seconds"]) // 2] * 1000.0,
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
