"""The sender's view of the host pause (docs/sender.md, host pause): a per-container cache over the shared state.

`HostGuard` applies the rules of `functions.core.host_pause` to the states kept by
`functions.storage.hosts.HostRepository`:

- `read_with_postbacks`: the batch's one read of its postbacks also reads the states of its hosts
  that are not in the cache (entries live `cache_seconds`, 1.5 s by default): no extra request.
- `gate`: whether a delivery may be sent now, must wait for the pause (or another worker's probe)
  to end, or may claim the probe of an ended pause (one conditional write). `hold` acts on it for
  a leased delivery: a waiting one gives its lease back without an attempt, due at the pause end
  (`host_paused_until` on the record says why), and its message is hidden until then plus a random
  part of the return window (`functions.core.host_pause.return_window`: as long as the pause), so
  that a pause's waiting deliveries do not all come back in the same second; one whose retry
  deadline would pass first is dead-lettered (`retry_deadline_passed`) — the deadline runs.
- `record`: after a GET, count a failure (one write; a second one when it pauses the host) or,
  when the host answered and a failure or pause is known, resume it (one delete). A success to a
  host the cache knows as healthy writes nothing.

Every write returns the state as written, which refreshes the cache, so the next GET of the same
batch sees a pause at once. The state of another container reaches this one within
`cache_seconds`; a success counted from a cache that has not seen another container's recent
failures does not reset them (the next success after the cache refresh does). The guard fails
open: when the state cannot be read or written the GET goes out as it would without pausing.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from functions.core.classification import classify
from functions.core.host_pause import (
    Gate,
    GateAction,
    HostPausePolicy,
    HostState,
    counts_as_failure,
    gate,
    host_key,
    return_window,
)
from functions.core.host_pause import pause_after_failure as pause_due
from functions.core.messages import dead_letter_attributes, dead_letter_message
from functions.core.model import Delivery, DeliveryState, Postback, format_timestamp, parse_timestamp
from functions.core.schedule import StopReason, Uniform

logger = logging.getLogger(__name__)

CACHE_SECONDS = 1.5
# Entries beyond this many are dropped when stale (a container that sends to many hosts).
CACHE_MAX_ENTRIES = 4096


class HostStore(Protocol):
    """What the guard needs of `functions.storage.hosts.HostRepository`."""

    def read_with_postbacks(
        self, postback_ids: Sequence[str], hosts: Sequence[str]
    ) -> tuple[dict[str, Postback], dict[str, HostState]]: ...
    def get(self, host: str) -> HostState | None: ...
    def record_failure(self, host: str, reason: str, at: datetime) -> HostState: ...
    def pause(self, host: str, until: float, pauses_before: int, now: float) -> HostState | None: ...
    def claim_probe(self, host: str, paused_until: float, probe_until: float, now: float) -> HostState | None: ...
    def resume(self, host: str) -> None: ...


class WaitingStore(Protocol):
    """What `hold` needs of the deliveries table (`DeliveryRepository`)."""

    def wait_for_host(
        self, delivery_id: str, owner: str, state: DeliveryState, until: datetime, now: datetime
    ) -> Delivery: ...
    def record_dead_letter_unattempted(self, delivery_id: str, owner: str, reason: str, now: datetime) -> Delivery: ...


class VisibilityPort(Protocol):
    def change_visibility(self, receipt_handle: str, seconds: float) -> None: ...


class DeadLetterPort(Protocol):
    def send(self, body: dict[str, Any], attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str: ...


class Hold(StrEnum):
    SEND = "send"  # no pause: send the GET
    WAITING = "waiting"  # lease given back, message hidden until the pause ends: report it for later
    DEAD_LETTERED = "dead_lettered"  # the deadline passes during the pause: DLQ copy sent, acknowledge it


class HostGuard:
    def __init__(
        self,
        store: HostStore,
        policy: HostPausePolicy,
        *,
        deliveries: WaitingStore,
        queue: VisibilityPort,
        dead_letters: DeadLetterPort,
        retry_deadline_seconds: float,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        uniform: Uniform = random.uniform,
    ) -> None:
        self._store = store
        self._policy = policy
        self._deliveries = deliveries
        self._queue = queue
        self._dead_letters = dead_letters
        self._retry_deadline_seconds = retry_deadline_seconds
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._uniform = uniform
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, HostState | None]] = {}
        self._pauses_written = 0

    @property
    def policy(self) -> HostPausePolicy:
        return self._policy

    def read_with_postbacks(self, postback_ids: Sequence[str], urls: Sequence[str]) -> dict[str, Postback]:
        """The postbacks (consistent), reading on the way the states of the URLs' hosts the cache lacks."""
        if not self._policy.enabled:
            return self._store.read_with_postbacks(postback_ids, ())[0]
        hosts = [key for key in (host_key(url) for url in urls) if key is not None]
        now = self._monotonic()
        with self._lock:
            stale = [host for host in dict.fromkeys(hosts) if not self._fresh(host, now)]
        postbacks, states = self._store.read_with_postbacks(postback_ids, stale)
        with self._lock:
            if len(self._cache) + len(stale) > CACHE_MAX_ENTRIES:
                self._cache = {key: entry for key, entry in self._cache.items() if self._fresh(key, now)}
            for host in stale:
                self._cache[host] = (now, states.get(host))
        return postbacks

    def gate(self, host: str) -> Gate:
        """What a delivery to `host` may do now (claiming the probe when the pause has ended)."""
        state = self._cached(host)
        now = self._clock()
        decision = gate(state, self._policy, now)
        if decision.action is not GateAction.PROBE:
            return decision
        assert state is not None and state.paused_until is not None
        try:
            claimed = self._store.claim_probe(host, state.paused_until, now + self._policy.probe_seconds, now)
            if claimed is not None:
                self._remember(host, claimed)
                return decision
            current = self._store.get(host)
        except Exception:
            logger.warning("host %s: the probe could not be claimed; sending", host, exc_info=True)
            return Gate(GateAction.SEND)
        self._remember(host, current)
        refreshed = gate(current, self._policy, now)
        if refreshed.action is GateAction.PROBE:
            # Claimed and released again meanwhile: wait for the next look rather than race for it.
            return Gate(GateAction.WAIT, now + 1.0)
        return refreshed

    def hold(self, record: Delivery, owner: str, receipt_handle: str) -> Hold:
        """Whether the leased delivery may be sent now; if not, make it wait for its host (no attempt spent)."""
        host = host_key(record.url) if self._policy.enabled else None
        if host is None:
            return Hold.SEND
        decision = self.gate(host)
        if decision.action is not GateAction.WAIT or decision.until is None:
            return Hold.SEND
        epoch = self._clock()
        now = datetime.fromtimestamp(epoch, UTC)
        until = datetime.fromtimestamp(decision.until, UTC)
        # The message comes back at a random time within the return window after the wait, not with
        # all the others in the second the pause ends; never after the retry deadline.
        window = return_window(self._cached(host), self._policy, epoch)
        returns = until + timedelta(seconds=self._uniform(0.0, window))
        if record.schedule_started_at is not None:
            deadline = parse_timestamp(record.schedule_started_at) + timedelta(seconds=self._retry_deadline_seconds)
            if until > deadline:
                return self._dead_letter(record, owner, now)
            returns = min(returns, deadline)
        state = DeliveryState.RETRYING if record.cycle_attempts > 0 else DeliveryState.PENDING
        self._deliveries.wait_for_host(record.delivery_id, owner, state, until, now)
        self._queue.change_visibility(receipt_handle, max(1, math.ceil((returns - now).total_seconds())))
        logger.info(
            "delivery %s (postback %s): host %s paused until %s",
            record.delivery_id,
            record.postback_id,
            host,
            format_timestamp(until),
        )
        return Hold.WAITING

    def _dead_letter(self, record: Delivery, owner: str, now: datetime) -> Hold:
        reason = StopReason.RETRY_DEADLINE_PASSED.value
        updated = self._deliveries.record_dead_letter_unattempted(record.delivery_id, owner, reason, now)
        body = dead_letter_message(
            delivery_id=updated.delivery_id,
            affiliate_id=updated.affiliate_id,
            postback_id=updated.postback_id,
            conversion_id=updated.conversion_id,
            conversion_status=updated.conversion_status,
            target_host=updated.target_host,
            reason=reason,
            last_status_code=updated.last_status_code,
            attempts=[item.to_dict() for item in updated.attempts],
            created_at=updated.created_at,
            dead_lettered_at=updated.dead_lettered_at or format_timestamp(now),
        )
        attributes = dead_letter_attributes(updated.affiliate_id, updated.postback_id, reason, updated.last_status_code)
        self._dead_letters.send(body, attributes)
        logger.warning("delivery %s dead-lettered: its deadline passes while its host is paused", record.delivery_id)
        return Hold.DEAD_LETTERED

    def record(self, url: str, status_code: int | None, error: str | None, at: datetime) -> None:
        """Count the outcome of one GET to the URL's host."""
        host = host_key(url) if self._policy.enabled else None
        if host is None:
            return
        classification = classify(status_code, error)
        failed = counts_as_failure(classification, status_code)
        if failed is None:
            return
        try:
            if not failed:
                known = self._cached(host)
                if known is not None and not known.healthy:
                    self._store.resume(host)
                    logger.info("host %s answered: resumed", host)
                    self._remember(host, None)
                return
            state = self._store.record_failure(host, classification.reason or "failed", at)
            now = self._clock()
            until = pause_due(state, self._policy, now)
            if until is not None:
                paused = self._store.pause(host, until, state.pauses, now)
                if paused is not None:
                    with self._lock:
                        self._pauses_written += 1
                    logger.warning(
                        "host %s paused for %.0f s after %d consecutive failures",
                        host,
                        until - now,
                        paused.consecutive_failures,
                    )
                state = paused if paused is not None else (self._store.get(host) or state)
            self._remember(host, state)
        except Exception:
            logger.warning("host %s: its state was not updated", host, exc_info=True)

    def drain_pauses(self) -> int:
        """Pauses this guard wrote since the last call (the `HostPauses` metric)."""
        with self._lock:
            written, self._pauses_written = self._pauses_written, 0
        return written

    def _fresh(self, host: str, now: float) -> bool:
        entry = self._cache.get(host)
        return entry is not None and now - entry[0] < self._cache_seconds

    def _cached(self, host: str) -> HostState | None:
        with self._lock:
            entry = self._cache.get(host)
        return None if entry is None else entry[1]

    def _remember(self, host: str, state: HostState | None) -> None:
        with self._lock:
            self._cache[host] = (self._monotonic(), state)
