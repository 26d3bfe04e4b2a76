"""The benchmark workload: postbacks per affiliate, the record mix and the request floor."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bench.workload import (
    FIRING_KINDS,
    POSTBACKS_PER_AFFILIATE,
    RecordGenerator,
    all_postbacks,
    floor_for_batch,
    postbacks_of,
)
from functions.core.model import Scope

pytestmark = pytest.mark.unit


def test_every_affiliate_has_twenty_postbacks_with_distinct_ids() -> None:
    postbacks = all_postbacks(affiliates=50)
    assert len(postbacks) == 50 * POSTBACKS_PER_AFFILIATE
    assert len({postback.id for postback in postbacks}) == len(postbacks)


def test_offer_scoped_postbacks_name_one_offer_and_global_ones_none() -> None:
    for postback in postbacks_of(3):
        if postback.scope is Scope.OFFER:
            assert len(postback.included_offer_ids) == 1
        else:
            assert postback.included_offer_ids == ()


def test_about_thirty_percent_of_records_are_firing_status_changes() -> None:
    generator = RecordGenerator(random.Random(11))
    kinds = Counter(generator.next(0.0).kind for _ in range(5000))
    firing = sum(count for kind, count in kinds.items() if kind in FIRING_KINDS)
    assert firing / 5000 == pytest.approx(0.30, abs=0.03)


def test_firing_records_change_the_status_and_corrections_do_not() -> None:
    generator = RecordGenerator(random.Random(12))
    for _ in range(500):
        generated = generator.next(0.0)
        images = generated.record["dynamodb"]
        new_status = images["NewImage"]["status"]["S"]
        old_status = images.get("OldImage", {}).get("status", {}).get("S")
        if generated.kind in FIRING_KINDS:
            assert old_status == "pending" and new_status in ("approved", "rejected")
        if generated.kind == "correction":
            assert old_status == new_status
        if generated.kind == "insert":
            assert generated.record["eventName"] == "INSERT" and "OldImage" not in images


def test_records_have_unique_conversion_ids_and_lambda_fields() -> None:
    generator = RecordGenerator(random.Random(13))
    records = [generated.record for generated in generator.batch(200, 1_700_000_000.0)]
    ids = {record["dynamodb"]["Keys"]["conversion_id"]["S"] for record in records}
    assert len(ids) == 200
    assert all(record["eventSourceARN"] and record["eventSource"] == "aws:dynamodb" for record in records)
    assert all(record["dynamodb"]["ApproximateCreationDateTime"] == 1_700_000_000.0 for record in records)


def test_affiliates_are_skewed_towards_the_first_ranks() -> None:
    generator = RecordGenerator(random.Random(14))
    ranks = Counter(generator.next(0.0).affiliate_rank for _ in range(5000))
    assert ranks[1] > ranks[10] > 0
    assert len(ranks) < 1000


def test_floor_has_one_query_per_affiliate_one_write_per_delivery_and_a_send_per_ten() -> None:
    floor = floor_for_batch(distinct_affiliates=40, deliveries=31)
    assert (floor.queries, floor.writes, floor.sends, floor.total) == (40, 31, 4, 75)
