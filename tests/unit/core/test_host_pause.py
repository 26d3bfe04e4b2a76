"""The host pause rules (functions.core.host_pause): when a host is paused, probed and resumed."""

from __future__ import annotations

import pytest

from functions.core.classification import classify
from functions.core.fire_window import fire_window
from functions.core.host_pause import (
    GateAction,
    HostPausePolicy,
    HostState,
    counts_as_failure,
    gate,
    host_key,
    pause_after_failure,
    paused,
    return_window,
)

pytestmark = pytest.mark.unit

POLICY = HostPausePolicy(pause_after=5, pause_seconds=60.0)
NOW = 1_800_000_000.0


def test_the_pause_doubles_up_to_an_hour() -> None:
    assert [POLICY.pause_length(n) for n in range(8)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert POLICY.pause_length(10_000) == 3600


@pytest.mark.parametrize("failures, paused_after", [(4, False), (5, True), (9, True)])
def test_a_host_is_paused_after_pause_after_consecutive_failures(failures: int, paused_after: bool) -> None:
    until = pause_after_failure(HostState("t.example:443", consecutive_failures=failures), POLICY, NOW)
    assert (until == NOW + 60) if paused_after else until is None


def test_a_paused_host_is_not_paused_again_while_paused() -> None:
    state = HostState("t.example:443", consecutive_failures=9, paused_until=NOW + 10, pauses=1)
    assert pause_after_failure(state, POLICY, NOW) is None


def test_a_failure_after_the_pause_ended_pauses_for_twice_as_long() -> None:
    state = HostState("t.example:443", consecutive_failures=6, paused_until=NOW - 1, pauses=1, probe_until=NOW + 5)
    until = pause_after_failure(state, POLICY, NOW)
    assert until == NOW + 120
    again = paused(state, until)
    assert again.pauses == 2 and again.probe_until is None and again.paused_until == NOW + 120


def test_pausing_off_never_pauses_or_holds() -> None:
    off = HostPausePolicy(pause_after=0)
    state = HostState("t.example:443", consecutive_failures=100, paused_until=NOW + 100)
    assert pause_after_failure(state, off, NOW) is None
    assert gate(state, off, NOW).action is GateAction.SEND


def test_waiting_deliveries_return_over_as_long_as_the_pause_or_the_probe_window() -> None:
    # The first pause (60 s): they come back over the 60 s after it, at the rate they arrived.
    assert return_window(HostState("h:80", paused_until=NOW + 30, pauses=1), POLICY, NOW) == 60
    # The third pause in a row (240 s) spreads them over 240 s.
    assert return_window(HostState("h:80", paused_until=NOW + 200, pauses=3), POLICY, NOW) == 240
    # Waiting for another worker's probe (the pause has ended): still as long as the pause, so that
    # the deliveries that came back during the probe do not return together when it ends.
    probing = HostState("h:80", paused_until=NOW - 1, pauses=1, probe_until=NOW + 10)
    assert return_window(probing, POLICY, NOW) == 60
    # A host without a pause (a state read before it): the probe's window.
    assert return_window(None, POLICY, NOW) == POLICY.probe_seconds
    # Never shorter than the probe's window.
    short = HostPausePolicy(pause_after=5, pause_seconds=2.0, probe_seconds=15.0)
    assert return_window(HostState("h:80", paused_until=NOW + 2, pauses=1), short, NOW) == 15


def test_gate_sends_waits_and_probes() -> None:
    assert gate(None, POLICY, NOW).action is GateAction.SEND
    assert gate(HostState("h:80", consecutive_failures=3), POLICY, NOW).action is GateAction.SEND
    waiting = gate(HostState("h:80", paused_until=NOW + 30), POLICY, NOW)
    assert (waiting.action, waiting.until) == (GateAction.WAIT, NOW + 30)
    probing = gate(HostState("h:80", paused_until=NOW - 1, probe_until=NOW + 15), POLICY, NOW)
    assert (probing.action, probing.until) == (GateAction.WAIT, NOW + 15)
    assert gate(HostState("h:80", paused_until=NOW - 1), POLICY, NOW).action is GateAction.PROBE
    assert gate(HostState("h:80", paused_until=NOW - 1, probe_until=NOW - 1), POLICY, NOW).action is GateAction.PROBE


@pytest.mark.parametrize(
    "status, error, verdict",
    [
        (500, None, True),
        (503, None, True),
        (429, None, True),
        (None, "read_timeout", True),
        (None, "connection_refused", True),
        (None, "dns_error", True),
        (200, None, False),
        (404, None, False),  # the host answered
        (410, None, False),
        (301, None, False),
        (None, "blocked_destination", None),  # never reached the host
        (None, "invalid_url", None),
    ],
)
def test_what_counts_as_a_failure_of_the_host(status: int | None, error: str | None, verdict: bool | None) -> None:
    assert counts_as_failure(classify(status, error), status) is verdict


@pytest.mark.parametrize(
    "url, key",
    [
        ("https://Tracker.Example/cb?x=1", "tracker.example:443"),
        ("http://tracker.example/cb", "tracker.example:80"),
        ("http://tracker.example:8080/cb", "tracker.example:8080"),
        ("http://127.0.0.1:4567/cb?d={deliveryId}", "127.0.0.1:4567"),
        ("http://[::1]:8080/cb", "[::1]:8080"),
        ("not a url", None),
    ],
)
def test_the_host_is_name_and_port(url: str, key: str | None) -> None:
    assert host_key(url) == key


def test_the_test_fire_window_is_the_current_minute() -> None:
    window = fire_window(1_800_000_030.5)
    assert window.start == 1_800_000_000 and window.retry_after == 30
    assert fire_window(1_800_000_000.0).retry_after == 60
    assert fire_window(1_800_000_059.9).retry_after == 1
