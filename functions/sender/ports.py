"""The sender's ports: what `DeliverySender` needs of the tables and queues, and its message types.

Narrow protocols, so the service can be driven by the repositories in AWS and by in-memory fakes in
the tests and benchmarks alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from functions.core.model import Attempt, Delivery, DeliveryState, Postback


class DeliveryStore(Protocol):
    """What the sender needs of the deliveries table (`functions.storage.deliveries.DeliveryRepository`)."""

    def get(self, delivery_id: str) -> Delivery | None: ...
    def acquire_lease(
        self, delivery_id: str, owner: str, now: datetime, lease_seconds: float, due_by: datetime
    ) -> Delivery | None: ...
    def release_lease(self, delivery_id: str, owner: str, state: DeliveryState, now: datetime) -> Delivery | None: ...
    def cancel(self, delivery_id: str, owner: str, reason: str, now: datetime) -> Delivery: ...
    def record_delivered(self, delivery_id: str, owner: str, attempt: Attempt, now: datetime) -> Delivery: ...
    def record_retry(
        self, delivery_id: str, owner: str, attempt: Attempt, next_attempt_at: datetime, now: datetime
    ) -> Delivery: ...
    def record_dead_letter(
        self, delivery_id: str, owner: str, attempt: Attempt, reason: str, now: datetime, *, copy_sent: bool = False
    ) -> Delivery: ...
    def mark_dlq_copy_sent(self, delivery_id: str, now: datetime) -> bool: ...
    def mark_at_risk(self, delivery_id: str, now: datetime) -> bool: ...


class HealthStore(Protocol):
    """What the sender needs of the postbacks table (`PostbackHealthRepository`)."""

    def record_success(self, postback_id: str, at: datetime) -> bool: ...
    def record_failure(self, postback_id: str, reason: str, at: datetime) -> bool: ...


class PostbackReader(Protocol):
    """What the sender needs of the postbacks table (`PostbackRepository`): consistent reads."""

    def get(self, postback_id: str) -> Postback | None: ...
    def get_many(self, postback_ids: list[str]) -> dict[str, Postback]: ...


class VisibilityPort(Protocol):
    def change_visibility(self, receipt_handle: str, seconds: float) -> None: ...


class DeadLetterPort(Protocol):
    def send(self, body: dict[str, Any], attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str: ...


@dataclass(frozen=True)
class IncomingMessage:
    """One SQS message of the deliveries queue, as the sender handles it."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1  # SQS ApproximateReceiveCount
    received_at: datetime | None = None  # when this receive happened (the batch start when not given)


class Disposition(StrEnum):
    ACKNOWLEDGE = "acknowledge"  # done with it: report success, the queue deletes it
    RETURN_LATER = "return_later"  # report as a batch item failure: it comes back
