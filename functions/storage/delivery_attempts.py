"""The sender's side of the deliveries table: lease, attempt log, terminal states, the delivery log.

Every write is a conditional UpdateItem, so two workers never both act on one delivery:

- `acquire_lease`: only a delivery that is `pending` or `retrying` (or `in_flight` with an expired
  lease), and due, becomes `in_flight` with this worker's `lease_owner`; otherwise None.
- `record_delivered` / `record_retry` / `record_dead_letter` / `cancel`: only while this worker
  still holds the lease (`lease_owner` unchanged); otherwise `LeaseLost`. Each appends the attempt
  to the log and releases the lease in the same write.
- `release_lease`: gives back a lease that was taken but not used (no GET started), so the
  delivery is workable again at once instead of after the lease expires.

`acquire_lease` returns the record as written (`ReturnValues ALL_NEW`), so the sender needs no read
of the record on the happy path: one UpdateItem to lease, one to record the outcome. The reads
(`get`, `get_many`) are for the exceptions — why a lease was refused — and the API.

The delivery record is the durable truth; the queue message only points at it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pynamodb.exceptions import PutError, PynamoDBException, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from functions.core.model import Attempt, Delivery, DeliveryState, format_timestamp
from functions.storage.delivery_records import attempt_to_map, delivery_from_item
from functions.storage.models import DEAD_LETTER_PARTITION, DeliveryModel

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The lease on a delivery is no longer ours: another worker took it over, or it ended."""

    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"lease on delivery {delivery_id} lost")
        self.delivery_id = delivery_id


class DeliveryAlreadyExists(Exception):
    """A delivery with this ID is already recorded."""


# The start key of a page of the `by_postback` index: these attributes, string values.
PAGE_KEY_ATTRIBUTES = frozenset({"delivery_id", "postback_id", "created_at"})


@dataclass(frozen=True)
class DeliveryPage:
    items: tuple[Delivery, ...]
    # Where the next page starts (PAGE_KEY_ATTRIBUTES); None on the last page.
    last_key: dict[str, str] | None


def _is_condition_failure(exc: UpdateError | PutError) -> bool:
    return exc.cause_response_code == CONDITIONAL_CHECK_FAILED


class DeliveryAttemptRepository:
    def __init__(self, model: type[DeliveryModel] = DeliveryModel, ttl_days: int = 90) -> None:
        self._model = model
        self._ttl_days = ttl_days

    # Reads.

    def get(self, delivery_id: str) -> Delivery | None:
        try:
            return delivery_from_item(self._model.get(delivery_id, consistent_read=True))
        except self._model.DoesNotExist:
            return None

    def get_many(self, delivery_ids: Iterable[str]) -> dict[str, Delivery]:
        """Consistent BatchGetItem; IDs without a record are absent from the result."""
        unique = list(dict.fromkeys(delivery_ids))
        if not unique:
            return {}
        return {
            item.delivery_id: delivery_from_item(item) for item in self._model.batch_get(unique, consistent_read=True)
        }

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

    # The lease.

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
                actions: list[Action] = [
                    model.state.set(DeliveryState.CANCELLED.value),
                    model.reason.set(reason),
                    model.next_attempt_at.remove(),
                    *self._release(now),
                ]
                if self._update(item.delivery_id, actions, workable) is not None:
                    cancelled += 1
        except PynamoDBException:
            # The sender's check before every GET still cancels what is left here.
            logger.warning("cancelling the deliveries of postback %s stopped early", postback_id, exc_info=True)
        return cancelled

    # Writes under the lease.

    def cancel(self, delivery_id: str, owner: str, reason: str, now: datetime) -> Delivery:
        model = self._model
        actions: list[Action] = [
            model.state.set(DeliveryState.CANCELLED.value),
            model.reason.set(reason),
            model.next_attempt_at.remove(),
            *self._release(now),
        ]
        return self._update_leased(delivery_id, owner, actions)

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
        self, delivery_id: str, owner: str, attempt: Attempt, reason: str, now: datetime
    ) -> Delivery:
        model = self._model
        actions: list[Action] = [
            model.state.set(DeliveryState.DEAD_LETTERED.value),
            model.reason.set(reason),
            model.dead_lettered_at.set(format_timestamp(now)),
            model.dead_letter_partition.set(DEAD_LETTER_PARTITION),
            model.next_attempt_at.remove(),
            *self._append_attempt(attempt),
            *self._release(now),
        ]
        return self._update_leased(delivery_id, owner, actions)

    # Test fires: one attempt, recorded whole.

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
        try:
            item.save(condition=self._model.delivery_id.does_not_exist())
        except PutError as exc:
            if _is_condition_failure(exc):
                raise DeliveryAlreadyExists(delivery_id) from exc
            raise
        return delivery_from_item(item)

    # Internals.

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
        item = self._model(delivery_id)
        try:
            item.update(actions=actions, condition=condition)
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return None
            raise
        return delivery_from_item(item)
