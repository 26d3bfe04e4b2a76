"""The cost formula: list prices times counted units."""

from __future__ import annotations

import pytest

from bench.cost import LambdaFunctionLoad, Prices, Workload, cost_per_million, format_breakdown

pytestmark = pytest.mark.unit


def _workload(**overrides: object) -> Workload:
    values: dict[str, object] = {
        "functions": (LambdaFunctionLoad("evaluator", 10_000, 200.0, 256),),
        "dynamodb_write_units": 600_000.0,
        "dynamodb_read_units": 40_000.0,
        "sqs_requests": 90_000.0,
    }
    values.update(overrides)
    return Workload(**values)  # type: ignore[arg-type]


def test_lambda_compute_is_invocations_times_billed_seconds_times_gigabytes() -> None:
    load = LambdaFunctionLoad("evaluator", 10_000, 200.0, 256)
    assert load.gb_seconds == pytest.approx(10_000 * 0.2 * 0.25)


def test_lambda_duration_is_billed_per_started_millisecond() -> None:
    assert LambdaFunctionLoad("f", 1, 0.2, 1024).gb_seconds == pytest.approx(0.001)


def test_cost_lines_multiply_quantities_by_list_prices() -> None:
    prices = Prices()
    breakdown = cost_per_million(_workload(), prices)
    by_item = {line.item: line for line in breakdown.lines}
    assert by_item["Lambda evaluator requests"].dollars == pytest.approx(10_000 * 0.20 / 1e6)
    assert by_item["Lambda evaluator compute (256 MB)"].dollars == pytest.approx(500 * 0.0000166667)
    assert by_item["DynamoDB writes"].dollars == pytest.approx(600_000 * 0.625 / 1e6)
    assert by_item["DynamoDB reads"].dollars == pytest.approx(40_000 * 0.125 / 1e6)
    assert by_item["SQS requests"].dollars == pytest.approx(0.036)


def test_total_is_the_sum_of_the_lines() -> None:
    breakdown = cost_per_million(_workload(), Prices())
    assert breakdown.total == pytest.approx(sum(line.dollars for line in breakdown.lines))


def test_the_pre_2024_dynamodb_prices_double_only_the_dynamodb_lines() -> None:
    current = cost_per_million(_workload(), Prices())
    before = cost_per_million(_workload(), Prices(dynamodb_write_unit=1.25e-6, dynamodb_read_unit=0.25e-6))
    dynamodb = sum(line.dollars for line in current.lines if line.item.startswith("DynamoDB"))
    assert before.total == pytest.approx(current.total + dynamodb)


def test_the_prices_state_their_date_and_source() -> None:
    prices = Prices()
    assert prices.as_of and "us-east-1" in prices.source and "$0.625/M WRU" in prices.source
    assert prices.as_of in format_breakdown(cost_per_million(_workload(), prices), prices)


def test_each_function_gets_its_own_lines() -> None:
    workload = _workload(
        functions=(LambdaFunctionLoad("evaluator", 10, 1.0, 128), LambdaFunctionLoad("sender", 20, 1.0, 128))
    )
    items = [line.item for line in cost_per_million(workload, Prices()).lines]
    assert "Lambda sender requests" in items
    assert "Lambda evaluator requests" in items


def test_printed_breakdown_states_the_prices_and_their_date() -> None:
    prices = Prices()
    text = format_breakdown(cost_per_million(_workload(), prices), prices)
    assert prices.as_of in text
    assert "0.0000166667" in text
    assert "total per million conversions" in text
