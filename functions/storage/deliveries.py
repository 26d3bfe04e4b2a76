"""The deliveries table: the one repository of delivery records, for every consumer.

Each consumer declares the narrow part it uses as a Protocol of its own (the evaluator's
`DeliveryStore`, the sender's `DeliveryStore`, the API's `WaitingDeliveries`); this class is the
one implementation. Items become domain `Delivery` records through `delivery_records`.

The evaluator creates records. The hash key `delivery_id` is derived from (postback, conversion,
status), so the conditional PutItem (`attribute_not_exists(delivery_id)`) of `create` is the
at-most-once guard of docs/contract.md §2: a redelivered stream record or a status flip-flop
computes the same ID and is refused. When the write is refused, the record may be a retry after a
crash between the write and the enqueue: `create` then reads the existing record (a consistent
GetItem) and reports whether it is still `pending` (never taken by the sender, so it may never
have reached the queue) — the caller enqueues it again; the sender's lease makes a duplicate
message harmless. pynamodb 6.1's `Model.save` cannot ask for `ReturnValuesOnConditionCheckFailure`,
and refusals happen only on retries and flip-flops, so the extra read stays off the common path.

The sender works a record under a lease. Every write is a conditional UpdateItem, so two workers
never both act on one delivery:

- `acquire_lease`: only a delivery that is `pending` or `retrying` (or `in_flight` with an expired
  lease), and due, becomes `in_flight` with this worker's `lease_owner`; otherwise None. It returns
  the record as written (`ReturnValues ALL_NEW`), so the happy path reads no record: one UpdateItem
  to lease, one to record the outcome.
- `record_delivered` / `record_retry` / `record_dead_letter` / `cancel`: only while this worker
  still holds the lease (`lease_owner` unchanged); otherwise `LeaseLost`. Each appends the attempt
  to the log and releases the lease in the same write.
- `release_lease`: gives back a lease that was taken but not used (no GET started), so the
  delivery is workable again at once instead of after the lease expires.

The API reads the delivery log (`page_for_postback`), records test fires whole
(`record_test_delivery`) and cancels a stopped postback's waiting deliveries
(`cancel_waiting_for_postback`).

The on-call tools redrive and recover: `claim` and `mark_enqueued` are conditional updates, so two
engineers redriving the same deliveries at once, or a re-run after an interruption, never reset one
delivery twice (`functions.core.redrive` has the whole protocol); the history (`attempts`) and the
delivery id are never touched. `dead_lettered` reads the sparse `by_dead_letter` index.

The delivery record is the durable truth; a queue message only points at it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pynamodb.exceptions import PutError, PynamoDBException, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from functions.core.dead_letter_index import AT_RISK_PARTITION, DEAD_PARTITION, REDRIVING_PARTITION, index_bounds
from functions.core.model import Attempt, Delivery, DeliveryState, PlannedDelivery, format_timestamp
from functions.storage.delivery_records import attempt_to_map, delivery_from_item, planned_item
from functions.storage.delivery_safeguards import DeliverySafeguards
from functions.storage.errors import response_code
from functions.storage.models import DeliveryModel

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"

logger = logging.getLogger(__name__)


class CreateOutcome(StrEnum):
    CREATED = "created"
    # The delivery existed and is still pending: it may never have reached the queue.
    EXISTS_PENDING = "exists_pending"
    # The delivery existed and the sender has taken it (or it is finished): nothing to do.
    EXISTS_HANDLED = "exists_handled"


class LeaseLost(Exception):
    """The lease on a delivery is no longer ours: another worker took it over, or it ended."""

    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"lease on delivery {delivery_id} lost")
        self.delivery_id = delivery_id


# The start key of a page of the `by_postback` index: these attributes, string values.
PAGE_KEY_ATTRIBUTES = frozenset({"delivery_id", "postback_id", "created_at"})


@dataclass(frozen=True)
class DeliveryPage:
    """One page of a postback's delivery records, newest first."""

    items: tuple[Delivery, ...]
    # Where the next page starts (PAGE_KEY_ATTRIBUTES); None on the last page.
    last_key: dict[str, str] | None


