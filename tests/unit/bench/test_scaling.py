"""The scaling model of benchmark 8: a bulk approval simulated second by second from measured costs."""

from __future__ import annotations

import pytest

from bench.scaling import Config, Costs, evaluator_batch_seconds, simulate, template_config

pytestmark = pytest.mark.unit

COSTS = Costs(
    evaluator_cpu_per_record=0.00004,
    evaluator_seconds_per_request=0.005,
    sender_batch_seconds=0.4,
    table_write_units_per_delivery=3.0,
    index_write_units_per_delivery=3.0,
    deliveries_per_approval=1.0,
    busiest_postback_share=0.01,
)


def test_a_batch_of_approvals_costs_its_cpu_and_its_rounds_of_requests() -> None:
    # 100 records x 40 us + (1 version read + 100 puts + 10 sends) x 5 ms, one at a time
    assert evaluator_batch_seconds(COSTS, write_concurrency=1) == pytest.approx(0.004 + 111 * 0.005)
    # the puts 16 at a time: 7 rounds
    assert evaluator_batch_seconds(COSTS, write_concurrency=16) == pytest.approx(0.004 + 18 * 0.005)


def test_with_enough_capacity_the_burst_drains_when_it_ends() -> None:
    outcome = simulate(COSTS, Config(shards=10, parallelization_factor=10, sender_max_concurrency=1000), duration=60)
    assert outcome.evaluator_capacity >= 10_000 and outcome.sender_capacity >= 10_000
    assert outcome.drained_after <= 61
    assert outcome.peak_stream_age <= 1


def test_a_slow_sender_leaves_a_backlog_that_drains_at_its_capacity() -> None:
    config = Config(shards=10, parallelization_factor=10, sender_max_concurrency=100)  # 2,500 deliveries/s
    outcome = simulate(COSTS, config, rate=10_000, duration=60)
    assert outcome.sender_capacity == pytest.approx(2_500)
    # 600,000 deliveries at 2,500/s
    assert outcome.drained_after == pytest.approx(240, abs=2)
    assert outcome.peak_queue == pytest.approx(600_000 - 60 * 2_500, rel=0.01)


def test_one_lane_per_shard_writing_one_at_a_time_falls_behind_and_the_stream_ages() -> None:
    config = Config(shards=10, parallelization_factor=1, sender_max_concurrency=1000, evaluator_write_concurrency=1)
    outcome = simulate(COSTS, config, duration=60)
    assert outcome.evaluator_capacity < 10_000
    assert outcome.peak_stream_age > 60


def test_the_busiest_postback_is_held_to_its_index_key_limit() -> None:
    hot = Costs(**{**vars(COSTS), "busiest_postback_share": 0.5})
    outcome = simulate(hot, Config(shards=10, parallelization_factor=10, sender_max_concurrency=1000), duration=30)
    assert outcome.peak_hot_key_write_units <= 1_000 + 10_000 * 0.5  # creates are not held back in the model
    slower = simulate(COSTS, Config(10, 10, 1000), duration=30)
    assert outcome.drained_after > slower.drained_after


def test_the_template_sets_what_docs_scaling_md_derives() -> None:
    config = template_config(shards=10)
    assert (config.parallelization_factor, config.sender_max_concurrency) == (10, 100)
    assert config.evaluator_write_concurrency == 16
