"""A simulated SQS standard queue with the rules the campaign depends on, behind a boto-shaped client.

The product's own `functions.storage.queues.Queue` adapter runs on it unchanged (its send retries,
its visibility clamp). What it enforces, as AWS does:

- **receive counts and the redrive policy**: every receive counts; a message received
  `maxReceiveCount` times is moved to the dead-letter queue on the next receive instead of being
  returned, keeping its message id, body and original `SentTimestamp`;
- **visibility**: a received message is hidden for the receive's timeout (the queue's default
  otherwise); `ChangeMessageVisibility` works only with the latest receipt handle of a message in
  flight, and is refused (`InvalidParameterValue`) when it would end more than 12 h after the
  receive; a delete with an older receipt handle succeeds without deleting;
- **retention**: a message older than the queue's retention period (from its first send) is gone;
- **delay**: `DelaySeconds` hides a new message that long.

Faults: each boto call draws from the injector (`sqs.<queue>.<Operation>`); a throttled or failed
`SendMessageBatch` either fails whole or reports some entries `Failed` (as SQS does). Under
`duplicate_message` a send may store a second copy; under `reordered` receives return visible
messages in shuffled order and sends get a random delay. Lambda's own receives and deletes (the
event source mapping) use `poll` and `ack`, which are never faulted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from tests.faults.clock import SimClock
from tests.faults.faults import FaultInjector, FaultKind, SimulatedCrash, sqs_error

MAX_VISIBILITY = 43_200


@dataclass
class SimMessage:
    message_id: str
    body: str
    attributes: dict[str, str]
    sent_at: float
    visible_at: float
    receive_count: int = 0
    receipt: str | None = None
    received_at: float | None = None
    first_received_at: float | None = None


@dataclass
class SimQueue:
    name: str
    visibility_timeout: int
    retention_seconds: int
    dead_letter: SimQueue | None = None
    max_receives: int | None = None
    messages: dict[str, SimMessage] = field(default_factory=dict)
    moved: int = 0  # messages the redrive policy moved out
    expired: int = 0

    @property
    def url(self) -> str:
        return f"https://sqs.simulated/000000000000/{self.name}"


def _invalid(code: str, message: str, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation
    )


class SimulatedSqs:
    def __init__(self, clock: SimClock, injector: FaultInjector) -> None:
        self._clock = clock
        self._injector = injector
        self._queues: dict[str, SimQueue] = {}
        self._ids = 0
        self.refused_visibility = 0  # ChangeMessageVisibility refused by the 12 h rule
        self.duplicates = 0

    # Set-up (the template's queues).

    def create_queue(
        self,
        name: str,
        *,
        visibility_timeout: int = 30,
        retention_seconds: int = 345_600,
        dead_letter: str | None = None,
        max_receives: int | None = None,
    ) -> SimQueue:
        queue = SimQueue(name, visibility_timeout, retention_seconds)
        if dead_letter is not None:
            queue.dead_letter = self._queues[dead_letter]
            queue.max_receives = max_receives
        self._queues[name] = queue
        return queue

    def queue(self, name: str) -> SimQueue:
        return self._queues[name]

    def _by_url(self, url: str) -> SimQueue:
        return self._queues[url.rstrip("/").rsplit("/", 1)[-1]]

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids:07d}"

    def _fault(self, queue: SimQueue, operation: str) -> FaultKind | None:
        site = f"sqs.{queue.name}.{operation}"
        kind = self._injector.draw(site)
        if kind is FaultKind.CRASH:
            raise self._injector.crash(site, "before")
        if kind is not None:
            self._injector.note(kind, site)
        return kind

    def _expire(self, queue: SimQueue) -> None:
        now = self._clock.epoch()
        for message_id in [m.message_id for m in queue.messages.values() if now - m.sent_at > queue.retention_seconds]:
            del queue.messages[message_id]
            queue.expired += 1

    def _store(self, queue: SimQueue, body: str, attributes: dict[str, str], delay: int) -> str:
        now = self._clock.epoch()
        if self._injector.chance(FaultKind.REORDER, 0.5):
            delay += self._injector.rng.randint(1, 120)
            self._injector.note(FaultKind.REORDER, f"sqs.{queue.name}.delay")
        message_id = self._next_id("msg")
        queue.messages[message_id] = SimMessage(message_id, body, attributes, now, now + delay)
        if queue.dead_letter is not None and self._injector.chance(FaultKind.DUPLICATE, 0.3):
            copy_id = self._next_id("dup")
            queue.messages[copy_id] = SimMessage(copy_id, body, dict(attributes), now, now + delay)
            self.duplicates += 1
            self._injector.note(FaultKind.DUPLICATE, f"sqs.{queue.name}.delivery")
        return message_id

    # The boto-shaped client (what `functions.storage.queues.Queue` calls).

    def get_queue_url(self, QueueName: str) -> dict[str, Any]:
        return {"QueueUrl": self._queues[QueueName].url}

    def send_message(
        self,
        QueueUrl: str,
        MessageBody: str,
        MessageAttributes: dict[str, Any] | None = None,
        DelaySeconds: int = 0,
    ) -> dict[str, Any]:
        queue = self._by_url(QueueUrl)
        kind = self._fault(queue, "SendMessage")
        if kind is not None and kind is not FaultKind.TIMEOUT_AFTER_WRITE:
            raise sqs_error(kind, "SendMessage")
        message_id = self._store(queue, MessageBody, _plain(MessageAttributes), DelaySeconds)
        if kind is FaultKind.TIMEOUT_AFTER_WRITE:
            raise sqs_error(kind, "SendMessage")
        return {"MessageId": message_id}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        queue = self._by_url(QueueUrl)
        if len(Entries) > 10:
            raise _invalid("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "at most 10", "SendMessageBatch")
        kind = self._fault(queue, "SendMessageBatch")
        partial = kind in (FaultKind.THROTTLE, FaultKind.SERVER_ERROR) and self._injector.rng.random() < 0.5
        if kind is not None and kind is not FaultKind.TIMEOUT_AFTER_WRITE and not partial:
            raise sqs_error(kind, "SendMessageBatch")
        successful, failed = [], []
        for entry in Entries:
            if partial and self._injector.rng.random() < 0.5:
                failed.append({"Id": entry["Id"], "Code": "InternalError", "SenderFault": False, "Message": "injected"})
                continue
            message_id = self._store(
                queue, entry["MessageBody"], _plain(entry.get("MessageAttributes")), int(entry.get("DelaySeconds", 0))
            )
            successful.append({"Id": entry["Id"], "MessageId": message_id})
        if kind is FaultKind.TIMEOUT_AFTER_WRITE:
            raise sqs_error(kind, "SendMessageBatch")
        return {"Successful": successful, "Failed": failed}

    def receive_message(
        self,
        QueueUrl: str,
        MaxNumberOfMessages: int = 1,
        WaitTimeSeconds: int = 0,
        VisibilityTimeout: int | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        queue = self._by_url(QueueUrl)
        kind = self._fault(queue, "ReceiveMessage")
        if kind is not None:
            raise sqs_error(kind, "ReceiveMessage")
        return {"Messages": [self._shape(m) for m in self._receive(queue, MaxNumberOfMessages, VisibilityTimeout)]}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> dict[str, Any]:
        queue = self._by_url(QueueUrl)
        kind = self._fault(queue, "DeleteMessage")
        if kind is not None and kind is not FaultKind.TIMEOUT_AFTER_WRITE:
            raise sqs_error(kind, "DeleteMessage")
        self._delete(queue, ReceiptHandle)
        if kind is FaultKind.TIMEOUT_AFTER_WRITE:
            raise sqs_error(kind, "DeleteMessage")
        return {}

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> dict[str, Any]:
        queue = self._by_url(QueueUrl)
        kind = self._fault(queue, "ChangeMessageVisibility")
        if kind is not None and kind is not FaultKind.TIMEOUT_AFTER_WRITE:
            raise sqs_error(kind, "ChangeMessageVisibility")
        now = self._clock.epoch()
        message = next((m for m in queue.messages.values() if m.receipt == ReceiptHandle), None)
        operation = "ChangeMessageVisibility"
        if message is None:
            raise _invalid("ReceiptHandleIsInvalid", "the receipt handle is not the latest of a message", operation)
        if message.visible_at <= now:
            raise _invalid("AWS.SimpleQueueService.MessageNotInflight", "message not in flight", operation)
        assert message.received_at is not None
        if VisibilityTimeout > MAX_VISIBILITY or now - message.received_at + VisibilityTimeout > MAX_VISIBILITY:
            self.refused_visibility += 1
            raise _invalid(
                "InvalidParameterValue",
                f"Value {VisibilityTimeout} for parameter VisibilityTimeout is invalid. Reason: Total "
                "VisibilityTimeout for the message is beyond the limit [43200 seconds]",
                operation,
            )
        message.visible_at = now + VisibilityTimeout
        if kind is FaultKind.TIMEOUT_AFTER_WRITE:
            raise sqs_error(kind, operation)
        return {}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str] | None = None) -> dict[str, Any]:
        queue = self._by_url(QueueUrl)
        kind = self._fault(queue, "GetQueueAttributes")
        if kind is not None:
            raise sqs_error(kind, "GetQueueAttributes")
        self._expire(queue)
        now = self._clock.epoch()
        visible = sum(1 for m in queue.messages.values() if m.visible_at <= now)
        return {
            "Attributes": {
                "ApproximateNumberOfMessages": str(visible),
                "ApproximateNumberOfMessagesNotVisible": str(len(queue.messages) - visible),
            }
        }

    # Lambda's side of the event source mapping: never faulted.

    def poll(self, name: str, max_messages: int) -> list[SimMessage]:
        return self._receive(self._queues[name], max_messages, None)

    def ack(self, name: str, receipt: str) -> None:
        self._delete(self._queues[name], receipt)

    def next_visible_at(self, name: str) -> float | None:
        queue = self._queues[name]
        self._expire(queue)
        return min((m.visible_at for m in queue.messages.values()), default=None)

    def messages(self, name: str) -> list[SimMessage]:
        queue = self._queues[name]
        self._expire(queue)
        return list(queue.messages.values())

    # Internals.

    def _receive(self, queue: SimQueue, max_messages: int, visibility: int | None) -> list[SimMessage]:
        self._expire(queue)
        now = self._clock.epoch()
        visible = sorted(
            (m for m in queue.messages.values() if m.visible_at <= now), key=lambda m: (m.visible_at, m.message_id)
        )
        if self._injector.kind is FaultKind.REORDER and len(visible) > 1:
            self._injector.rng.shuffle(visible)
            self._injector.note(FaultKind.REORDER, f"sqs.{queue.name}.receive_order")
        received: list[SimMessage] = []
        for message in visible:
            if len(received) >= max(1, min(max_messages, 10)):
                break
            if (
                queue.dead_letter is not None
                and queue.max_receives is not None
                and message.receive_count >= queue.max_receives
            ):
                del queue.messages[message.message_id]
                message.receipt = None
                message.visible_at = now
                queue.dead_letter.messages[message.message_id] = message
                queue.moved += 1
                continue
            message.receive_count += 1
            message.receipt = self._next_id(f"rh-{message.message_id}")
            message.received_at = now
            message.first_received_at = message.first_received_at or now
            message.visible_at = now + (queue.visibility_timeout if visibility is None else visibility)
            received.append(message)
        return received

    def _delete(self, queue: SimQueue, receipt: str) -> None:
        for message in queue.messages.values():
            if message.receipt == receipt:
                del queue.messages[message.message_id]
                return

    def _shape(self, message: SimMessage) -> dict[str, Any]:
        return {
            "MessageId": message.message_id,
            "ReceiptHandle": message.receipt,
            "Body": message.body,
            "Attributes": {
                "SentTimestamp": str(int(message.sent_at * 1000)),
                "ApproximateReceiveCount": str(message.receive_count),
                "ApproximateFirstReceiveTimestamp": str(int((message.first_received_at or 0) * 1000)),
            },
            "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in message.attributes.items()},
        }


def _plain(attributes: dict[str, Any] | None) -> dict[str, str]:
    return {key: str(value.get("StringValue", "")) for key, value in (attributes or {}).items()}


def body_json(message: SimMessage) -> Any:
    try:
        return json.loads(message.body)
    except ValueError:
        return None


__all__ = ["SimMessage", "SimQueue", "SimulatedCrash", "SimulatedSqs", "body_json"]
