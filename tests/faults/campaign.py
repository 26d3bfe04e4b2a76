"""The campaign: scenarios of every fault kind, each checked against the invariant; one report.

The invariant (docs/reliability.md): every conversion change matching a postback yields exactly
one delivery record, which ends

- `delivered`, with at least one 2xx GET at its tracker, or
- `dead_lettered`, with a copy in the deliveries DLQ, or
- `cancelled` (its postback was disabled or deleted);

and none stays `pending`, `in_flight` or `retrying` once the system is quiet (no message is left to
bring it back). A delivery that breaks it is **lost**. GETs of one delivery beyond the attempts on
its record (a GET whose outcome was never written), or a second 2xx, are **doubled** — unless the
invocation crashed between that GET and the write of its outcome, the window docs/architecture.md
documents, which is reported apart (**doubled in the crash window**).

Scenarios take the fault kinds in turn (`none` is the control); a kind's line counts the scenarios
that ran with it (tried), those that ended with nothing lost or doubled (survived), and the lost and
doubled deliveries. The injected faults are counted per kind and call site: a kind that injected
nothing is reported as a defect of the campaign.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from functions.core.model import DeliveryState
from tests.faults.clock import SimClock
from tests.faults.faults import FaultKind
from tests.faults.scenarios import Scenario, expected, generate
from tests.faults.sqs import body_json
from tests.faults.world import DELIVERIES, DELIVERIES_DLQ, World

KINDS = tuple(FaultKind)
DEFAULT_RATE = 0.06
FINAL_STATES = frozenset({DeliveryState.DELIVERED, DeliveryState.DEAD_LETTERED, DeliveryState.CANCELLED})


@dataclass
class ScenarioResult:
    index: int
    kind: str
    deliveries: int = 0
    states: Counter[str] = field(default_factory=Counter)
    lost: list[tuple[str, str]] = field(default_factory=list)  # (delivery id, why)
    doubled: int = 0
    doubled_in_crash_window: int = 0
    unexpected: int = 0  # records no change called for
    copies_purged: int = 0  # dead-lettered, its DLQ copy deleted by an on-call purge
    awaiting_on_call: int = 0  # active, its message in the DLQ after the on-call runs gave up
    gets: int = 0
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)
    moved_to_dlq: int = 0
    refused_visibility: int = 0
    stream_batch_failures: int = 0
    stuck: bool = False
    unhandled: list[str] = field(default_factory=list)

    @property
    def survived(self) -> bool:
        return not self.lost and not self.doubled and not self.stuck


def check(world: World) -> ScenarioResult:
    """Every delivery of the scenario against the invariant, once the system is quiet."""
    scenario = world.scenario
    result = ScenarioResult(scenario.index, scenario.kind.value)
    wanted = expected(scenario)
    records = {r.delivery_id: r for r in world.store.records.values() if r.affiliate_id == scenario.affiliate_id}
    dlq_copies = {str((body_json(m) or {}).get("delivery_id")) for m in world.sqs.messages(DELIVERIES_DLQ)}
    queued = {str((body_json(m) or {}).get("delivery_id")) for m in world.sqs.messages(DELIVERIES)}
    for delivery_id in sorted(wanted):
        if delivery_id not in records and wanted[delivery_id].must:
            result.lost.append((delivery_id, "never created"))
    for delivery_id in sorted(records):
        record = records[delivery_id]
        result.deliveries += 1
        result.states[record.state.value] += 1
        if delivery_id not in wanted:
            result.unexpected += 1
        gets = world.ledger.gets.get(delivery_id, [])
        result.gets += len(gets)
        successes = sum(1 for g in gets if g.status_code is not None and 200 <= g.status_code < 300)
        if record.state not in FINAL_STATES:
            if delivery_id in dlq_copies:
                # Its DLQ copy is still there: the next run of the on-call tool brings it back.
                result.awaiting_on_call += 1
            else:
                where = "a message is still queued" if delivery_id in queued else "no message will bring it back"
                result.lost.append((delivery_id, f"stranded {record.state.value}: {where}"))
        elif record.state is DeliveryState.DEAD_LETTERED and delivery_id not in dlq_copies:
            purged = world.timeline.purged_at
            if purged is not None and (record.dead_lettered_at or "") <= purged:
                result.copies_purged += 1  # the on-call engineer deleted it on purpose (`dlq purge`)
            else:
                result.lost.append((delivery_id, f"dead_lettered ({record.reason}) without a DLQ copy"))
        elif record.state is DeliveryState.DELIVERED and successes == 0:
            result.lost.append((delivery_id, "delivered, but its tracker never got a 2xx GET of its URL"))
        extra = max(len(gets) - len(record.attempts), successes - 1, 0)
        in_window = min(extra, sum(1 for g in gets if g.crash_window))
        result.doubled += extra - in_window
        result.doubled_in_crash_window += in_window
    result.stream_batch_failures = world.timeline.stream_batch_failures
    result.injected = world.injector.injected
    result.moved_to_dlq = world.sqs.queue(DELIVERIES).moved
    result.refused_visibility = world.sqs.refused_visibility
    result.stuck = world.timeline.stuck
    result.unhandled = world.timeline.unhandled
    return result


def scenario_for(seed: int, index: int, rate: float = DEFAULT_RATE, kinds: Sequence[FaultKind] = KINDS) -> Scenario:
    return generate(seed, index, kinds[index % len(kinds)], rate, created_at="2026-01-04T00:00:00.000000Z")


def run_scenario(
    seed: int, index: int, rate: float = DEFAULT_RATE, kinds: Sequence[FaultKind] = KINDS
) -> tuple[World, ScenarioResult]:
    world = World(scenario_for(seed, index, rate, kinds), seed)
    world.run()
    return world, check(world)


@dataclass
class Report:
    seed: int
    scenarios: int
    rate: float
    without: tuple[str, ...]
    results: list[ScenarioResult]

    def by_kind(self) -> dict[str, dict[str, int]]:
        lines: dict[str, dict[str, int]] = {}
        for kind in KINDS:
            mine = [r for r in self.results if r.kind == kind.value]
            if not mine:
                continue
            lines[kind.value] = {
                "tried": len(mine),
                "survived": sum(1 for r in mine if r.survived),
                "lost": sum(len(r.lost) for r in mine),
                "doubled": sum(r.doubled for r in mine),
                "doubled_in_crash_window": sum(r.doubled_in_crash_window for r in mine),
                "injected": sum(sum(r.injected.values()) for r in mine),
            }
        return lines

    def injected(self) -> dict[str, int]:
        total: Counter[tuple[str, str]] = Counter()
        for result in self.results:
            total.update(result.injected)
        return {f"{kind} @ {site}": count for (kind, site), count in sorted(total.items())}

    @property
    def lost(self) -> int:
        return sum(len(r.lost) for r in self.results)

    @property
    def doubled(self) -> int:
        return sum(r.doubled for r in self.results)

    def silent_kinds(self) -> list[str]:
        """Fault kinds that were tried but injected nothing: a campaign defect."""
        return [kind for kind, line in self.by_kind().items() if kind != FaultKind.NONE.value and line["injected"] == 0]

    def totals(self) -> dict[str, int]:
        states: Counter[str] = Counter()
        for result in self.results:
            states.update(result.states)
        return {
            "deliveries": sum(r.deliveries for r in self.results),
            "gets": sum(r.gets for r in self.results),
            **{f"ended_{state}": count for state, count in sorted(states.items())},
            "unexpected_records": sum(r.unexpected for r in self.results),
            "dead_lettered_copy_purged_on_call": sum(r.copies_purged for r in self.results),
            "active_with_dlq_copy_after_on_call": sum(r.awaiting_on_call for r in self.results),
            "moved_by_max_receive_count": sum(r.moved_to_dlq for r in self.results),
            "visibility_changes_refused_12h": sum(r.refused_visibility for r in self.results),
            "stream_batch_failures": sum(r.stream_batch_failures for r in self.results),
            "stuck_scenarios": sum(1 for r in self.results if r.stuck),
            "unhandled_exceptions": sum(len(r.unhandled) for r in self.results),
        }

    def unhandled(self) -> dict[str, int]:
        """Exceptions that escaped a handler, by where and type (the message's first 100 characters)."""
        found: Counter[str] = Counter(u[:100] for r in self.results for u in r.unhandled)
        return dict(sorted(found.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "scenarios": self.scenarios,
            "rate": self.rate,
            "without": list(self.without),
            "by_kind": self.by_kind(),
            "totals": self.totals(),
            "injected": self.injected(),
            "unhandled": self.unhandled(),
            "lost": [
                {"scenario": r.index, "kind": r.kind, "delivery_id": d, "why": why}
                for r in self.results
                for d, why in r.lost
            ],
            "doubled": [{"scenario": r.index, "kind": r.kind, "doubled": r.doubled} for r in self.results if r.doubled],
        }

    def render(self, examples: int = 12) -> str:
        out = [
            f"fault campaign: {self.scenarios} scenarios, seed {self.seed}, fault rate {self.rate}"
            + (f", WITHOUT {', '.join(self.without)}" if self.without else ""),
            "",
            f"{'fault kind':<22}{'tried':>7}{'survived':>10}{'lost':>7}{'doubled':>9}"
            f"{'doubled-in-crash-window':>25}{'injected':>10}",
        ]
        for kind, line in self.by_kind().items():
            out.append(
                f"{kind:<22}{line['tried']:>7}{line['survived']:>10}{line['lost']:>7}{line['doubled']:>9}"
                f"{line['doubled_in_crash_window']:>25}{line['injected']:>10}"
            )
        out += [
            "",
            "totals: " + ", ".join(f"{k} {v}" for k, v in self.totals().items()),
            "",
            "injected faults by kind and call site:",
        ]
        out += [f"  {count:>7}  {where}" for where, count in self.injected().items()]
        if self.unhandled():
            out += ["", "exceptions that escaped a handler (Lambda retries; a defect to look at):"]
            out += [f"  {count:>7}  {what}" for what, count in self.unhandled().items()]
        silent = self.silent_kinds()
        if silent:
            out.append(f"DEFECT: fault kinds that injected nothing: {', '.join(silent)}")
        losses = [(r.index, r.kind, d, why) for r in self.results for d, why in r.lost]
        if losses:
            out += ["", f"lost ({len(losses)}; first {min(examples, len(losses))}; re-run one with --only N):"]
            out += [f"  scenario {i} [{k}] {d}: {why}" for i, k, d, why in losses[:examples]]
        doubles = [(r.index, r.kind, r.doubled) for r in self.results if r.doubled]
        if doubles:
            out += [
                "",
                f"doubled GETs in {len(doubles)} scenarios; first: "
                + ", ".join(f"{i} [{k}] x{n}" for i, k, n in doubles[:examples]),
            ]
        out.append("")
        out.append(f"RESULT: {self.lost} lost, {self.doubled} doubled")
        return "\n".join(out)


def run_campaign(
    seed: int,
    scenarios: int,
    rate: float = DEFAULT_RATE,
    *,
    indices: Iterable[int] | None = None,
    without: tuple[str, ...] = (),
) -> Report:
    from tests.faults.fixes import without_fixes

    results = []
    with without_fixes(without), campaign_environment():
        for index in indices if indices is not None else range(scenarios):
            results.append(run_scenario(seed, index, rate)[1])
    return Report(seed, len(results), rate, without, results)


class _Sleepless:
    """`time` as `functions.storage.queues` sees it in the campaign: its retry pauses take no real time."""

    @staticmethod
    def sleep(seconds: float) -> None:
        return None


class campaign_environment:
    """Quiet logs and no real sleeping for the length of a campaign."""

    def __enter__(self) -> None:
        import logging

        import functions.storage.queues as queues

        self._queues_time = queues.time
        queues.time = _Sleepless  # type: ignore[assignment]
        self._disabled = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        # The on-call tools' warnings to the engineer ("could not be released") go nowhere.
        self._stderr = contextlib.redirect_stderr(io.StringIO())
        self._stderr.__enter__()

    def __exit__(self, *exc: object) -> None:
        import logging

        import functions.storage.queues as queues

        queues.time = self._queues_time
        logging.disable(self._disabled)
        self._stderr.__exit__(None, None, None)


def report_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=True)


__all__ = ["Report", "ScenarioResult", "SimClock", "check", "run_campaign", "run_scenario", "scenario_for"]
