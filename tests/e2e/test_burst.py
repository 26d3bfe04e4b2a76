"""A burst of 1,000 conversions across 100 affiliates: every expected GET arrives exactly once."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from local.receiver import Receiver
from tests.e2e.harness import Stack

pytestmark = pytest.mark.e2e

AFFILIATES = 100
CONVERSIONS = 1000
TIMEOUT = 150.0


def test_burst_of_1000_conversions_across_100_affiliates_is_delivered_exactly_once(
    stack: Stack, receiver: Receiver
) -> None:
    began = time.monotonic()
    run = uuid.uuid4().hex[:8]
    affiliates = [f"burst-{run}-{n:03d}" for n in range(AFFILIATES)]
    for affiliate in affiliates:
        stack.create_postback(affiliate, receiver.url("/burst?a={affiliateId}&c={conversionId}&d={deliveryId}"))
    print(f"{AFFILIATES} postbacks created in {time.monotonic() - began:.1f} s")
    expected = {f"{run}-conv-{n:04d}": affiliates[n % AFFILIATES] for n in range(CONVERSIONS)}
    items = list(expected.items())
    for start in range(0, len(items), 25):
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "conversion_id": {"S": conversion_id},
                        "affiliate_id": {"S": affiliate},
                        "offer_id": {"S": "offer-1"},
                        "conversion_type": {"S": "sale"},
                        "status": {"S": "approved"},
                    }
                }
            }
            for conversion_id, affiliate in items[start : start + 25]
        ]
        response = stack.dynamodb.batch_write_item(RequestItems={"conversions": requests})
        assert not response.get("UnprocessedItems")
    started = time.monotonic()
    receiver.wait_for(CONVERSIONS, route="/burst", timeout=TIMEOUT)
    time.sleep(2.0)  # anything sent twice would arrive now
    hits = receiver.requests("/burst")
    counts = Counter(hit.query["c"] for hit in hits)
    assert set(counts) == set(expected)
    assert [c for c, n in counts.items() if n > 1] == []
    assert all(hit.query["a"] == expected[hit.query["c"]] for hit in hits)
    assert len({hit.query["d"] for hit in hits}) == CONVERSIONS
    print(f"1,000 GETs in {time.monotonic() - started:.1f} s")
