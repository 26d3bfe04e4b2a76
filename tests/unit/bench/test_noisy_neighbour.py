"""The noisy-neighbour benchmark's queue model (bench/noisy_neighbour.py): SQS's visibility rules."""

from __future__ import annotations

import time

import pytest

from bench.noisy_neighbour import BackfillQueue, SimQueue
from functions.sender.ports import IncomingMessage

pytestmark = pytest.mark.unit


def _ids(messages: list[IncomingMessage]) -> list[str]:
    return [message.message_id for message in messages]


def test_a_received_message_is_hidden_for_the_visibility_timeout() -> None:
    queue = SimQueue(visibility_timeout=60)
    for delivery_id in ("a", "b", "c"):
        queue.send(delivery_id)

    assert _ids(queue.receive(2)) == ["a", "b"]
    assert _ids(queue.receive(10)) == ["c"]
    assert queue.receive(10) == []


def test_a_visibility_change_brings_a_message_back_and_the_receive_counts() -> None:
    queue = SimQueue(visibility_timeout=60)
    queue.send("a")
    [first] = queue.receive(1)
    queue.change_visibility(first.receipt_handle, 0)

    [again] = queue.receive(1)
    assert again.message_id == "a" and again.receive_count == 2
    assert '"delivery_id": "a"' in again.body


def test_messages_come_back_in_the_order_of_their_visibility() -> None:
    queue = SimQueue(visibility_timeout=60)
    for delivery_id in ("a", "b", "c"):
        queue.send(delivery_id)
    received = queue.receive(3)
    queue.change_visibility(received[2].receipt_handle, 0)  # c first
    queue.change_visibility(received[0].receipt_handle, 0.01)  # then a; b stays hidden
    time.sleep(0.02)

    assert _ids(queue.receive(10)) == ["c", "a"]


def test_a_deleted_message_never_comes_back() -> None:
    queue = SimQueue(visibility_timeout=0)
    queue.send("a")
    queue.send("b")
    [first, _] = queue.receive(2)
    queue.delete(first.receipt_handle)

    assert _ids(queue.receive(10)) == ["b"]


def test_the_backfill_view_counts_what_it_takes_and_deletes() -> None:
    queue = SimQueue(visibility_timeout=60)
    queue.send("a")
    view = BackfillQueue(queue)

    taken = view.receive(10)
    view.delete([message.receipt_handle for message in taken])

    assert _ids(taken) == ["a"] and view.taken == 1
    assert queue.messages == {}
