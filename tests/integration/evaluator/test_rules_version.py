"""The rules cache validated by the postbacks table's rules version, through the real handler on
moto: one version GetItem per batch; no Query while the version is unchanged; a create or an edit
through the repository is seen by the next batch; an entry read within the settle window after a
change is read again after the TTL; a failed version read falls back to the TTL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from functions.core.model import delivery_id_for
from functions.evaluator.rules_cache import SETTLE_SECONDS
from functions.storage.models import PostbackModel
from functions.storage.postbacks import PostbackRepository
from tests.integration.evaluator.conftest import Stack
from tests.support.conversions import conversion, postback
from tests.support.streams import StreamBuilder

pytestmark = pytest.mark.integration

# After the default postbacks' `updated_at` and before the stream's change time (not retroactive).
EDITED_AT = "2025-12-31T23:30:00.000000Z"


def fired(stack: Stack) -> set[str]:
    return set(stack.deliveries())


def test_unchanged_version_one_getitem_and_no_query_per_batch(
    stack: Stack, counted: Callable[[], Counter[str]]
) -> None:
    stack.add_postback(postback("pb_1", "aff-1"))
    stream = StreamBuilder()
    stack.invoke([stream.insert(conversion(conversion_id="c-1", affiliate_id="aff-1"))])
    assert counted()["Query"] == 1
    for number in range(2, 5):
        stack.rules_clock.now += 2 * stack.settings.rules_cache_seconds
        stack.invoke([stream.insert(conversion(conversion_id=f"c-{number}", affiliate_id="aff-1"))])
        counts = counted()
        assert (counts["GetItem"], counts["Query"], counts["PutItem"]) == (1, 0, 1)
    assert fired(stack) == {delivery_id_for("pb_1", f"c-{n}", "approved") for n in range(1, 5)}


def test_a_batch_without_status_changes_reads_no_version(stack: Stack, counted: Callable[[], Counter[str]]) -> None:
    stream = StreamBuilder()
    old = conversion(conversion_id="c-1", affiliate_id="aff-1", status="pending", payout=1)
    stack.invoke([stream.modify(old, {**old, "payout": 2})])
    assert counted() == Counter()


def test_a_new_postback_created_through_the_repository_fires_from_the_next_batch(
    stack: Stack, counted: Callable[[], Counter[str]]
) -> None:
    stack.add_postback(postback("pb_1", "aff-1"))
    stream = StreamBuilder()
    stack.invoke([stream.insert(conversion(conversion_id="c-1", affiliate_id="aff-1"))])
    PostbackRepository().create(postback("pb_2", "aff-1"), limit=100)
    counted()
    stack.invoke([stream.insert(conversion(conversion_id="c-2", affiliate_id="aff-1"))])
    counts = counted()
    assert (counts["GetItem"], counts["Query"], counts["PutItem"]) == (1, 1, 2)
    assert delivery_id_for("pb_2", "c-2", "approved") in fired(stack)


def test_an_edit_through_the_repository_applies_to_the_next_batch(
    stack: Stack, counted: Callable[[], Counter[str]]
) -> None:
    repository = PostbackRepository()
    created = repository.create(postback("pb_1", "aff-1", statuses=("approved",)), limit=100)
    stream = StreamBuilder()
    stack.invoke([stream.insert(conversion(conversion_id="c-1", affiliate_id="aff-1"))])
    repository.update(replace(created, conversion_statuses=("pending",), updated_at=EDITED_AT), expected_version=1)
    counted()
    stack.invoke(
        [
            stream.insert(conversion(conversion_id="c-2", affiliate_id="aff-1", status="pending")),
            stream.insert(conversion(conversion_id="c-3", affiliate_id="aff-1", status="approved")),
        ]
    )
    assert counted()["Query"] == 1
    assert fired(stack) == {
        delivery_id_for("pb_1", "c-1", "approved"),
        delivery_id_for("pb_1", "c-2", "pending"),
    }


def test_an_entry_read_within_the_settle_window_is_read_again_after_the_ttl(
    stack: Stack, counted: Callable[[], Counter[str]]
) -> None:
    ttl = stack.settings.rules_cache_seconds
    PostbackRepository().create(postback("pb_1", "aff-1"), limit=100)  # the version changes now
    stream = StreamBuilder()
    numbers = iter(range(1, 100))

    def queries_of_next_batch() -> int:
        counted()
        stack.invoke([stream.insert(conversion(conversion_id=f"c-{next(numbers)}", affiliate_id="aff-1"))])
        return counted()["Query"]

    assert queries_of_next_batch() == 1  # read right after the change: trusted for the TTL only
    stack.rules_clock.now += ttl - 0.1
    assert queries_of_next_batch() == 0
    stack.rules_clock.now += 0.1
    assert queries_of_next_batch() == 1  # the TTL is over: read again, still within the window
    stack.wall_clock.ahead = SETTLE_SECONDS  # now past the window
    stack.rules_clock.now += ttl
    assert queries_of_next_batch() == 1  # read again, after the window: kept while the version holds
    stack.rules_clock.now += 10 * ttl  # past the TTL, within the max age
    assert queries_of_next_batch() == 0


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


def test_a_failed_version_read_falls_back_to_the_ttl_and_fails_nothing(
    stack: Stack, counted: Callable[[], Counter[str]]
) -> None:
    stack.add_postback(postback("pb_1", "aff-1"))
    stream = StreamBuilder()
    stack.invoke([stream.insert(conversion(conversion_id="c-1", affiliate_id="aff-1"))])
    client = PostbackModel._get_connection().connection.client

    def throttled(**_: Any) -> Any:
        return _Response(400), {
            "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected throttling"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    client.meta.events.register("before-call.dynamodb.GetItem", throttled)
    try:
        counted()
        stack.rules_clock.now += stack.settings.rules_cache_seconds - 0.1
        assert stack.invoke([stream.insert(conversion(conversion_id="c-2", affiliate_id="aff-1"))]) == {
            "batchItemFailures": []
        }
        assert counted()["Query"] == 0  # within the TTL
        stack.rules_clock.now += 0.1
        assert stack.invoke([stream.insert(conversion(conversion_id="c-3", affiliate_id="aff-1"))]) == {
            "batchItemFailures": []
        }
        assert counted()["Query"] == 1  # past the TTL, with no version to vouch for the entry
    finally:
        client.meta.events.unregister("before-call.dynamodb.GetItem", throttled)
    assert fired(stack) == {delivery_id_for("pb_1", f"c-{n}", "approved") for n in (1, 2, 3)}
    stack.rules_clock.now += 100 * stack.settings.rules_cache_seconds
    stack.invoke([stream.insert(conversion(conversion_id="c-4", affiliate_id="aff-1"))])
    counts = counted()
    assert (counts["GetItem"], counts["Query"]) == (1, 1)  # version known again; the fallback entry is replaced
    stack.rules_clock.now += 10 * stack.settings.rules_cache_seconds
    stack.invoke([stream.insert(conversion(conversion_id="c-5", affiliate_id="aff-1"))])
    assert counted()["Query"] == 0
