"""The SQS adapter: one queue, addressed by name or URL (resolved on first use), on a client passed in.

Message bodies are JSON. `send_batch` sends in chunks of ten (the SQS limit) and retries the
entries SQS reports as failed; what still fails after the retries is raised as
`QueueSendError` naming the entries, never dropped silently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from functions.core.model import direct_init

SQS_BATCH_LIMIT = 10
MAX_VISIBILITY_SECONDS = 43200  # 12 h, the SQS maximum


class QueueSendError(Exception):
    """Some entries could not be sent after retries."""

    def __init__(self, failed_ids: Sequence[str], detail: str) -> None:
        super().__init__(f"{len(failed_ids)} message(s) not sent: {detail}")
        self.failed_ids = list(failed_ids)


class QueueDeleteError(Exception):
    """SQS refused to delete some messages (their receipt handles are kept)."""

    def __init__(self, receipt_handles: Sequence[str], detail: str) -> None:
        super().__init__(f"{len(receipt_handles)} message(s) not deleted: {detail}")
        self.receipt_handles = list(receipt_handles)


@direct_init  # made for every delivery the evaluator enqueues
@dataclass(frozen=True)
class OutgoingMessage:
    """One message of a batch send."""

    id: str  # unique within one batch call; [A-Za-z0-9_-]{1,80}
    body: dict[str, Any]
    attributes: dict[str, str] | None = None
    delay_seconds: int = 0


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as SQS returned it."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]
    message_attributes: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def _sqs_attributes(attributes: dict[str, str] | None) -> dict[str, Any]:
    return {
        key: {"DataType": "String", "StringValue": value} for key, value in (attributes or {}).items() if value != ""
    }


class Queue:
    def __init__(self, name_or_url: str, client: Any, send_retries: int = 3) -> None:
        """`client`: an SQS client (`functions.bootstrap.sqs_client`)."""
        self._name_or_url = name_or_url
        self._client = client
        self._url: str | None = name_or_url if name_or_url.startswith(("http://", "https://")) else None
        self._send_retries = send_retries

    @property
    def client(self) -> Any:
        return self._client

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self.client.get_queue_url(QueueName=self._name_or_url)["QueueUrl"]
        return self._url

    @property
    def name(self) -> str:
        return self._name_or_url.rstrip("/").rsplit("/", 1)[-1]

    def send(self, body: dict[str, Any], attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str:
        response = self.client.send_message(
            QueueUrl=self.url,
            MessageBody=json.dumps(body, separators=(",", ":"), default=str),
            MessageAttributes=_sqs_attributes(attributes),
            DelaySeconds=delay_seconds,
        )
        return str(response["MessageId"])

    def send_batch(self, messages: Iterable[OutgoingMessage]) -> None:
        """Send every message, ten per call, retrying per-entry failures; raise what is left."""
        pending = list(messages)
        for start in range(0, len(pending), SQS_BATCH_LIMIT):
            self._send_chunk(pending[start : start + SQS_BATCH_LIMIT])

    def _send_chunk(self, chunk: list[OutgoingMessage]) -> None:
        remaining = {message.id: message for message in chunk}
        detail = ""
        for attempt in range(self._send_retries + 1):
            if attempt:
                time.sleep(min(0.05 * 2**attempt, 1.0))
            response = self.client.send_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {
                        "Id": message.id,
                        "MessageBody": json.dumps(message.body, separators=(",", ":"), default=str),
                        "MessageAttributes": _sqs_attributes(message.attributes),
                        "DelaySeconds": message.delay_seconds,
                    }
                    for message in remaining.values()
                ],
            )
            for entry in response.get("Successful", []):
                remaining.pop(entry["Id"], None)
            failed = response.get("Failed", [])
            if not remaining:
                return
            detail = "; ".join(f"{f.get('Id')}: {f.get('Code')} {f.get('Message', '')}".strip() for f in failed)
            # Sender faults (malformed entries) will not succeed on retry.
            if any(f.get("SenderFault") for f in failed):
                break
        raise QueueSendError(list(remaining), detail)

    def receive(
        self, max_messages: int = 10, wait_seconds: int = 0, visibility_timeout: int | None = None
    ) -> list[ReceivedMessage]:
        kwargs: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": max(1, min(max_messages, SQS_BATCH_LIMIT)),
            "WaitTimeSeconds": wait_seconds,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        response = self.client.receive_message(**kwargs)
        return [
            ReceivedMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                attributes=dict(m.get("Attributes", {})),
                message_attributes={
                    key: value.get("StringValue", "") for key, value in m.get("MessageAttributes", {}).items()
                },
            )
            for m in response.get("Messages", [])
        ]

    def delete(self, receipt_handle: str) -> None:
        self.client.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)

    def delete_batch(self, receipt_handles: Sequence[str]) -> None:
        """Delete the messages, ten per DeleteMessageBatch; raise `QueueDeleteError` naming those SQS refused."""
        refused: list[str] = []
        details: list[str] = []
        handles = list(receipt_handles)
        for start in range(0, len(handles), SQS_BATCH_LIMIT):
            chunk = handles[start : start + SQS_BATCH_LIMIT]
            response = self.client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                refused.append(chunk[int(failure["Id"])])
                details.append(f"{failure.get('Code')} {failure.get('Message', '')}".strip())
        if refused:
            raise QueueDeleteError(refused, "; ".join(details))

    def change_visibility(self, receipt_handle: str, seconds: float) -> None:
        timeout = max(0, min(round(seconds), MAX_VISIBILITY_SECONDS))
        self.client.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=timeout
        )

    def counts(self) -> dict[str, int]:
        """Approximate messages visible, in flight (received, not deleted) and delayed: one GetQueueAttributes."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return {
            "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        }

    def depth(self) -> dict[str, int]:
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return {
            "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        }
