"""The retry schedule of the sender (docs/sender.md, Retry schedule): pure, clock and randomness injected.

Everything scales with one base (`POSTBACKS_RETRY_BASE_SECONDS`, default 30 s):

- ceilings: base x 1, 4, 20, 60, 120, 360, 720, then 1440 for every later wait
  (30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, then 12 h at the default base);
- each wait is drawn uniformly from [ceiling/2, ceiling] ("equal jitter");
- after a timeout or a 429 the wait is at least base x 2 (the floor);
- `Retry-After` (on 429/503 only; the classification decides) can lengthen a wait, never shorten
  it, and nothing waits longer than base x 1440;
- at most `max_attempts` attempts per schedule, and no attempt later than base x 8640 after the
  first attempt of the schedule.

A wait that would put the next attempt past the deadline is not shortened to fit (that would
ignore the jitter, the floor or the receiver's `Retry-After`): the delivery is dead-lettered
instead, with reason `retry_deadline_passed`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

CEILING_MULTIPLIERS: tuple[int, ...] = (1, 4, 20, 60, 120, 360, 720)
MAX_WAIT_MULTIPLIER = 1440
FLOOR_MULTIPLIER = 2
DEADLINE_MULTIPLIER = 8640

# Draws a number uniformly from [low, high]; `random.uniform` in production, fixed in tests.
Uniform = Callable[[float, float], float]


class StopReason(StrEnum):
    RETRIES_EXHAUSTED = "retries_exhausted"
    RETRY_DEADLINE_PASSED = "retry_deadline_passed"


@dataclass(frozen=True)
class RetryPolicy:
    """The retry schedule: its waits and deadline as multiples of `base_seconds`, and the attempts allowed."""

    base_seconds: float = 30.0
    max_attempts: int = 13

    def __post_init__(self) -> None:
        if self.base_seconds <= 0:
            raise ValueError("base_seconds must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def ceiling(self, attempts_made: int) -> float:
        """The ceiling of the wait after the `attempts_made`-th attempt (1-based)."""
        if attempts_made < 1:
            raise ValueError("attempts_made must be at least 1")
        index = attempts_made - 1
        multiplier = CEILING_MULTIPLIERS[index] if index < len(CEILING_MULTIPLIERS) else MAX_WAIT_MULTIPLIER
        return self.base_seconds * multiplier

    @property
    def max_wait_seconds(self) -> float:
        return self.base_seconds * MAX_WAIT_MULTIPLIER

    @property
    def floor_seconds(self) -> float:
        return self.base_seconds * FLOOR_MULTIPLIER

    @property
    def deadline_seconds(self) -> float:
        return self.base_seconds * DEADLINE_MULTIPLIER


@dataclass(frozen=True)
class RetryDecision:
    """Either wait `wait_seconds` and try again, or stop for `stop_reason`."""

    wait_seconds: float | None
    stop_reason: StopReason | None

    @property
    def retry(self) -> bool:
        return self.stop_reason is None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or an HTTP date); None if malformed.

    A date in the past means "now" (0). Negative or fractional seconds are malformed (RFC 9110
    allows only a non-negative integer).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def jittered_wait(policy: RetryPolicy, attempts_made: int, uniform: Uniform) -> float:
    """Equal jitter: uniformly in [ceiling/2, ceiling]."""
    ceiling = policy.ceiling(attempts_made)
    drawn = uniform(ceiling / 2, ceiling)
    return min(max(drawn, ceiling / 2), ceiling)


def next_wait(
    policy: RetryPolicy,
    attempts_made: int,
    *,
    apply_floor: bool,
    retry_after_seconds: float | None,
    uniform: Uniform,
) -> float:
    """The wait before the next attempt, before the attempt limit and deadline are considered."""
    wait = jittered_wait(policy, attempts_made, uniform)
    if apply_floor:
        wait = max(wait, policy.floor_seconds)
    if retry_after_seconds is not None:
        wait = max(wait, retry_after_seconds)
    return min(wait, policy.max_wait_seconds)


def decide_retry(
    policy: RetryPolicy,
    *,
    attempts_made: int,
    schedule_started_at: datetime,
    now: datetime,
    apply_floor: bool,
    retry_after_seconds: float | None,
    uniform: Uniform = random.uniform,
) -> RetryDecision:
    """After a retryable failure: how long to wait, or why to stop.

    `attempts_made` counts the attempts of this schedule including the one that just failed;
    `schedule_started_at` is when the first of them was made.
    """
    if attempts_made >= policy.max_attempts:
        return RetryDecision(None, StopReason.RETRIES_EXHAUSTED)
    wait = next_wait(
        policy,
        attempts_made,
        apply_floor=apply_floor,
        retry_after_seconds=retry_after_seconds,
        uniform=uniform,
    )
    deadline = schedule_started_at + timedelta(seconds=policy.deadline_seconds)
    if now + timedelta(seconds=wait) > deadline:
        return RetryDecision(None, StopReason.RETRY_DEADLINE_PASSED)
    return RetryDecision(wait, None)
