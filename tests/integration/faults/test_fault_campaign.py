"""The fault campaign at a small size (`make faults` runs it at full size; docs/fault-campaign.md).

- the campaign injects every fault kind, at the call sites of every port;
- nothing is lost and nothing doubled across every fault kind;
- the same seed gives the same report;
- the checker catches a stranded, an uncopied and a doubled delivery (it is not blind);
- with each reliability fix turned off (`tests/faults/fixes.py`), the campaign reports its case.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.campaign import Report, campaign_environment, check, run_campaign, run_scenario, scenario_for
from tests.faults.fixes import FIXES
from tests.faults.scenarios import Scenario
from tests.faults.trackers import Get

SEED = 11
SCENARIOS = 160


@pytest.fixture(scope="module")
def report() -> Report:
    return run_campaign(SEED, SCENARIOS)


def test_every_fault_kind_is_injected_at_every_port(report: Report) -> None:
    assert report.silent_kinds() == []
    sites = {where.split(" @ ", 1)[1].split(".", 1)[0] for where in report.injected()}
    assert {"deliveries", "postbacks", "health", "sqs", "tracker"} <= sites
    assert report.totals()["deliveries"] > 500


def test_nothing_is_lost_or_doubled(report: Report) -> None:
    assert report.lost == 0, report.render()
    assert report.doubled == 0, report.render()


def test_the_same_seed_gives_the_same_report() -> None:
    first = run_campaign(5, 16).as_dict()
    assert run_campaign(5, 16).as_dict() == first


def test_the_checker_sees_a_stranded_an_uncopied_and_a_doubled_delivery() -> None:
    with campaign_environment():
        world, clean = run_scenario(SEED, 1)
    assert clean.deliveries > 0
    records = sorted(world.store.records.values(), key=lambda record: record.delivery_id)
    from dataclasses import replace

    from functions.core.model import DeliveryState

    delivered = next(r for r in records if r.state is DeliveryState.DELIVERED)
    world.store.records[delivered.delivery_id] = replace(delivered, state=DeliveryState.RETRYING)
    world.ledger.gets[delivered.delivery_id].append(Get(delivered.delivery_id, 0.0, 200, "sender-x"))
    tampered = check(world)
    assert any(d == delivered.delivery_id and why.startswith("stranded retrying") for d, why in tampered.lost)
    assert tampered.doubled >= 1
    world.store.records[delivered.delivery_id] = replace(delivered, state=DeliveryState.DEAD_LETTERED, reason="gone")
    world.timeline.purged_at = None  # no on-call purge to explain a missing copy
    assert any("without a DLQ copy" in why for _, why in check(world).lost)


def _indices(predicate: Callable[[Scenario], bool], count: int, rate: float) -> list[int]:
    found: list[int] = []
    index = 0
    while len(found) < count:
        if predicate(scenario_for(SEED, index, rate)):
            found.append(index)
        index += 1
    return found


@pytest.mark.parametrize("name", sorted(FIXES))
def test_with_a_fix_turned_off_the_campaign_reports_its_case(name: str) -> None:
    fix = FIXES[name]
    indices = _indices(fix.hits, fix.scenarios, fix.rate)
    report = run_campaign(SEED, len(indices), fix.rate, indices=indices, without=(name,))
    caught = [result.index for result in report.results if fix.caught(result)]
    assert caught, f"case {fix.case}: not caught with {fix.where} turned off\n{report.render()}"
