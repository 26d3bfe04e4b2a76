"""`Queue.delete_batch` (functions/storage/queues.py): ten per DeleteMessageBatch, refusals named."""

from __future__ import annotations

from typing import Any

import pytest

from functions.storage.queues import Queue, QueueDeleteError

pytestmark = pytest.mark.unit


class Client:
    """The SQS client's DeleteMessageBatch: records each call, refuses the receipt handles in `refuse`."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[dict[str, str]]] = []
        self.refuse = refuse

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        assert QueueUrl == "https://sqs.example/1/deliveries"
        self.calls.append(Entries)
        failed = [
            {"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True}
            for entry in Entries
            if entry["ReceiptHandle"] in self.refuse
        ]
        return {"Successful": [], "Failed": failed}


def test_messages_are_deleted_ten_per_call() -> None:
    client = Client()
    Queue("https://sqs.example/1/deliveries", client).delete_batch([f"rh-{n}" for n in range(23)])

    assert [len(call) for call in client.calls] == [10, 10, 3]
    assert [entry["ReceiptHandle"] for call in client.calls for entry in call] == [f"rh-{n}" for n in range(23)]
    assert all(len({entry["Id"] for entry in call}) == len(call) for call in client.calls)


def test_refused_deletes_are_raised_with_their_receipt_handles() -> None:
    client = Client(refuse=frozenset({"rh-3", "rh-12"}))
    with pytest.raises(QueueDeleteError, match="2 message") as raised:
        Queue("https://sqs.example/1/deliveries", client).delete_batch([f"rh-{n}" for n in range(15)])

    assert raised.value.receipt_handles == ["rh-3", "rh-12"]
    assert len(client.calls) == 2  # every chunk is tried


def test_nothing_to_delete_makes_no_call() -> None:
    client = Client()
    Queue("https://sqs.example/1/deliveries", client).delete_batch([])
    assert client.calls == []
