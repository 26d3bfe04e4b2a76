"""The test-fire limit (docs/contract.md §5) and `host_paused_until` on the postback resource, through the API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from functions import bootstrap
from functions.core.host_pause import host_key
from functions.storage.hosts import HostRepository
from tests.support.api_client import AFF_A, body_of

from .conftest import Receiver
from .test_delivery_routes import Api, create_postback
from .test_delivery_routes import api as api  # the fixture

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def test_test_fires_beyond_the_limit_are_a_429_with_retry_after(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTBACKS_TEST_FIRES_PER_MINUTE", "3")
    bootstrap.reset()
    postback = create_postback(api, receiver.url("/cb?c={conversionId}"))
    other = create_postback(api, receiver.url("/other?c={conversionId}"))
    path = f"/postbacks/{postback['id']}/test"

    responses = [api.request("POST", path, AFF_A) for _ in range(7)]

    statuses = [response.status_code for response in responses]
    # Three per minute: at most 3 + 3 succeed even if a new minute begins during the run.
    assert set(statuses) == {200, 429} and 3 <= statuses.count(200) <= 6
    limited = next(response for response in responses if response.status_code == 429)
    assert limited.headers["Content-Type"] == "application/problem+json"
    problem = body_of(limited)
    assert problem["status"] == 429 and "test fires" in problem["detail"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # A refused fire sends nothing.
    assert len(receiver.hits) == statuses.count(200)
    # The limit is per postback.
    assert api.request("POST", f"/postbacks/{other['id']}/test", AFF_A).status_code == 200


def test_a_postback_shows_its_hosts_pause(api: Api, receiver: Receiver) -> None:
    postback = create_postback(api, receiver.url("/cb?c={conversionId}"))
    shown = body_of(api.request("GET", f"/postbacks/{postback['id']}", AFF_A))
    assert shown["host_paused_until"] is None

    host = host_key(postback["url"])
    assert host is not None
    repository = HostRepository()
    state = repository.record_failure(host, "http_500", datetime.now(UTC))
    repository.pause(host, time.time() + 60, state.pauses, time.time())

    shown = body_of(api.request("GET", f"/postbacks/{postback['id']}", AFF_A))
    listed = json.loads(api.request("GET", "/postbacks", AFF_A).body)["items"]
    assert shown["host_paused_until"] is not None and shown["host_paused_until"].endswith("Z")
    assert [item["host_paused_until"] for item in listed] == [shown["host_paused_until"]]
