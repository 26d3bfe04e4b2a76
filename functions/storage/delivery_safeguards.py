"""The writes and reads of `DeliveryRepository` that keep a delivery from being lost (docs/reliability.md).

Each is used only off the happy path, so none adds a write to a delivery that goes pending ->
in_flight -> delivered:

- `pending_among`: of the deliveries an earlier evaluation of a record may have made (derived IDs),
  those that exist and are still `pending` — the evaluator queues them again even when the postback
  no longer matches (one consistent BatchGetItem, only when a postback was edited around the change);
- `create_dead_lettered` / `mark_dlq_copy_sent`: a match whose URL is over the limit is recorded
  `dead_lettered` (`url_too_long`) without a message; its DLQ copy is confirmed by a second write;
- `mark_dlq_copy_sent` also serves the sender when a dead-lettered record's copy is sent late;
- `mark_at_risk`: a message SQS has received many times may soon be moved to the DLQ by the
  queue's `maxReceiveCount`; the record is put in the `at_risk` partition of the sparse
  `by_dead_letter` index, so `recover` sees it even after the moved message is purged or expires;
- `trimmed_history`: the attempt log a redrive keeps, so no record grows towards the item limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from pynamodb.exceptions import PutError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from functions.core.dead_letter_index import AT_RISK_PARTITION
from functions.core.model import ACTIVE_STATES, Attempt, Delivery, DeliveryState, PlannedDelivery, format_timestamp
from functions.storage.delivery_records import attempt_to_map, delivery_from_item, planned_item
from functions.storage.errors import response_code
from functions.storage.models import AttemptMap, DeliveryModel

CONDITION_FAILED = "ConditionalCheckFailedException"
# A redrive keeps at most this many attempts of the history (the newest): with at most
# `MAX_ATTEMPTS_LIMIT` attempts per schedule and each entry bounded (`functions.core.attempts`),
# no record can approach DynamoDB's 400 KB item limit however often it is redriven.
REDRIVE_HISTORY_KEPT = 20


def trimmed_history(attempts: Sequence[Attempt], kept: int = REDRIVE_HISTORY_KEPT) -> list[Attempt] | None:
    """The newest `kept` attempts when the log is longer; None when it needs no trimming."""
    if len(attempts) <= kept:
        return None
    return list(attempts[-kept:])


def planned_from_record(record: Delivery) -> PlannedDelivery:
    """What the evaluator enqueues for an existing delivery (its first GET is gated by the record itself)."""
    return PlannedDelivery(
        delivery_id=record.delivery_id,
        postback_id=record.postback_id,
        affiliate_id=record.affiliate_id,
        conversion_id=record.conversion_id,
        conversion_status=record.conversion_status,
        previous_status=record.previous_status,
        offer_id=record.offer_id or "",
        url=record.url,
        target_host=record.target_host,
    )


class DeliverySafeguards:
    """Mixed into `DeliveryRepository`: `_model` and `_update` are the repository's."""

    _model: type[DeliveryModel]
    _update: Callable[[str, list[Action], Condition], Delivery | None]

    def pending_among(self, delivery_ids: Sequence[str]) -> list[PlannedDelivery]:
        """The deliveries of these IDs that exist and are `pending`, with one consistent BatchGetItem per 100."""
        if not delivery_ids:
            return []
        found = [delivery_from_item(item) for item in self._model.batch_get(list(delivery_ids), consistent_read=True)]
        order = {delivery_id: index for index, delivery_id in enumerate(delivery_ids)}
        pending = [record for record in found if record.state == DeliveryState.PENDING and not record.is_test]
        return [planned_from_record(record) for record in sorted(pending, key=lambda r: order[r.delivery_id])]

    def create_dead_lettered(self, planned: PlannedDelivery, reason: str, *, now: datetime, ttl_days: int) -> bool:
        """Record a match that will never be sent as `dead_lettered` with `reason`; True while its DLQ copy is owed.

        One conditional PutItem (the same deduplication as `create`). Not put in the `by_dead_letter`
        index: there is nothing `recover` could send. On a refusal the existing record says whether
        its copy was confirmed (`dlq_copy_sent`).
        """
        item = planned_item(
            self._model,
            planned,
            DeliveryState.DEAD_LETTERED,
            now=now,
            ttl_days=ttl_days,
            reason=reason,
            dead_lettered_at=format_timestamp(now),
        )
        try:
            item.save(condition=self._model.delivery_id.does_not_exist())
        except PutError as exc:
            if response_code(exc) != CONDITION_FAILED:
                raise
            try:
                existing = self._model.get(planned.delivery_id, consistent_read=True)
            except self._model.DoesNotExist:
                return False
            return (
                existing.state == DeliveryState.DEAD_LETTERED.value
                and existing.reason == reason
                and not existing.dlq_copy_sent
            )
        return True

    def mark_dlq_copy_sent(self, delivery_id: str, now: datetime) -> bool:
        """Confirm the DLQ copy of a dead-lettered delivery; False if the record is no longer dead-lettered."""
        model = self._model
        actions: list[Action] = [model.dlq_copy_sent.set(True), model.updated_at.set(format_timestamp(now))]
        return self._update(delivery_id, actions, model.state == DeliveryState.DEAD_LETTERED.value) is not None

    def mark_at_risk(self, delivery_id: str, now: datetime) -> bool:
        """Index an active delivery whose message was received many times (`at_risk`); never over another entry."""
        model = self._model
        actions: list[Action] = [
            model.dead_letter_partition.set(AT_RISK_PARTITION),
            model.dead_lettered_at.set(format_timestamp(now)),
        ]
        condition = model.dead_letter_partition.does_not_exist() & model.state.is_in(
            *(state.value for state in ACTIVE_STATES)
        )
        return self._update(delivery_id, actions, condition) is not None

    def _history_actions(self, observed: Delivery) -> list[Action]:
        """On a redrive: the attempt log cut to its newest `REDRIVE_HISTORY_KEPT` entries, if longer."""
        kept = trimmed_history(observed.attempts)
        if kept is None:
            return []
        entries: list[AttemptMap] = [attempt_to_map(attempt) for attempt in kept]
        return [self._model.attempts.set(entries)]
