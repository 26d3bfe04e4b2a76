"""The reliability fixes (the seven cases of docs/fault-campaign.md), each of which the campaign can
turn off (`--without NAME`).

Turning a fix off puts back the behaviour the code had before it, by patching the fixed function
for the length of the run. `tests/integration/faults/test_fault_campaign.py` runs, for each fix,
the scenarios that exercise its case (`hits`, at the fix's fault rate) with the fix off, and asserts
that the campaign reports the case's symptom (`caught`): the campaign is shown not to be blind to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from unittest import mock

from tests.faults.faults import CALL_FAULTS, FaultKind
from tests.faults.scenarios import Edit, OnCall, Scenario
from tests.faults.trackers import Behaviour

if TYPE_CHECKING:
    from tests.faults.campaign import ScenarioResult


@dataclass(frozen=True)
class Fix:
    name: str
    case: str  # the case it closes
    where: str  # file:function of the fix
    turn_off: Callable[[], Any]  # a context manager that puts the old behaviour back
    hits: Callable[[Scenario], bool]  # the scenarios that exercise the case
    caught: Callable[[ScenarioResult], bool]  # the case's symptom in a scenario's result
    scenarios: int = 12  # how many of them the test runs
    rate: float = 0.06  # at this fault rate


def _edit_semantics_off() -> Any:
    """Before: a change fired a postback only if written at or after its last edit (`updated_at`)."""
    import functions.core.matching as matching

    return mock.patch.object(matching, "fires_from", lambda postback: matching._epoch_seconds(postback.updated_at))


def _requeue_after_edit_off() -> Any:
    """Before: a retried record enqueued only what it matched now; an existing pending delivery of a
    postback edited since was never queued again."""
    from functions.evaluator.service import ConversionEvaluator

    return mock.patch.object(ConversionEvaluator, "_requeue_earlier", lambda self, *args, **kwargs: [])


@contextmanager
def _poison_records_off() -> Iterator[None]:
    """Before: no URL limit (the whole rendered URL was written) and every write error was transient."""
    import functions.core.matching as matching
    import functions.evaluator.service as service

    with (
        mock.patch.object(matching, "url_over_limit", lambda url, limit: False),
        mock.patch.object(service, "permanent_failure", lambda exc: None),
    ):
        yield


def _outcome_retry_off() -> Any:
    """Before: one outcome write after the GET; a throttled one let the lease lapse and the message
    return for a second GET."""
    from functions.sender.safeguards import SenderSafeguards

    return mock.patch.object(SenderSafeguards, "write_outcome", lambda self, leased, write: write())


@contextmanager
def _copy_before_ack_off() -> Iterator[None]:
    """Before: the record was written `dead_lettered` first, then the copy sent; a failed send let the
    message return, find a terminal state and be acknowledged — no copy, ever."""
    from functions.sender.safeguards import DeadLettered, SenderSafeguards

    def dead_letter(self: Any, leased: Any, owner: str, attempt: Any, reason: str, now: Any) -> Any:
        updated = self._deliveries.record_dead_letter(leased.delivery_id, owner, attempt, reason, now)
        if not self._send_copy(leased, (*leased.attempts, attempt), reason, attempt.at):
            raise RuntimeError("the DLQ copy was not sent")
        return DeadLettered(updated, True)

    with (
        mock.patch.object(SenderSafeguards, "dead_letter", dead_letter),
        mock.patch.object(SenderSafeguards, "owes_copy", staticmethod(lambda record: False)),
    ):
        yield


@contextmanager
def _receive_budget_off() -> Iterator[None]:
    """Before: a duplicate that lost the lease race came back again and again (two receives per
    attempt), a wait near 12 h was refused by SQS (one more receive), and nothing indexed a delivery
    whose message the queue might move."""
    from functions.sender.safeguards import SenderSafeguards

    def hide(self: Any, receipt_handle: str, seconds: float, received_at: Any) -> int:
        visibility = math.ceil(seconds)
        self._queue.change_visibility(receipt_handle, visibility)
        return visibility

    with (
        mock.patch.object(SenderSafeguards, "duplicate_of_live_lease", lambda self, *args: False),
        mock.patch.object(SenderSafeguards, "note_receive", lambda self, *args: None),
        mock.patch.object(SenderSafeguards, "hide", hide),
    ):
        yield


def _cache_max_age_off() -> Any:
    """Before: a rules-cache entry lived as long as the rules version held, however long that was."""
    from functions.evaluator.rules_cache import RulesCache

    return mock.patch.object(RulesCache, "_within_max_age", lambda self, entry, now: True)


def _has_edit(edit: Edit) -> Callable[[Scenario], bool]:
    return lambda scenario: any(plan.edit is edit for plan in scenario.postbacks)


def _has_host(behaviour: Behaviour) -> Callable[[Scenario], bool]:
    return lambda scenario: any(plan.behaviour is behaviour for plan in scenario.postbacks)


def _lost(symptom: Callable[[str], bool]) -> Callable[[ScenarioResult], bool]:
    return lambda result: any(symptom(why) for _, why in result.lost)


TRANSIENT = (FaultKind.THROTTLE, FaultKind.SERVER_ERROR)


FIXES: dict[str, Fix] = {
    fix.name: fix
    for fix in (
        Fix(
            "requeue-after-edit",
            "1: stranded delivery (enqueue failed, postback edited before the retry)",
            "functions/evaluator/service.py:ConversionEvaluator._requeue_earlier",
            _requeue_after_edit_off,
            hits=lambda s: (
                _has_edit(Edit.UNMATCH)(s) and s.kind in CALL_FAULTS and s.kind is not FaultKind.TIMEOUT_AFTER_WRITE
            ),
            caught=_lost(lambda why: why.startswith("stranded pending")),
            scenarios=40,
            rate=0.3,
        ),
        Fix(
            "poison-records",
            "2: poison record (a rendered URL over DynamoDB's item limit blocks the shard)",
            "functions/core/matching.py:url_over_limit, functions/storage/errors.py:permanent_failure",
            _poison_records_off,
            hits=lambda s: s.poison,
            caught=_lost(lambda why: why == "never created"),
            scenarios=3,
        ),
        Fix(
            "edit-semantics",
            "6: edits drop in-flight changes",
            "functions/core/matching.py:fires_from",
            _edit_semantics_off,
            hits=_has_edit(Edit.KEEP),
            caught=_lost(lambda why: why == "never created"),
        ),
        Fix(
            "cache-max-age",
            "7: stale cache entries (read while the index lagged, served for hours in a quiet system)",
            "functions/evaluator/rules_cache.py:RulesCache._within_max_age",
            _cache_max_age_off,
            hits=_has_edit(Edit.BROADEN),
            caught=_lost(lambda why: why == "never created"),
            scenarios=6,
        ),
        Fix(
            "copy-before-ack",
            "3: DLQ copy lost (the copy's send failed after the record was marked dead_lettered)",
            "functions/sender/safeguards.py:SenderSafeguards.dead_letter, owes_copy",
            _copy_before_ack_off,
            hits=lambda s: s.kind in TRANSIENT and s.on_call is OnCall.REDRIVE and _has_host(Behaviour.GONE)(s),
            caught=_lost(lambda why: "without a DLQ copy" in why),
            scenarios=16,
            rate=0.3,
        ),
        Fix(
            "receive-budget",
            "4: moved and purged (duplicates use up maxReceiveCount; purge removes the only message)",
            "functions/sender/safeguards.py:SenderSafeguards.duplicate_of_live_lease, note_receive, hide",
            _receive_budget_off,
            hits=lambda s: (
                s.kind in (FaultKind.DUPLICATE, FaultKind.CRASH)
                and s.on_call is OnCall.PURGE_THEN_RECOVER
                and _has_host(Behaviour.DOWN)(s)
            ),
            caught=_lost(lambda why: why.startswith("stranded") and "no message" in why),
            scenarios=16,
            rate=0.3,
        ),
        Fix(
            "outcome-retry",
            "5: second GET after a throttled outcome write",
            "functions/sender/safeguards.py:SenderSafeguards.write_outcome",
            _outcome_retry_off,
            hits=lambda s: s.kind in TRANSIENT,
            caught=lambda result: result.doubled > 0,
            scenarios=16,
            rate=0.3,
        ),
    )
}


@contextmanager
def without_fixes(names: tuple[str, ...]) -> Iterator[None]:
    unknown = [name for name in names if name not in FIXES]
    if unknown:
        raise ValueError(f"unknown fix {', '.join(unknown)}; known: {', '.join(sorted(FIXES))}")
    with ExitStack() as stack:
        for name in names:
            stack.enter_context(FIXES[name].turn_off())
        yield
