"""The retry schedule: ceilings, equal jitter, floor, Retry-After, attempt limit and deadline."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.core.schedule import (
    RetryPolicy,
    StopReason,
    decide_retry,
    jittered_wait,
    next_wait,
    parse_retry_after,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
bases = st.floats(min_value=0.01, max_value=120, allow_nan=False, allow_infinity=False)
attempt_numbers = st.integers(min_value=1, max_value=40)
fractions = st.floats(min_value=0, max_value=1)
retry_afters = st.one_of(st.none(), st.floats(min_value=0, max_value=10**9, allow_nan=False))


def fixed(fraction: float):  # type: ignore[no-untyped-def]
    """A `uniform` that always draws the same relative point of the range."""
    return lambda low, high: low + (high - low) * fraction


def test_default_ceilings_follow_the_design() -> None:
    policy = RetryPolicy(base_seconds=30, max_attempts=13)
    ceilings = [policy.ceiling(n) for n in range(1, 13)]
    assert ceilings == [30, 120, 600, 1800, 3600, 10800, 21600, 43200, 43200, 43200, 43200, 43200]
    assert policy.floor_seconds == 60
    assert policy.deadline_seconds == 72 * 3600


@given(bases, attempt_numbers, fractions)
def test_every_wait_lies_between_half_the_ceiling_and_the_ceiling(base: float, attempts: int, fraction: float) -> None:
    policy = RetryPolicy(base_seconds=base)
    ceiling = policy.ceiling(attempts)
    wait = jittered_wait(policy, attempts, fixed(fraction))
    assert ceiling / 2 <= wait <= ceiling


@given(bases, attempt_numbers, st.randoms(use_true_random=False))
def test_real_random_draws_stay_within_the_jitter_range(base: float, attempts: int, rng: random.Random) -> None:
    policy = RetryPolicy(base_seconds=base)
    wait = jittered_wait(policy, attempts, rng.uniform)
    assert policy.ceiling(attempts) / 2 <= wait <= policy.ceiling(attempts)


@given(bases, attempt_numbers, fractions, st.booleans(), retry_afters)
def test_retry_after_never_shortens_a_wait(
    base: float, attempts: int, fraction: float, floor: bool, retry_after: float | None
) -> None:
    policy = RetryPolicy(base_seconds=base)
    without = next_wait(policy, attempts, apply_floor=floor, retry_after_seconds=None, uniform=fixed(fraction))
    with_header = next_wait(
        policy, attempts, apply_floor=floor, retry_after_seconds=retry_after, uniform=fixed(fraction)
    )
    assert with_header >= without
    assert with_header <= policy.max_wait_seconds
    if retry_after is not None:
        assert with_header == min(max(without, retry_after), policy.max_wait_seconds)


@given(bases, attempt_numbers, fractions)
def test_the_floor_applies_after_timeouts_and_429(base: float, attempts: int, fraction: float) -> None:
    policy = RetryPolicy(base_seconds=base)
    wait = next_wait(policy, attempts, apply_floor=True, retry_after_seconds=None, uniform=fixed(fraction))
    assert wait >= policy.floor_seconds
    assert wait <= policy.max_wait_seconds


def test_a_huge_retry_after_is_capped_at_the_longest_wait() -> None:
    policy = RetryPolicy(base_seconds=30)
    wait = next_wait(policy, 1, apply_floor=False, retry_after_seconds=10**9, uniform=fixed(0.5))
    assert wait == 43200


@given(bases, st.integers(min_value=1, max_value=30), st.lists(fractions, min_size=30, max_size=30), retry_afters)
def test_a_whole_schedule_stays_within_attempts_and_deadline(
    base: float, max_attempts: int, draws: list[float], retry_after: float | None
) -> None:
    policy = RetryPolicy(base_seconds=base, max_attempts=max_attempts)
    started = NOW
    now = NOW
    attempts = 1
    while True:
        decision = decide_retry(
            policy,
            attempts_made=attempts,
            schedule_started_at=started,
            now=now,
            apply_floor=attempts % 2 == 0,
            retry_after_seconds=retry_after,
            uniform=fixed(draws[attempts % len(draws)]),
        )
        if not decision.retry:
            break
        assert decision.wait_seconds is not None
        now += timedelta(seconds=decision.wait_seconds)
        attempts += 1
    assert attempts <= max_attempts
    assert now - started <= timedelta(seconds=policy.deadline_seconds)
    if attempts == max_attempts:
        assert decision.stop_reason in (StopReason.RETRIES_EXHAUSTED, StopReason.RETRY_DEADLINE_PASSED)
    else:
        assert decision.stop_reason is StopReason.RETRY_DEADLINE_PASSED


def test_the_last_attempt_is_not_followed_by_a_wait() -> None:
    policy = RetryPolicy(base_seconds=30, max_attempts=3)
    decision = decide_retry(
        policy,
        attempts_made=3,
        schedule_started_at=NOW,
        now=NOW,
        apply_floor=False,
        retry_after_seconds=None,
        uniform=fixed(0),
    )
    assert decision.stop_reason is StopReason.RETRIES_EXHAUSTED
    assert decision.wait_seconds is None


def test_a_wait_that_would_cross_the_deadline_dead_letters() -> None:
    policy = RetryPolicy(base_seconds=30, max_attempts=13)
    almost = NOW + timedelta(seconds=policy.deadline_seconds - 10)
    decision = decide_retry(
        policy,
        attempts_made=2,
        schedule_started_at=NOW,
        now=almost,
        apply_floor=False,
        retry_after_seconds=None,
        uniform=fixed(0),
    )
    assert decision.stop_reason is StopReason.RETRY_DEADLINE_PASSED


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (" 0 ", 0.0), ("", None), ("soon", None), ("-5", None), ("1.5", None), (None, None)],
)
def test_retry_after_in_seconds_is_parsed_and_malformed_values_are_ignored(
    value: str | None, expected: float | None
) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_as_an_http_date_is_the_time_until_that_date() -> None:
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=90), usegmt=True), NOW) == 90


def test_retry_after_in_the_past_means_now() -> None:
    assert parse_retry_after(format_datetime(NOW - timedelta(hours=1), usegmt=True), NOW) == 0


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(base_seconds=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
