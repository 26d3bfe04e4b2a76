"""Delivery records: creation by the evaluator (the deduplicating conditional write) and reads.

The hash key `delivery_id` is derived from (postback, conversion, status), so the conditional
PutItem (`attribute_not_exists(delivery_id)`) is the at-most-once guard of contract §2: a
redelivered stream record or a status flip-flop computes the same ID and is refused.

When the write is refused, the record may be a retry after a crash between the write and the
enqueue. The repository then reads the existing record (a consistent GetItem) and reports whether it
is still `pending` (never taken by the sender, so it may never have reached the queue) — the caller
enqueues it again; the sender's lease makes a duplicate message harmless. pynamodb 6.1's
`Model.save` cannot ask for `ReturnValuesOnConditionCheckFailure`, and refusals happen only on
retries and flip-flops, so the extra read stays off the common path.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pynamodb.exceptions import PutError

from functions.core.matching import PlannedDelivery
from functions.core.model import Delivery, DeliveryState, format_timestamp
from functions.storage.delivery_records import delivery_from_item
from functions.storage.models import DeliveryModel

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"


class CreateOutcome(StrEnum):
    CREATED = "created"
    # The delivery existed and is still pending: it may never have reached the queue.
    EXISTS_PENDING = "exists_pending"
    # The delivery existed and the sender has taken it (or it is finished): nothing to do.
    EXISTS_HANDLED = "exists_handled"


class DeliveryRepository:
    def __init__(self, model: type[DeliveryModel] = DeliveryModel) -> None:
        self._model = model

    def create(self, planned: PlannedDelivery, *, now: datetime, ttl_days: int) -> CreateOutcome:
        """One conditional PutItem; on refusal, one consistent GetItem. Other errors propagate."""
        timestamp = format_timestamp(now)
        item = self._model(
            delivery_id=planned.delivery_id,
            postback_id=planned.postback_id,
            affiliate_id=planned.affiliate_id,
            conversion_id=planned.conversion_id,
            conversion_status=planned.conversion_status,
            previous_status=planned.previous_status,
            offer_id=planned.offer_id,
            url=planned.url,
            target_host=planned.target_host,
            state=DeliveryState.PENDING.value,
            is_test=False,
            attempts=[],
            cycle_attempts=0,
            redrive_count=0,
            created_at=timestamp,
            updated_at=timestamp,
            expires_at=int((now + timedelta(days=ttl_days)).timestamp()),
        )
        try:
            item.save(condition=self._model.delivery_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code != CONDITIONAL_CHECK_FAILED:
                raise
            existing = self.get(planned.delivery_id)
            if existing is not None and existing.state == DeliveryState.PENDING:
                return CreateOutcome.EXISTS_PENDING
            return CreateOutcome.EXISTS_HANDLED
        return CreateOutcome.CREATED

    def get(self, delivery_id: str, consistent: bool = True) -> Delivery | None:
        try:
            item = self._model.get(delivery_id, consistent_read=consistent)
        except self._model.DoesNotExist:
            return None
        return delivery_from_item(item)
