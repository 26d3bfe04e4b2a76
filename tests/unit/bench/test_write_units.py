"""Benchmark 7's billing of the writes of one delivery."""

from __future__ import annotations

import pytest

from bench.write_units import Write, billed_writes

pytestmark = pytest.mark.unit


def _item(size: int) -> dict[str, dict[str, str]]:
    """An item of `size` billed bytes: the name `k` (1 byte) and a string of size - 1."""
    return {"k": {"S": "x" * (size - 1)}}


def test_each_write_is_billed_per_started_kib_of_the_item_it_leaves() -> None:
    items = [
        ("create", "deliveries", "PutItem", _item(1024)),
        ("send", "deliveries", "UpdateItem", _item(1025)),
        ("send", "postbacks", "UpdateItem", _item(3000)),
    ]
    writes = billed_writes(items, "deliveries")
    assert [(w.step, w.size_after, w.units) for w in writes] == [("create", 1024, 1), ("send", 1025, 2)]


def test_an_update_is_billed_on_the_larger_of_the_item_before_and_after() -> None:
    items = [("create", "t", "PutItem", _item(1500)), ("send", "t", "UpdateItem", _item(900))]
    shrinking = billed_writes(items, "t")[1]
    assert (shrinking.size_before, shrinking.size_after, shrinking.units) == (1500, 900, 2)


def test_a_put_replaces_the_item_so_only_its_own_size_counts() -> None:
    assert Write("create", "PutItem", 0, 10).units == 1
