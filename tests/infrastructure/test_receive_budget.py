"""The deliveries queue's receive budget (docs/reliability.md): `maxReceiveCount` leaves room for every
attempt of a schedule with a continuation receive each (waits cut at 12 h from the receive), and the
sender marks a delivery `at_risk` for `recover` well before the queue would move its message."""

from __future__ import annotations

import pytest

from functions.sender.safeguards import AT_RISK_RECEIVE_COUNT
from functions.settings import Settings
from infrastructure.resources import resource

pytestmark = pytest.mark.infrastructure


def max_receive_count() -> int:
    return int(resource("DeliveriesQueue")["Properties"]["RedrivePolicy"]["maxReceiveCount"])


def test_the_budget_covers_two_receives_per_attempt_with_room_for_duplicates() -> None:
    assert max_receive_count() >= 2 * Settings().max_attempts + 10


def test_an_active_delivery_is_indexed_before_its_message_can_be_moved() -> None:
    assert Settings().max_attempts < AT_RISK_RECEIVE_COUNT < max_receive_count() - 10
