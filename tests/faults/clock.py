"""The simulated clock: every service, the queues, the trackers and the on-call tools read it, so a
72-hour retry schedule runs in milliseconds and the same seed always gives the same times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# 2026-01-05T00:00:00Z: every scenario starts here.
EPOCH_START = 1_767_571_200.0


class SimClock:
    def __init__(self, start: float = EPOCH_START) -> None:
        self._now = start

    def __call__(self) -> datetime:
        """The services' `clock` (an aware UTC datetime)."""
        return datetime.fromtimestamp(self._now, UTC)

    def epoch(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)

    def advance_to(self, epoch: float) -> None:
        self._now = max(self._now, epoch)

    def sleep(self, seconds: float) -> None:
        """What `time.sleep` becomes inside the campaign: time passes, nothing waits."""
        self.advance(seconds)

    def at(self, seconds_from_now: float) -> datetime:
        return self() + timedelta(seconds=seconds_from_now)
