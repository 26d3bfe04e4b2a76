from __future__ import annotations

import pytest

from functions.core.model import Postback
from functions.evaluator.rules_cache import RulesCache
from tests.support.conversions import postback

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingSource:
    def __init__(self) -> None:
        self.reads: list[str] = []

    def load(self, affiliate_id: str) -> list[Postback]:
        self.reads.append(affiliate_id)
        return [postback(f"pb_{affiliate_id}_{len(self.reads)}", affiliate_id)]


def test_second_read_within_the_ttl_comes_from_the_cache() -> None:
    clock, source = Clock(), CountingSource()
    cache = RulesCache(5, clock=clock)
    first = cache.get("aff-1", source.load)
    clock.now += 4.9
    assert cache.get("aff-1", source.load) == first
    assert source.reads == ["aff-1"]


def test_read_after_the_ttl_goes_to_the_source_again() -> None:
    clock, source = Clock(), CountingSource()
    cache = RulesCache(5, clock=clock)
    first = cache.get("aff-1", source.load)
    clock.now += 5
    assert cache.get("aff-1", source.load) != first
    assert source.reads == ["aff-1", "aff-1"]


def test_zero_ttl_disables_caching() -> None:
    source = CountingSource()
    cache = RulesCache(0, clock=Clock())
    cache.get("aff-1", source.load)
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1", "aff-1"]
    assert len(cache) == 0


def test_least_recently_used_affiliate_is_evicted_beyond_the_bound() -> None:
    source = CountingSource()
    cache = RulesCache(60, max_affiliates=2, clock=Clock())
    cache.get("aff-1", source.load)
    cache.get("aff-2", source.load)
    cache.get("aff-1", source.load)  # aff-1 is now the most recent
    cache.get("aff-3", source.load)  # evicts aff-2
    cache.get("aff-1", source.load)
    cache.get("aff-2", source.load)
    assert source.reads == ["aff-1", "aff-2", "aff-3", "aff-2"]
    assert len(cache) == 2


def test_a_failed_read_is_not_cached() -> None:
    cache = RulesCache(60, clock=Clock())

    def failing(_affiliate_id: str) -> list[Postback]:
        raise TimeoutError("read timed out")

    with pytest.raises(TimeoutError):
        cache.get("aff-1", failing)
    source = CountingSource()
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1"]
