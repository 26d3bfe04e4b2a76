"""The sender signs each attempt with the secret of its batch read, and never stores what it sent."""

from __future__ import annotations

import dataclasses

import pytest

from functions.core.model import DeliveryState
from functions.core.signing import SigningSecret, signature
from tests.support.fakes import InMemoryDeliveries, InMemoryPostbacks, InMemoryQueue
from tests.unit.sender.test_batch import NOW, FakeHttp, add, messages, postback_store, sender

pytestmark = pytest.mark.unit

SECRET = "pbsec_unit-test-secret"


def signed_store() -> InMemoryPostbacks:
    store = postback_store()
    store.postbacks = {
        key: dataclasses.replace(value, signing_secret=SigningSecret(SECRET)) for key, value in store.postbacks.items()
    }
    return store


def test_each_attempt_is_signed_with_the_batch_reads_secret_and_the_record_keeps_the_template() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "d1", "t.example")
    stored = "https://t.example/cb?d=d1&ts={timestamp}&sig={signature}"
    deliveries.records["d1"] = dataclasses.replace(deliveries.records["d1"], url=stored)
    http, store = FakeHttp(delay=0), signed_store()

    failed = sender(deliveries, http, InMemoryQueue(), postbacks=store).process_batch(messages(["d1"]))

    assert failed == []
    message = f"/cb?d=d1&ts={int(NOW.timestamp())}&sig="
    assert http.calls == [f"https://t.example{message}{signature(SECRET, message)}"]
    record = deliveries.records["d1"]
    assert record.state is DeliveryState.DELIVERED and record.url == stored
    assert store.calls["get_many"] == 1 and store.calls["get"] == 0  # the secret came with the batch read


def test_a_signed_url_whose_postback_has_no_secret_is_not_sent() -> None:
    deliveries = InMemoryDeliveries()
    add(deliveries, "d1", "t.example")
    deliveries.records["d1"] = dataclasses.replace(deliveries.records["d1"], url="https://t.example/cb?sig={signature}")
    http = FakeHttp(delay=0)

    failed = sender(deliveries, http, InMemoryQueue()).process_batch(messages(["d1"]))

    assert failed == ["m-d1"] and http.calls == []
