"""`--rate N/s`: pace sends so a redrive cannot flood the sender or the affiliates' trackers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*s)?\s*$")


class RateArgumentError(ValueError):
    """A rate argument is not `N` or `N/s`."""


def parse_rate(text: str) -> float:
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise RateArgumentError(f"{text!r} is not a rate: use a positive number per second, e.g. 20/s")
    return float(match.group(1))


class Pacer:
    """At most `rate` events per second (None: unpaced); clock and sleep are injectable."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None

    def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        if self._next is not None and now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval
