"""Record-level steps of a redrive or a recovery on the deliveries table.

`claim` and `mark_enqueued` are conditional updates, so two engineers redriving the same
deliveries at once, or a re-run after an interruption, never reset one delivery twice (see
`functions.core.redrive` for the whole protocol). The history (`attempts`) and the delivery id
are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import Condition

from functions.core.model import DeliveryState, format_timestamp
from functions.core.redrive import DEAD_PARTITION, REDRIVING_PARTITION, DeliveryRecord, index_bounds
from functions.storage.models import DeliveryModel


def _is_condition_failure(error: UpdateError) -> bool:
    return error.cause_response_code == "ConditionalCheckFailedException"


def _attempt_dict(attempt: Any) -> dict[str, Any]:
    raw = attempt.as_dict() if hasattr(attempt, "as_dict") else dict(attempt)
    return {key: value for key, value in raw.items() if value is not None}


def to_record(item: DeliveryModel) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=item.delivery_id,
        affiliate_id=item.affiliate_id,
        postback_id=item.postback_id,
        conversion_id=item.conversion_id,
        conversion_status=item.conversion_status,
        target_host=item.target_host,
        state=item.state,
        reason=item.reason,
        attempts=tuple(_attempt_dict(a) for a in (item.attempts or [])),
        cycle_attempts=int(item.cycle_attempts or 0),
        redrive_count=int(item.redrive_count or 0),
        redrive_token=item.redrive_token,
        dead_letter_partition=item.dead_letter_partition,
        dead_lettered_at=item.dead_lettered_at,
        lease_expires_at=float(item.lease_expires_at) if item.lease_expires_at is not None else None,
        enqueued_at=item.enqueued_at,
        next_attempt_at=item.next_attempt_at,
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


class DeliveryRedriveRepository:
    """Reads delivery records and moves them through the claim / mark steps of a redrive."""

    def __init__(self, model: type[DeliveryModel] = DeliveryModel) -> None:
        self._model = model

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        try:
            item = self._model.get(delivery_id, consistent_read=True)
        except self._model.DoesNotExist:
            return None
        return to_record(item)

    def claim(self, observed: DeliveryRecord, token: str, now: datetime) -> bool:
        """Reset the schedule of a delivery for a redrive, if it is still as `observed`.

        State `pending`, a fresh schedule (`cycle_attempts` 0; schedule, lease, next attempt and
        reason removed), `redrive_count` + 1, `redrive_token` = token, and the record moves to the
        `redriving` partition of the dead-letter index until `mark_enqueued`. Returns False when
        another writer changed the record first (the caller reads it again and decides anew).
        """
        model = self._model
        stamp = format_timestamp(now)
        condition: Condition = (model.state == observed.state) & (model.updated_at == observed.updated_at)
        try:
            model(observed.delivery_id).update(
                actions=[
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
                    model.dead_letter_partition.set(REDRIVING_PARTITION),
                    model.dead_lettered_at.set(model.dead_lettered_at | stamp),
                    model.updated_at.set(stamp),
                ],
                condition=condition,
            )
        except UpdateError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def mark_enqueued(self, delivery_id: str, token: str, now: datetime) -> bool:
        """Record that the redriven delivery is on the deliveries queue and take it out of the index.

        Conditional on the token still being ours and the record still `redriving`: if the
        sender has meanwhile dead-lettered it again, that newer dead-letter entry is left alone.
        """
        model = self._model
        stamp = format_timestamp(now)
        try:
            model(delivery_id).update(
                actions=[
                    model.dead_letter_partition.remove(),
                    model.dead_lettered_at.remove(),
                    model.enqueued_at.set(stamp),
                    model.updated_at.set(stamp),
                ],
                condition=(model.redrive_token == token) & (model.dead_letter_partition == REDRIVING_PARTITION),
            )
        except UpdateError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def dead_lettered(
        self, since: datetime | None, until: datetime | None, *, include_redriving: bool = True
    ) -> Iterator[DeliveryRecord]:
        """Records of the `by_dead_letter` index in [since, until), oldest first; then half-done redrives."""
        partitions = [DEAD_PARTITION, REDRIVING_PARTITION] if include_redriving else [DEAD_PARTITION]
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
                yield to_record(item)