def _is_condition_failure(exc: PutError | UpdateError) -> bool:
    """The one check of a refused conditional write: any other error is a real failure."""
    return response_code(exc) == CONDITIONAL_CHECK_FAILED


class DeliveryRepository(DeliverySafeguards):
    def __init__(self, model: type[DeliveryModel] = DeliveryModel, ttl_days: int = 90) -> None:
        """`ttl_days`: how long a test fire's record is kept (`create` is told per call)."""
        self._model = model
        self._ttl_days = ttl_days

    # Reads.

    def get(self, delivery_id: str, consistent: bool = True) -> Delivery | None:
        try:
            item = self._model.get(delivery_id, consistent_read=consistent)
        except self._model.DoesNotExist:
            return None
        return delivery_from_item(item)

    def page_for_postback(
        self, postback_id: str, limit: int, start_key: Mapping[str, str] | None = None
    ) -> DeliveryPage:
        """One page of a postback's delivery log, newest first; `start_key` is a previous page's `last_key`."""
        exclusive_start = None
        if start_key is not None:
            exclusive_start = {name: {"S": start_key[name]} for name in PAGE_KEY_ATTRIBUTES}
            exclusive_start["postback_id"] = {"S": postback_id}
        # One more than asked for: a page that ends the log says so (no empty last page).
        results = self._model.by_postback.query(
            postback_id, scan_index_forward=False, limit=limit + 1, last_evaluated_key=exclusive_start
        )
        items = [delivery_from_item(item) for item in results]
        last_key = None
        if len(items) > limit:
            items = items[:limit]
            last = items[-1]
            last_key = {"delivery_id": last.delivery_id, "postback_id": last.postback_id, "created_at": last.created_at}
        return DeliveryPage(tuple(items), last_key)

    def dead_lettered(
        self, since: datetime | None, until: datetime | None, *, include_redriving: bool = True
    ) -> Iterator[Delivery]:
        """Records of the `by_dead_letter` index in [since, until), oldest first; then half-done redrives."""
        # `at_risk`: active deliveries whose message the queue may have moved (`mark_at_risk`).
        partitions = [DEAD_PARTITION, REDRIVING_PARTITION, AT_RISK_PARTITION] if include_redriving else [DEAD_PARTITION]
        low, high = index_bounds(since, until)
        key = self._model.dead_lettered_at
        for partition in partitions:
            range_condition: Condition | None = None
            if low is not None and high is not None:
                range_condition = key.between(low, high)
            elif low is not None:
                range_condition = key >= low
            elif high is not None:
                range_condition = key <= high
            for item in self._model.by_dead_letter.query(
                partition, range_key_condition=range_condition, scan_index_forward=True
            ):
                if high is not None and item.dead_lettered_at is not None and item.dead_lettered_at >= high:
                    continue
                yield delivery_from_item(item)

    # Creation (the evaluator) and test fires (the API).

    def create(self, planned: PlannedDelivery, *, now: datetime, ttl_days: int) -> CreateOutcome:
        """One conditional PutItem; on refusal, one consistent GetItem. Other errors propagate."""
        item = planned_item(self._model, planned, DeliveryState.PENDING, now=now, ttl_days=ttl_days)
        if planned.delay_seconds > 0:
            # The fire delay: the sender's lease refuses the delivery before this, even for a
            # message that arrives early (a re-enqueue), so the first GET is never sooner.
            item.next_attempt_at = format_timestamp(now + timedelta(seconds=planned.delay_seconds))
        try:
            item.save(condition=self._model.delivery_id.does_not_exist())
        except PutError as exc:
            if not _is_condition_failure(exc):
                raise
            existing = self.get(planned.delivery_id)
            if existing is not None and existing.state == DeliveryState.PENDING:
                return CreateOutcome.EXISTS_PENDING
            return CreateOutcome.EXISTS_HANDLED
        return CreateOutcome.CREATED

    def record_test_delivery(
        self,
        *,
        delivery_id: str,
        postback_id: str,
        affiliate_id: str,
        conversion_id: str,
        conversion_status: str,
        offer_id: str | None,
        url: str,
        target_host: str,
        state: DeliveryState,
        reason: str | None,
        attempt: Attempt,
        now: datetime,
    ) -> Delivery:
        """A test fire's record, its one attempt included, in one PutItem.

        The ID is new (a test conversion of its own), so the write is conditional only to never
        overwrite a record: a refusal would be a defect and propagates like any other error.
        """
        at = format_timestamp(now)
        item = self._model(
            delivery_id,
            postback_id=postback_id,
            affiliate_id=affiliate_id,
            conversion_id=conversion_id,
            conversion_status=conversion_status,
            offer_id=offer_id,
            url=url,
            target_host=target_host,
            state=state.value,
            reason=reason,
            is_test=True,
            attempts=[attempt_to_map(attempt)],
            cycle_attempts=1,
            schedule_started_at=attempt.at,
            delivered_at=at if state is DeliveryState.DELIVERED else None,
            created_at=at,
            updated_at=at,
            expires_at=int((now + timedelta(days=self._ttl_days)).timestamp()),
        )
        item.save(condition=self._model.delivery_id.does_not_exist())
        return delivery_from_item(item)

    # The lease (the sender).

    def acquire_lease(
        self, delivery_id: str, owner: str, now: datetime, lease_seconds: float, due_by: datetime
    ) -> Delivery | None:
        """Take the lease if the delivery is workable and due by `due_by`; None if it is not."""
        model = self._model
        now_epoch = now.timestamp()
        workable = model.state.is_in(DeliveryState.PENDING.value, DeliveryState.RETRYING.value) | (
            (model.state == DeliveryState.IN_FLIGHT.value) & (model.lease_expires_at < now_epoch)
        )
        due = model.next_attempt_at.does_not_exist() | (model.next_attempt_at <= format_timestamp(due_by))
        actions: list[Action] = [
            model.state.set(DeliveryState.IN_FLIGHT.value),
            model.lease_owner.set(owner),
            model.lease_expires_at.set(now_epoch + lease_seconds),
            model.updated_at.set(format_timestamp(now)),
        ]
        return self._update(delivery_id, actions, workable & due)

    def release_lease(self, delivery_id: str, owner: str, state: DeliveryState, now: datetime) -> Delivery | None:
        """Give back our unused lease, leaving the delivery in `state` (`pending` or `retrying`); None if not ours.

        The state the lease replaced is not kept on the record: the caller knows it from the leased
        record (`retrying` when this schedule has attempts). The delivery is workable again at once.
        """
        if state not in (DeliveryState.PENDING, DeliveryState.RETRYING):
            raise ValueError(f"a released delivery is pending or retrying, not {state.value}")
        actions: list[Action] = [self._model.state.set(state.value), *self._release(now)]
        return self._update(delivery_id, actions, self._model.lease_owner == owner)

    def cancel_waiting_for_postback(self, postback_id: str, reason: str, now: datetime, since: datetime) -> int:
        """Cancel the postback's deliveries that wait for a send (pending, retrying, or an expired lease).

        Called when a postback is deleted or disabled, so its log shows the cancellation at once.
        Only deliveries created since `since` are read (older ones cannot still be within their
        retry schedule); each cancellation is conditional, so a delivery being sent right now
        (live lease) is left to its sender, which checks the postback again before the GET.
        Returns how many were cancelled.
        """
        model = self._model
        now_epoch = now.timestamp()
        waiting = model.state.is_in(DeliveryState.PENDING.value, DeliveryState.RETRYING.value)
        workable = waiting | ((model.state == DeliveryState.IN_FLIGHT.value) & (model.lease_expires_at < now_epoch))
        cancelled = 0
        try:
            for item in model.by_postback.query(
                postback_id,
                model.created_at >= format_timestamp(since),
                filter_condition=model.state.is_in(
                    DeliveryState.PENDING.value, DeliveryState.RETRYING.value, DeliveryState.IN_FLIGHT.value
                ),
            ):
                actions = [*self._cancelled(reason), *self._release(now)]
                if self._update(item.delivery_id, actions, workable) is not None:
                    cancelled += 1
        except PynamoDBException:
            # The sender's check before every GET still cancels what is left here.
            logger.warning("cancelling the deliveries of postback %s stopped early", postback_id, exc_info=True)
        return cancelled

    # Writes under the lease.

    def cancel(self, delivery_id: str, owner: str, reason: str, now: datetime) -> Delivery:
        return self._update_leased(delivery_id, owner, [*self._cancelled(reason), *self._release(now)])

    def record_delivered(self, delivery_id: str, owner: str, attempt: Attempt, now: datetime) -> Delivery:
        model = self._model
        actions: list[Action] = [
            model.state.set(DeliveryState.DELIVERED.value),
            model.delivered_at.set(format_timestamp(now)),
            model.reason.remove(),
            model.next_attempt_at.remove(),
            *self._append_attempt(attempt),
            *self._release(now),
        ]
        return self._update_leased(delivery_id, owner, actions)

    def record_retry(
        self, delivery_id: str, owner: str, attempt: Attempt, next_attempt_at: datetime, now: datetime
    ) -> Delivery:
        model = self._model
        actions: list[Action] = [
            model.state.set(DeliveryState.RETRYING.value),
            model.next_attempt_at.set(format_timestamp(next_attempt_at)),
            *self._append_attempt(attempt),
            *self._release(now),
        ]
        return self._update_leased(delivery_id, owner, actions)

    def record_dead_letter(
        self, delivery_id: str, owner: str, attempt: Attempt, reason: str, now: datetime, *, copy_sent: bool = False
    ) -> Delivery:
        """`copy_sent`: the DLQ copy went out before this write (`dlq_copy_sent`, docs/reliability.md)."""
        model = self._model
        actions: list[Action] = [
            model.state.set(DeliveryState.DEAD_LETTERED.value),
            model.reason.set(reason),
            model.dead_lettered_at.set(format_timestamp(now)),
            model.dead_letter_partition.set(DEAD_PARTITION),
            model.next_attempt_at.remove(),
            *self._append_attempt(attempt),
            *self._release(now),
        ]
        if copy_sent:
            actions.append(model.dlq_copy_sent.set(True))
        return self._update_leased(delivery_id, owner, actions)

    def wait_for_host(
        self, delivery_id: str, owner: str, state: DeliveryState, until: datetime, now: datetime
    ) -> Delivery:
        """Its host is paused: give the lease back without an attempt, due again at `until` (the pause end).

        The delivery keeps its schedule (no attempt is spent) and records the pause it waited for
        (`host_paused_until`, `host_pause_waits`), so its log says why it waited.
        """
        if state not in (DeliveryState.PENDING, DeliveryState.RETRYING):
            raise ValueError(f"a waiting delivery is pending or retrying, not {state.value}")
        model = self._model
        stamp = format_timestamp(until)
        actions: list[Action] = [
            model.state.set(state.value),
            model.next_attempt_at.set(stamp),
            model.host_paused_until.set(stamp),
            model.host_pause_waits.set((model.host_pause_waits | 0) + 1),
            *self._release(now),
        ]
        return self._update_leased(delivery_id, owner, actions)

    def record_dead_letter_unattempted(self, delivery_id: str, owner: str, reason: str, now: datetime) -> Delivery:
        """Dead-letter a leased delivery without a new attempt (its deadline passes while its host is paused)."""
        model = self._model
        actions: list[Action] = [
            model.state.set(DeliveryState.DEAD_LETTERED.value),
            model.reason.set(reason),
            model.dead_lettered_at.set(format_timestamp(now)),
            model.dead_letter_partition.set(DEAD_PARTITION),
            model.next_attempt_at.remove(),
            *self._release(now),
        ]
        return self._update_leased(delivery_id, owner, actions)

    # Redrive and recovery (the on-call tools).

    def claim(self, observed: Delivery, token: str, now: datetime) -> bool:
        """Reset the schedule of a delivery for a redrive, if it is still as `observed`.

        State `pending`, a fresh schedule (`cycle_attempts` 0; schedule, lease, next attempt and
        reason removed), `redrive_count` + 1, `redrive_token` = token, and the record moves to the
        `redriving` partition of the dead-letter index until `mark_enqueued`. Returns False when
        another writer changed the record first (the caller reads it again and decides anew).
        """
        model = self._model
        stamp = format_timestamp(now)
        actions: list[Action] = [
            model.state.set(DeliveryState.PENDING.value),
            model.cycle_attempts.set(0),
            model.schedule_started_at.remove(),
            model.next_attempt_at.remove(),
            model.lease_owner.remove(),
            model.lease_expires_at.remove(),
            model.reason.remove(),
            model.enqueued_at.remove(),
            model.redrive_count.set((model.redrive_count | 0) + 1),
            model.redrive_token.set(token),
            model.dlq_copy_sent.remove(),
            *self._history_actions(observed),
            model.dead_letter_partition.set(REDRIVING_PARTITION),
            model.dead_lettered_at.set(model.dead_lettered_at | stamp),
            model.updated_at.set(stamp),
        ]
        condition = (model.state == observed.state.value) & (model.updated_at == observed.updated_at)
        return self._update(observed.delivery_id, actions, condition) is not None

    def mark_enqueued(self, delivery_id: str, token: str, now: datetime) -> bool:
        """Record that the redriven delivery is on the deliveries queue and take it out of the index.

        Conditional on the token still being ours and the record still `redriving`: if the
        sender has meanwhile dead-lettered it again, that newer dead-letter entry is left alone.
        """
        model = self._model
        stamp = format_timestamp(now)
        actions: list[Action] = [
            model.dead_letter_partition.remove(),
            model.dead_lettered_at.remove(),
            model.enqueued_at.set(stamp),
            model.updated_at.set(stamp),
        ]
        condition = (model.redrive_token == token) & (model.dead_letter_partition == REDRIVING_PARTITION)
        return self._update(delivery_id, actions, condition) is not None

    # Internals.

    def _cancelled(self, reason: str) -> list[Action]:
        model = self._model
        return [
            model.state.set(DeliveryState.CANCELLED.value),
            model.reason.set(reason),
            model.next_attempt_at.remove(),
        ]

    def _append_attempt(self, attempt: Attempt) -> list[Action]:
        model = self._model
        return [
            model.attempts.set(model.attempts.append([attempt_to_map(attempt)])),
            model.cycle_attempts.add(1),
            model.schedule_started_at.set(model.schedule_started_at | attempt.at),
        ]

    def _release(self, now: datetime) -> list[Action]:
        model = self._model
        return [
            model.lease_owner.remove(),
            model.lease_expires_at.remove(),
            model.updated_at.set(format_timestamp(now)),
        ]

    def _update_leased(self, delivery_id: str, owner: str, actions: list[Action]) -> Delivery:
        record = self._update(delivery_id, actions, self._model.lease_owner == owner)
        if record is None:
            raise LeaseLost(delivery_id)
        return record

    def _update(self, delivery_id: str, actions: list[Action], condition: Condition) -> Delivery | None:
        """One conditional UpdateItem; the record as written, or None when the condition refused it."""
        item = self._model(delivery_id)
        try:
            item.update(actions=actions, condition=condition)
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return None
            raise
        return delivery_from_item(item)
