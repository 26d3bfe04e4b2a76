"""The one conversion between a `DeliveryModel` item and the domain `Delivery` (and its `Attempt` log).

`functions.storage.deliveries.DeliveryRepository` reads every record through `delivery_from_item`,
so the evaluator, the sender, the API and the on-call tools all see the same fields with the same
types.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from functions.core.model import Attempt, Delivery, DeliveryState, PlannedDelivery, format_timestamp
from functions.storage.models import AttemptMap, DeliveryModel


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def attempt_from_map(item: AttemptMap) -> Attempt:
    return Attempt(
        number=int(item.number),
        at=item.at,
        outcome=item.outcome,
        duration_ms=_optional_int(item.duration_ms),
        status_code=_optional_int(item.status_code),
        error=item.error,
        resolved_address=item.resolved_address,
        retry_after=item.retry_after,
        location=item.location,
        response_excerpt=item.response_excerpt,
        next_attempt_at=item.next_attempt_at,
        test=bool(item.test),
    )


def attempt_to_map(attempt: Attempt) -> AttemptMap:
    return AttemptMap(**attempt.logged())  # type: ignore[no-untyped-call]


def delivery_from_item(item: DeliveryModel) -> Delivery:
    return Delivery(
        delivery_id=item.delivery_id,
        postback_id=item.postback_id,
        affiliate_id=item.affiliate_id,
        conversion_id=item.conversion_id,
        conversion_status=item.conversion_status,
        url=item.url,
        target_host=item.target_host,
        state=DeliveryState(item.state),
        created_at=item.created_at,
        updated_at=item.updated_at,
        previous_status=item.previous_status,
        offer_id=item.offer_id,
        reason=item.reason,
        is_test=bool(item.is_test),
        attempts=tuple(attempt_from_map(attempt) for attempt in item.attempts or ()),
        cycle_attempts=int(item.cycle_attempts or 0),
        schedule_started_at=item.schedule_started_at,
        next_attempt_at=item.next_attempt_at,
        lease_owner=item.lease_owner,
        lease_expires_at=None if item.lease_expires_at is None else float(item.lease_expires_at),
        enqueued_at=item.enqueued_at,
        delivered_at=item.delivered_at,
        dead_lettered_at=item.dead_lettered_at,
        dead_letter_partition=item.dead_letter_partition,
        redrive_count=int(item.redrive_count or 0),
        redrive_token=item.redrive_token,
        expires_at=_optional_int(item.expires_at),
        dlq_copy_sent=bool(item.dlq_copy_sent),
        host_paused_until=item.host_paused_until,
        host_pause_waits=int(item.host_pause_waits or 0),
    )


def planned_item(
    model: type[DeliveryModel],
    planned: PlannedDelivery,
    state: DeliveryState,
    *,
    now: datetime,
    ttl_days: int,
    **extra: Any,
) -> DeliveryModel:
    """The item of a new delivery the evaluator matched, in `state`, before any attempt; `extra` adds attributes."""
    stamp = format_timestamp(now)
    return model(
        delivery_id=planned.delivery_id,
        postback_id=planned.postback_id,
        affiliate_id=planned.affiliate_id,
        conversion_id=planned.conversion_id,
        conversion_status=planned.conversion_status,
        previous_status=planned.previous_status,
        offer_id=planned.offer_id,
        url=planned.url,
        target_host=planned.target_host,
        state=state.value,
        is_test=False,
        attempts=[],
        cycle_attempts=0,
        redrive_count=0,
        created_at=stamp,
        updated_at=stamp,
        expires_at=int((now + timedelta(days=ttl_days)).timestamp()),
        **extra,
    )
