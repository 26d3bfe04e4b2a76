"""Scenarios: what happens to one affiliate's conversions, and which deliveries must come of it.

A scenario is drawn from its own seeded `random.Random` (seed and index), so any scenario can be
re-run alone. It holds 1-3 postbacks of one affiliate, each on its own tracker host with a scripted
behaviour, 1-4 conversions whose status changes 1-3 times (flip-flops included), and sometimes:

- an edit that makes a postback stop matching, saved right after the evaluator's first invocation
  (a record reported for retry is then evaluated against the edited postback);
- an edit that keeps the match (a new URL), saved while the changes are still in the stream;
- a disable while deliveries are in flight (they end cancelled);
- an edit that makes a postback start matching, saved before the changes while the `by_affiliate`
  index lags 10 s (beyond the rules cache's settle time), and a change two hours later that must
  fire it;
- a poison conversion: a legal, very long `aff_s1` that a postback uses four times, so the rendered
  delivery would exceed DynamoDB's 400 KB item limit; it is written first, ahead of the others;
- the on-call engineer's way of clearing the deliveries DLQ at the end: `dlq redrive`; `dlq purge`
  then `recover`; or `recover` then `dlq redrive`.

The oracle (`expected`) is independent of the evaluator's code: a postback fires for a change when
the affiliate, type and status match, the status changed, and the postback is enabled (every
postback here is global and created before any change). With an edit, a delivery *must* exist when
the change matches the postback both before and after the edit, and *may* exist when it matches
either: an edit applies to the changes evaluated after it is saved.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from enum import StrEnum

from functions.core.model import Postback, delivery_id_for
from tests.faults.faults import FaultKind
from tests.faults.trackers import Behaviour
from tests.support.conversions import postback as build_postback

POISON_S1_BYTES = 120_000  # a legal conversion attribute; four times in a URL is ~480 KB
BEHAVIOURS = (
    (Behaviour.OK, 40),
    (Behaviour.FLAKY, 14),
    (Behaviour.TIMEOUTS, 9),
    (Behaviour.SLOW, 9),
    (Behaviour.THROTTLING, 9),
    (Behaviour.MAINTENANCE, 5),
    (Behaviour.GONE, 8),
    (Behaviour.DOWN, 11),
)
STATUS_SETS = (("approved",), ("approved", "rejected"), ("pending", "approved"))
TRANSITIONS = {
    None: ("pending", "approved"),
    "pending": ("approved", "rejected"),
    "approved": ("rejected",),
    "rejected": ("approved",),
}


class Edit(StrEnum):
    UNMATCH = "unmatch"  # after the first evaluator invocation: statuses no change uses
    KEEP = "keep"  # while the changes are in the stream: a new URL, same match
    DISABLE = "disable"  # after the first sender invocation: in-flight deliveries are cancelled
    # Before any change, while the `by_affiliate` index lags 10 s behind (beyond the rules cache's 2 s
    # settle time): a postback that matched nothing starts matching; a change written two hours later,
    # in a quiet system, must fire it.
    BROADEN = "broaden"


BROADEN_AT = 0.5  # seconds after the scenario starts
INDEX_LAG_SECONDS = 10.0
LATE_CHANGE_AT = 7_200.0
# A change written this long after a BROADEN edit is judged by the edited postback alone (the index
# lag, the rules cache's bounds and the evaluator's retries all fit in it).
EDIT_IN_FORCE_AFTER = 600.0


class OnCall(StrEnum):
    REDRIVE = "redrive"
    PURGE_THEN_RECOVER = "purge_then_recover"
    RECOVER_THEN_REDRIVE = "recover_then_redrive"


@dataclass(frozen=True)
class PostbackPlan:
    postback: Postback
    behaviour: Behaviour
    edit: Edit | None = None
    edited: Postback | None = None
    edit_at: float | None = None  # seconds after the start, for an edit at a fixed time (BROADEN)

    @property
    def definitions(self) -> tuple[Postback, ...]:
        return (self.postback,) if self.edited is None else (self.postback, self.edited)


@dataclass(frozen=True)
class Change:
    conversion_id: str
    conversion_type: str
    old_status: str | None
    new_status: str
    aff_s1: str
    shard: int
    offset_seconds: float  # written this long after the scenario starts


@dataclass(frozen=True)
class Scenario:
    index: int
    kind: FaultKind
    rate: float
    affiliate_id: str
    postbacks: tuple[PostbackPlan, ...]
    changes: tuple[Change, ...]
    on_call: OnCall
    poison: bool


@dataclass(frozen=True)
class Expectation:
    delivery_id: str
    postback_id: str
    conversion_id: str
    status: str
    must: bool  # matches under every definition the postback had: it must exist


def _behaviour(rng: random.Random) -> Behaviour:
    return rng.choices([b for b, _ in BEHAVIOURS], weights=[w for _, w in BEHAVIOURS])[0]


def generate(seed: int, index: int, kind: FaultKind, rate: float, created_at: str) -> Scenario:
    rng = random.Random(f"scenario:{seed}:{index}")
    affiliate_id = f"aff-{index:05d}"
    poison = rng.random() < 0.05
    plans: list[PostbackPlan] = []
    for number in range(rng.randint(1, 3)):
        host = f"h{index:05d}-{number}.tracker.test"
        if poison and number == 0:
            url = f"https://{host}/cb?a={{affS1}}&b={{affS1}}&c={{affS1}}&e={{affS1}}&d={{deliveryId}}"
        else:
            url = f"https://{host}/cb?click={{affS1}}&s={{conversionStatus}}&d={{deliveryId}}"
        postback = build_postback(
            f"pb_{index:05d}_{number}",
            affiliate_id,
            types=rng.choice((("sale",), ("sale", "lead"))),
            statuses=rng.choice(STATUS_SETS),
            url=url,
            updated_at=created_at,
        )
        plans.append(PostbackPlan(postback, _behaviour(rng)))
    roll = rng.random()
    broaden = False
    if roll < 0.32:
        target = rng.randrange(len(plans))
        plan = plans[target]
        edit = (
            Edit.UNMATCH if roll < 0.10 else Edit.KEEP if roll < 0.20 else Edit.DISABLE if roll < 0.25 else Edit.BROADEN
        )
        if edit is Edit.BROADEN:
            broaden = True
            original = replace(plan.postback, conversion_statuses=("pending", "approved", "rejected"), version=2)
            first = replace(plan.postback, conversion_statuses=("declined",))
            plans[target] = PostbackPlan(first, plan.behaviour, edit, original, BROADEN_AT)
        elif edit is Edit.UNMATCH:
            edited = replace(plan.postback, conversion_statuses=("declined",), version=2)
        elif edit is Edit.KEEP:
            edited = replace(plan.postback, url=plan.postback.url + "&v=2", version=2)
        else:
            edited = replace(plan.postback, enabled=False, version=2)
        if not broaden:
            plans[target] = replace(plan, edit=edit, edited=edited)
    changes: list[Change] = []
    offset = 4.0 if broaden else 1.0
    if poison:
        changes.append(Change(f"c{index:05d}-poison", "sale", None, "approved", "x" * POISON_S1_BYTES, 0, offset))
    for number in range(rng.randint(1, 4)):
        conversion_id = f"c{index:05d}-{number}"
        conversion_type = rng.choice(("sale", "sale", "lead"))
        status: str | None = None
        for _ in range(rng.randint(1, 3)):
            new = rng.choice(TRANSITIONS[status])
            offset += rng.uniform(0.1, 3.0)
            changes.append(
                Change(conversion_id, conversion_type, status, new, f"click-{conversion_id}", number % 2, offset)
            )
            status = new
    if broaden:
        changes.append(Change(f"c{index:05d}-late", "sale", None, "approved", f"click-{index}-late", 1, LATE_CHANGE_AT))
    on_call = rng.choices(list(OnCall), weights=(50, 25, 25))[0]
    return Scenario(index, kind, rate, affiliate_id, tuple(plans), tuple(changes), on_call, poison)


def fires(postback: Postback, change: Change) -> bool:
    return (
        postback.enabled
        and change.conversion_type in postback.conversion_types
        and change.new_status in postback.conversion_statuses
        and change.new_status != change.old_status
    )


def expected(scenario: Scenario) -> dict[str, Expectation]:
    """Every delivery the scenario may produce, and whether it must."""
    found: dict[str, Expectation] = {}
    for change in scenario.changes:
        for plan in scenario.postbacks:
            definitions = plan.definitions
            if (
                plan.edit_at is not None
                and plan.edited is not None
                and change.offset_seconds >= plan.edit_at + EDIT_IN_FORCE_AFTER
            ):
                definitions = (plan.edited,)
            verdicts = [fires(definition, change) for definition in definitions]
            if not any(verdicts):
                continue
            delivery_id = delivery_id_for(plan.postback.id, change.conversion_id, change.new_status)
            must = all(verdicts) or (found.get(delivery_id) is not None and found[delivery_id].must)
            found[delivery_id] = Expectation(
                delivery_id, plan.postback.id, change.conversion_id, change.new_status, must
            )
    return found
