"""`hosts`: the tracker hosts the sender has paused after repeated failures (docs/sender.md, host pause)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from functions.cli.output import render_table
from functions.core.host_pause import HostState
from functions.storage.hosts import pause_end_text

View = tuple[Any, str]


def _status(state: HostState, now: float) -> str:
    if state.paused_at(now):
        return "paused"
    if state.probe_until is not None and now < state.probe_until:
        return "probing"
    return "pause ended, next attempt probes"


def hosts_view(states: Sequence[HostState], now: float) -> View:
    """Every host with a pause: whether it is still paused, until when, and its failures."""
    rows = [
        {
            "host": state.host,
            "status": _status(state, now),
            "paused_until": pause_end_text(state.paused_until),
            "pauses_in_a_row": state.pauses,
            "consecutive_failures": state.consecutive_failures,
            "last_failure_reason": state.last_failure_reason,
        }
        for state in states
    ]
    if not rows:
        return {"hosts": []}, "no paused hosts"
    table = render_table(
        ("host", "status", "paused until", "pauses", "failures", "last failure"),
        [
            (
                row["host"],
                row["status"],
                row["paused_until"],
                row["pauses_in_a_row"],
                row["consecutive_failures"],
                row["last_failure_reason"] or "",
            )
            for row in rows
        ],
    )
    return {"hosts": rows}, table
