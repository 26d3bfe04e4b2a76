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


# Validation by the rules version (`observe`): entries outlive the TTL while the version holds.

WALL = 1_800_000_000.0


class WallClock:
    def __init__(self) -> None:
        self.now = WALL

    def __call__(self) -> float:
        return self.now


def versioned(ttl: float = 5, **kwargs: object) -> tuple[RulesCache, Clock, WallClock, CountingSource]:
    clock, wall = Clock(), WallClock()
    return RulesCache(ttl, clock=clock, wall_clock=wall, **kwargs), clock, wall, CountingSource()  # type: ignore[arg-type]


def test_an_entry_outlives_the_ttl_while_the_version_is_unchanged() -> None:
    cache, clock, wall, source = versioned()
    cache.observe(3, WALL - 60)
    first = cache.get("aff-1", source.load)
    clock.now += 59
    wall.now += 59
    cache.observe(3, WALL - 60)
    assert cache.get("aff-1", source.load) == first
    assert source.reads == ["aff-1"]


def test_a_fresh_table_is_version_0_and_settled() -> None:
    cache, clock, _, source = versioned()
    cache.observe(0, None)
    cache.get("aff-1", source.load)
    clock.now += 59
    cache.observe(0, None)
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1"]


def test_a_new_version_drops_every_entry() -> None:
    cache, _, _, source = versioned()
    cache.observe(3, WALL - 60)
    cache.get("aff-1", source.load)
    cache.get("aff-2", source.load)
    cache.observe(4, WALL - 10)
    assert len(cache) == 0
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1", "aff-2", "aff-1"]


def test_an_entry_read_within_the_settle_window_keeps_only_the_ttl() -> None:
    cache, clock, wall, source = versioned(settle_seconds=2)
    cache.observe(4, WALL - 1.5)  # changed 1.5 s ago: the index may not show it yet
    cache.get("aff-1", source.load)
    clock.now += 4.9
    cache.observe(4, WALL - 1.5)
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1"]
    clock.now += 0.1
    wall.now += 5
    cache.observe(4, WALL - 1.5)  # now settled: what is read now is kept
    cache.get("aff-1", source.load)
    clock.now += 59
    cache.observe(4, WALL - 1.5)
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1", "aff-1"]


def test_a_change_stamped_ahead_of_this_clock_counts_as_not_settled() -> None:
    cache, clock, _, source = versioned(settle_seconds=2)
    cache.observe(5, WALL + 1)  # the API's clock is ahead of ours
    cache.get("aff-1", source.load)
    clock.now += 5
    cache.observe(5, WALL + 1)
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1", "aff-1"]


def test_an_unknown_version_falls_back_to_the_ttl_and_keeps_durable_entries() -> None:
    cache, clock, _, source = versioned()
    cache.observe(3, WALL - 60)
    cache.get("aff-1", source.load)  # durable under version 3
    cache.get("aff-2", source.load)
    clock.now += 4
    cache.observe(None)
    assert cache.version is None
    cache.get("aff-1", source.load)  # young: used
    clock.now += 2
    cache.get("aff-1", source.load)  # 6 s old and no version to vouch for it: read again
    assert source.reads == ["aff-1", "aff-2", "aff-1"]
    clock.now += 50
    cache.observe(3, WALL - 60)
    cache.get("aff-2", source.load)  # read under version 3: still kept
    cache.get("aff-1", source.load)  # read while the version was unknown: read again
    assert source.reads == ["aff-1", "aff-2", "aff-1", "aff-1"]


def test_zero_ttl_disables_caching_whatever_the_version() -> None:
    cache, _, _, source = versioned(ttl=0)
    assert not cache.enabled
    cache.observe(1, None)
    cache.get("aff-1", source.load)
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1", "aff-1"]
    assert len(cache) == 0


def test_durable_entries_are_still_bounded_by_lru_eviction() -> None:
    cache, clock, _, source = versioned(max_affiliates=2)
    cache.observe(1, None)
    for affiliate in ("aff-1", "aff-2", "aff-3"):
        cache.get(affiliate, source.load)
    clock.now += 30
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1", "aff-2", "aff-3", "aff-1"]
    assert len(cache) == 2


def test_no_entry_is_served_past_the_max_age_whatever_the_version() -> None:
    """An entry read while the index lagged must not be served until the next edit (hours when quiet)."""
    cache, clock, _, source = versioned(max_age_seconds=60)
    cache.observe(3, WALL - 600)  # settled long ago: the entry is durable
    cache.get("aff-1", source.load)
    clock.now += 59.9
    cache.observe(3, WALL - 600)
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1"]
    clock.now += 0.1
    cache.observe(3, WALL - 600)
    cache.get("aff-1", source.load)  # same version, but a minute old: read again
    clock.now += 3 * 3600
    cache.observe(3, WALL - 600)
    cache.get("aff-1", source.load)
    assert source.reads == ["aff-1", "aff-1", "aff-1"]


def test_the_max_age_is_at_least_the_ttl_and_bounds_the_staleness() -> None:
    cache, _, _, _ = versioned(ttl=120, max_age_seconds=60, settle_seconds=2)
    assert cache.max_staleness_seconds == 122
    disabled, _, _, _ = versioned(ttl=0, settle_seconds=2)
    assert disabled.max_staleness_seconds == 2
