"""Host pause (circuit breaker) rules: when a tracker's host is paused, probed and resumed (pure).

docs/contract.md §6 (Tracker protection): after `pause_after` consecutive failed attempts to one
host (name and port) — timeouts, connection errors, 5xx, 429: every retryable outcome — across all
postbacks and invocations, the host is paused for `pause_seconds`, doubling while it keeps failing
(a failed probe), up to `max_pause_seconds`. While paused, its deliveries wait without a GET and
without spending an attempt. After the pause one delivery is the probe (claimed by one worker for
`probe_seconds`; the others wait for its outcome); any answer that is not a failure (2xx, and also
a terminal 3xx/4xx: the host answered) resumes the host. An attempt that never reached the host
(blocked by the egress guard, a URL that does not parse) counts neither way.

The state is shared (`functions.storage.hosts` keeps it in the postbacks table); this module only
decides. Times are epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from functions.core.classification import Classification
from functions.core.egress import InvalidUrl, parse_target

MAX_PAUSE_SECONDS = 3600.0


@dataclass(frozen=True)
class HostPausePolicy:
    """When a host is paused after failures, for how long, and how long a probe may take."""

    # Consecutive failed attempts that pause a host; 0 turns pausing off.
    pause_after: int = 5
    # The first pause; each failed probe doubles it, up to `max_pause_seconds`.
    pause_seconds: float = 60.0
    max_pause_seconds: float = MAX_PAUSE_SECONDS
    # How long a claimed probe keeps the host's other deliveries waiting for its outcome (its GET
    # deadline and a margin); a probe whose worker died is claimed again after that.
    probe_seconds: float = 15.0

    @property
    def enabled(self) -> bool:
        return self.pause_after > 0

    def pause_length(self, pauses_before: int) -> float:
        """The length of the next pause, after `pauses_before` pauses in a row without a success."""
        return min(self.pause_seconds * float(1 << min(pauses_before, 32)), self.max_pause_seconds)


@dataclass(frozen=True)
class HostState:
    """The shared state of one host; a host without state is healthy."""

    host: str  # `name:port`
    consecutive_failures: int = 0
    paused_until: float | None = None
    # Pauses in a row without a success: the exponent of the doubling.
    pauses: int = 0
    # Set while a worker holds the probe of an ended pause.
    probe_until: float | None = None
    last_failure_reason: str | None = None

    @property
    def healthy(self) -> bool:
        """Nothing to reset on a success: no failures counted, no pause."""
        return self.consecutive_failures == 0 and self.paused_until is None

    def paused_at(self, now: float) -> bool:
        return self.paused_until is not None and now < self.paused_until


class GateAction(StrEnum):
    SEND = "send"  # no pause: the GET goes out as usual
    PROBE = "probe"  # the pause has ended and nobody probes: this delivery may claim the probe
    WAIT = "wait"  # paused (or another worker probes): wait until `until`, no GET, no attempt


@dataclass(frozen=True)
class Gate:
    """What a delivery to a host may do now: send, probe, or wait until `until` (epoch seconds)."""

    action: GateAction
    until: float | None = None


def host_key(url: str) -> str | None:
    """`name:port` of the URL's host (the unit a pause applies to); None when the URL does not parse."""
    try:
        target = parse_target(url)
    except InvalidUrl:
        return None
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


def gate(state: HostState | None, policy: HostPausePolicy, now: float) -> Gate:
    """What a delivery to the host may do now."""
    if not policy.enabled or state is None or state.paused_until is None:
        return Gate(GateAction.SEND)
    if now < state.paused_until:
        return Gate(GateAction.WAIT, state.paused_until)
    if state.probe_until is not None and now < state.probe_until:
        return Gate(GateAction.WAIT, state.probe_until)
    return Gate(GateAction.PROBE)


def return_window(state: HostState | None, policy: HostPausePolicy, now: float) -> float:
    """How long after a wait's end the host's waiting deliveries come back, spread evenly (seconds).

    As long as the host's pause (also while they wait for its probe), and at least the probe's
    window: so that they return at about the rate they arrived instead of all in the second the
    pause (or the probe) ends, and a host that recovers is not sent its whole backlog at once.
    """
    if state is not None and state.paused_until is not None:
        return max(policy.probe_seconds, policy.pause_length(max(0, state.pauses - 1)))
    return policy.probe_seconds


def counts_as_failure(classification: Classification, status_code: int | None) -> bool | None:
    """True: a failed attempt of the host; False: the host answered; None: the host was not reached."""
    if classification.retryable:
        return True
    if classification.delivered or status_code is not None:
        return False
    return None


def pause_after_failure(state: HostState, policy: HostPausePolicy, now: float) -> float | None:
    """When a host whose failure was just counted (`state` includes it) must be paused until; None: not now.

    A host not paused is paused once it has `pause_after` consecutive failures; a host whose pause
    has ended (its probe, or an attempt that started before the pause) is paused again, for twice
    as long. A host still paused stays as it is.
    """
    if not policy.enabled or state.paused_at(now):
        return None
    if state.paused_until is not None or state.consecutive_failures >= policy.pause_after:
        return now + policy.pause_length(state.pauses)
    return None


def paused(state: HostState, until: float) -> HostState:
    """`state` paused until `until` (one more pause in a row, no probe)."""
    return replace(state, paused_until=until, pauses=state.pauses + 1, probe_until=None)


def resumed(host: str) -> HostState:
    return HostState(host)
