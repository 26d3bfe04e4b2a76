"""What the GETs of one sender batch share: the per-host slots, the batch's health writes, its deadline, its GETs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from functions.core.model import Postback
from functions.sender.backfill import SlowGets
from functions.storage.postback_health import success_changes_health


class BatchHealth:
    """Health writes of one batch: a postback's success is written at most once, unless a failure came between."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._succeeded: set[str] = set()

    def success_to_write(self, postback: Postback, at: datetime) -> bool:
        if not success_changes_health(postback, at):
            return False
        with self._lock:
            if postback.id in self._succeeded:
                return False
            self._succeeded.add(postback.id)
            return True

    def failure_written(self, postback_id: str) -> None:
        with self._lock:
            self._succeeded.discard(postback_id)


class BatchState:
    """What the GETs of one batch share."""

    def __init__(
        self,
        limits: HostLimits,
        postbacks_read_at: float,
        remaining_ms: Callable[[], int] | None,
        gets: SlowGets,
    ) -> None:
        self.limits = limits
        self.postbacks_read_at = postbacks_read_at
        self.remaining_ms = remaining_ms
        self.gets = gets  # the invocation's GETs in flight (functions/sender/backfill.py)
        self.health = BatchHealth()


class HostLimits:
    """One semaphore per target host, created on first use: the per-host cap inside a batch."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}

    def slot(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            semaphore = self._semaphores.get(host)
            if semaphore is None:
                semaphore = threading.BoundedSemaphore(self._per_host)
                self._semaphores[host] = semaphore
            return semaphore
