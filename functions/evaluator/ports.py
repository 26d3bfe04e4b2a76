"""What the evaluator's batch logic (`functions.evaluator.service`) talks to, and what it returns."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from functions.core.model import PlannedDelivery, Postback
from functions.storage.deliveries import CreateOutcome
from functions.storage.queues import OutgoingMessage

if TYPE_CHECKING:
    from functions.storage.postbacks import RulesVersion


class PostbackSource(Protocol):
    def list_for_affiliate(self, affiliate_id: str) -> list[Postback]: ...


class RulesVersionSource(Protocol):
    def rules_version(self) -> RulesVersion: ...


class DeliveryStore(Protocol):
    def create(self, planned: PlannedDelivery, *, now: datetime, ttl_days: int) -> CreateOutcome: ...

    def pending_among(self, delivery_ids: Sequence[str]) -> list[PlannedDelivery]: ...

    def create_dead_lettered(self, planned: PlannedDelivery, reason: str, *, now: datetime, ttl_days: int) -> bool: ...

    def mark_dlq_copy_sent(self, delivery_id: str, now: datetime) -> bool: ...


class WriteMap(Protocol):
    """How the batch's conditional writes are made: the built-in `map` one after the other, or a thread
    pool's `map` (the handler's: `POSTBACKS_EVALUATOR_WRITE_CONCURRENCY` at a time); results in order."""

    def __call__(
        self, function: Callable[[PlannedDelivery], CreateOutcome | Exception], deliveries: Sequence[PlannedDelivery], /
    ) -> Iterable[CreateOutcome | Exception]: ...


class MessageQueue(Protocol):
    def send(self, body: dict[str, Any], attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str: ...

    def send_batch(self, messages: Iterable[OutgoingMessage]) -> None: ...


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one batch; `failed_sequence_number` is where Lambda must retry from."""

    records: int
    status_changes: int
    deliveries_created: int
    deliveries_enqueued: int
    dead_lettered: int
    failed_sequence_number: str | None

    def as_response(self) -> dict[str, list[dict[str, str]]]:
        if self.failed_sequence_number is None:
            return {"batchItemFailures": []}
        return {"batchItemFailures": [{"itemIdentifier": self.failed_sequence_number}]}
