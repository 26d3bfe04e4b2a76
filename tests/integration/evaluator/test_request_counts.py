"""The AWS requests of a batch are at the floor: one postbacks Query per distinct affiliate, one
PutItem per delivery, one SendMessageBatch per ten deliveries, plus one GetItem of the rules
version; the rules cache removes the Query while the version is unchanged (see
test_rules_version.py for changes)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.evaluator.conftest import Stack
from tests.support.conversions import conversion, postback
from tests.support.streams import StreamBuilder

pytestmark = pytest.mark.integration


def skewed_batch(stream: StreamBuilder, size: int, affiliates: int, prefix: str = "c") -> list[dict[str, Any]]:
    """Most records from a few affiliates, as in real traffic."""
    records = []
    for number in range(size):
        affiliate = f"aff-{min(number % 7, number % affiliates)}"
        records.append(stream.insert(conversion(conversion_id=f"{prefix}-{number}", affiliate_id=affiliate)))
    return records


def test_a_batch_makes_one_query_per_affiliate_one_put_per_delivery_and_one_send_per_ten(
    stack: Stack, counted: Callable[[], Counter[str]]
) -> None:
    for number in range(12):
        stack.add_postback(postback(f"pb_{number}", f"aff-{number}"))
    stack.add_postback(postback("pb_extra", "aff-0"))
    counted()
    records = skewed_batch(StreamBuilder(), 100, 12)
    affiliates = {record["dynamodb"]["NewImage"]["affiliate_id"]["S"] for record in records}
    deliveries = sum(2 if r["dynamodb"]["NewImage"]["affiliate_id"]["S"] == "aff-0" else 1 for r in records)

    assert stack.invoke(records) == {"batchItemFailures": []}

    counts = counted()
    assert counts["Query"] == len(affiliates)
    assert counts["PutItem"] == deliveries
    assert counts["SendMessageBatch"] == math.ceil(deliveries / 10)
    assert counts["GetItem"] == 1  # the rules version, once per batch
    assert set(counts) == {"Query", "PutItem", "SendMessageBatch", "GetItem"}
    assert len(stack.deliveries()) == deliveries


def test_second_batch_within_the_rules_cache_ttl_makes_no_query(
    stack: Stack, counted: Callable[[], Counter[str]]
) -> None:
    stack.add_postback(postback("pb_1", "aff-1"))
    stream = StreamBuilder()
    counted()
    stack.invoke([stream.insert(conversion(conversion_id="c-1", affiliate_id="aff-1"))])
    assert counted()["Query"] == 1
    stack.rules_clock.now += stack.settings.rules_cache_seconds - 0.1
    stack.invoke([stream.insert(conversion(conversion_id="c-2", affiliate_id="aff-1"))])
    second = counted()
    assert second["Query"] == 0
    assert second["PutItem"] == 1


def test_batch_after_the_ttl_with_an_unchanged_rules_version_makes_no_query(
    stack: Stack, counted: Callable[[], Counter[str]]
) -> None:
    stack.add_postback(postback("pb_1", "aff-1"))
    stream = StreamBuilder()
    stack.invoke([stream.insert(conversion(conversion_id="c-1", affiliate_id="aff-1"))])
    counted()
    stack.rules_clock.now += 10 * stack.settings.rules_cache_seconds  # past the TTL, within the max age
    stack.invoke([stream.insert(conversion(conversion_id="c-2", affiliate_id="aff-1"))])
    counts = counted()
    assert (counts["Query"], counts["GetItem"], counts["PutItem"]) == (0, 1, 1)


def test_retried_batch_reads_existing_deliveries_once_each(stack: Stack, counted: Callable[[], Counter[str]]) -> None:
    stack.add_postback(postback("pb_1", "aff-1"))
    stream = StreamBuilder()
    records = [stream.insert(conversion(conversion_id=f"c-{n}", affiliate_id="aff-1")) for n in range(3)]
    stack.invoke(records)
    counted()
    stack.invoke(records)
    counts = counted()
    # Each refused write costs one consistent read to learn whether the delivery still needs sending
    # (3 GetItem), plus the rules version (1).
    assert (counts["Query"], counts["PutItem"], counts["GetItem"], counts["SendMessageBatch"]) == (0, 3, 4, 1)
