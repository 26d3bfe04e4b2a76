"""The test-fire limit's window (docs/contract.md §5): fixed one-minute windows per postback (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class FireWindow:
    """The current test-fire window of a postback and how long until the next one."""

    start: int  # epoch seconds, a multiple of WINDOW_SECONDS
    retry_after: int  # whole seconds until the next window starts (at least 1)


def fire_window(now: float, window_seconds: int = WINDOW_SECONDS) -> FireWindow:
    """The window `now` falls in, and how long until the next one (the 429's `Retry-After`)."""
    start = int(now // window_seconds) * window_seconds
    return FireWindow(start, max(1, math.ceil(start + window_seconds - now)))
