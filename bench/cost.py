"""Cost per million conversions at AWS list prices, from counted requests and measured durations.

Pure arithmetic: the inputs are what the other benchmarks measured, per conversion record or
per delivery, and the prices are explicit so the assumptions print with the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    """List prices, us-east-1, in US dollars."""

    lambda_gb_second: float = 0.0000166667  # x86, first pricing tier
    lambda_request: float = 0.20 / MILLION
    dynamodb_write_unit: float = 1.25 / MILLION  # on-demand write request unit
    dynamodb_read_unit: float = 0.25 / MILLION  # on-demand read request unit
    sqs_request: float = 0.40 / MILLION  # standard queue, per 64 KiB chunk
    as_of: str = "2026-11-26"
    source: str = (
        "the project's design brief (Lambda $0.0000166667/GB-s and $0.20/M requests; DynamoDB on-demand "
        "$1.25/M WRU and $0.25/M RRU; SQS $0.40/M requests); stream reads by Lambda are free; free tiers ignored"
    )
    caveat: str = (
        "AWS halved DynamoDB on-demand prices on 2024-11-01 ($0.625/M WRU, $0.125/M RRU in us-east-1); "
        "if those are the current list prices the DynamoDB lines are half of what is shown"
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
    dollars: float


@dataclass(frozen=True)
class CostBreakdown:
    lines: tuple[CostLine, ...] = field(default_factory=tuple)

    @property
    def total(self) -> float:
        return math.fsum(line.dollars for line in self.lines)


def cost_per_million(workload: Workload, prices: Prices) -> CostBreakdown:
    lines: list[CostLine] = []
    for function in workload.functions:
        lines.append(
            CostLine(
                f"Lambda {function.name} requests",
                function.invocations,
                "requests",
                prices.lambda_request,
                function.invocations * prices.lambda_request,
            )
        )
        lines.append(
            CostLine(
                f"Lambda {function.name} compute ({function.memory_mb} MB)",
                function.gb_seconds,
                "GB-s",
                prices.lambda_gb_second,
                function.gb_seconds * prices.lambda_gb_second,
            )
        )
    lines.append(
        CostLine(
            "DynamoDB writes",
            workload.dynamodb_write_units,
            "WRU",
            prices.dynamodb_write_unit,
            workload.dynamodb_write_units * prices.dynamodb_write_unit,
        )
    )
    lines.append(
        CostLine(
            "DynamoDB reads",
            workload.dynamodb_read_units,
            "RRU",
            prices.dynamodb_read_unit,
            workload.dynamodb_read_units * prices.dynamodb_read_unit,
        )
    )
    lines.append(
        CostLine(
            "SQS requests",
            workload.sqs_requests,
            "requests",
            prices.sqs_request,
            workload.sqs_requests * prices.sqs_request,
        )
    )
    return CostBreakdown(tuple(lines))


def sqs_request_chunks(requests: int, payload_bytes: int) -> int:
    """SQS bills each request per started 64 KiB of payload."""
    return requests * max(1, math.ceil(payload_bytes / 65536))


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
