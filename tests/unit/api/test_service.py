"""PostbackService with an in-memory repository: authorization and concurrency rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from functions.api.service import (
    Forbidden,
    LimitReached,
    PostbackNotFound,
    PostbackService,
    PreconditionFailed,
    Principal,
    Role,
)
from functions.core.egress import EgressPolicy
from functions.core.model import Postback
from functions.core.validation import ValidationFailed
from functions.settings import Settings
from functions.storage.postbacks import PostbackGone, PostbackPage, Predicate, QuotaExceeded, VersionConflict

pytestmark = pytest.mark.unit

ADMIN = Principal("root", Role.ADMIN, None)
AFF_A = Principal("a", Role.AFFILIATE, "aff-a")
AFF_B = Principal("b", Role.AFFILIATE, "aff-b")
# The default settings' guard: public targets on the default ports.
EGRESS = EgressPolicy(allowed_ports=Settings().allowed_ports)
BODY = {
    "conversion_types": ["sale"],
    "conversion_statuses": ["approved"],
    "url": "https://tracker.example.com/cb?c={cid}",
}


class InMemoryPostbacks:
    """Holds postbacks like the table does; `conflicts` makes the next N updates lose a race."""

    def __init__(self) -> None:
        self.items: dict[str, Postback] = {}
        self.conflicts = 0

    def get(self, postback_id: str) -> Postback | None:
        return self.items.get(postback_id)

    def create(self, postback: Postback, limit: int) -> Postback:
        if sum(1 for p in self.items.values() if p.affiliate_id == postback.affiliate_id) >= limit:
            raise QuotaExceeded(postback.affiliate_id, limit)
        self.items[postback.id] = postback
        return postback

    def update(self, postback: Postback, expected_version: int) -> Postback:
        stored = self.items.get(postback.id)
        if stored is None:
            raise PostbackGone(postback.id)
        if self.conflicts:
            self.conflicts -= 1
            self.items[postback.id] = replace(stored, version=stored.version + 1)
            raise VersionConflict(postback.id)
        if stored.version != expected_version:
            raise VersionConflict(postback.id)
        saved = replace(postback, version=expected_version + 1)
        self.items[postback.id] = saved
        return saved

    def delete(self, postback: Postback) -> None:
        if self.items.pop(postback.id, None) is None:
            raise PostbackGone(postback.id)

    def page_for_affiliate(
        self, affiliate_id: str, limit: int, start_key: dict[str, str] | None, predicate: Predicate | None = None
    ) -> PostbackPage:
        mine = [p for p in self.items.values() if p.affiliate_id == affiliate_id and (not predicate or predicate(p))]
        return PostbackPage(sorted(mine, key=lambda p: p.created_at, reverse=True)[:limit], None)

    def page_all(
        self, limit: int, start_key: dict[str, str] | None, predicate: Predicate | None = None
    ) -> PostbackPage:
        everyone = [p for p in self.items.values() if not predicate or predicate(p)]
        return PostbackPage(sorted(everyone, key=lambda p: p.created_at, reverse=True)[:limit], None)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store() -> InMemoryPostbacks:
    return InMemoryPostbacks()


@pytest.fixture
def service(store: InMemoryPostbacks) -> PostbackService:
    counter = iter(range(1_000_000))
    return PostbackService(
        store, Settings(max_postbacks_per_affiliate=2), Clock(), lambda: f"pb_{next(counter):04d}", egress=EGRESS
    )


def test_create_uses_defaults_and_the_injected_clock(service: PostbackService) -> None:
    created = service.create(AFF_A, dict(BODY))
    assert created.id == "pb_0000" and created.affiliate_id == "aff-a"
    assert created.scope == "global" and created.enabled is True and created.version == 1
    assert created.created_at == created.updated_at == "2026-11-24T10:00:01.000000Z"


def test_create_past_the_limit_is_refused(service: PostbackService) -> None:
    service.create(AFF_A, dict(BODY))
    service.create(AFF_A, dict(BODY))
    with pytest.raises(LimitReached):
        service.create(AFF_A, dict(BODY))


def test_affiliate_cannot_create_for_another(service: PostbackService, store: InMemoryPostbacks) -> None:
    with pytest.raises(Forbidden):
        service.create(AFF_A, {**BODY, "affiliate_id": "aff-b"})
    assert store.items == {}


def test_other_affiliates_postbacks_are_not_found(service: PostbackService) -> None:
    created = service.create(AFF_A, dict(BODY))
    with pytest.raises(PostbackNotFound):
        service.get(AFF_B, created.id)
    assert service.get(ADMIN, created.id) == created


def test_update_without_if_match_retries_a_lost_race(service: PostbackService, store: InMemoryPostbacks) -> None:
    created = service.create(AFF_A, dict(BODY))
    store.conflicts = 2
    updated = service.update(AFF_A, created.id, {"enabled": False}, None)
    assert updated.enabled is False and updated.version == 4


def test_update_with_if_match_does_not_retry_a_lost_race(service: PostbackService, store: InMemoryPostbacks) -> None:
    created = service.create(AFF_A, dict(BODY))
    store.conflicts = 1
    with pytest.raises(PreconditionFailed):
        service.update(AFF_A, created.id, {"enabled": False}, '"1"')
    assert store.items[created.id].enabled is True


def test_update_that_keeps_losing_gives_up(service: PostbackService, store: InMemoryPostbacks) -> None:
    created = service.create(AFF_A, dict(BODY))
    store.conflicts = 100
    with pytest.raises(PreconditionFailed):
        service.update(AFF_A, created.id, {"enabled": False}, None)


def test_update_of_a_postback_deleted_meanwhile_is_not_found(
    service: PostbackService, store: InMemoryPostbacks
) -> None:
    created = service.create(AFF_A, dict(BODY))

    class DeletingStore(InMemoryPostbacks):
        def update(self, postback: Postback, expected_version: int) -> Postback:
            raise PostbackGone(postback.id)

    racing = DeletingStore()
    racing.items = dict(store.items)
    with pytest.raises(PostbackNotFound):
        PostbackService(racing, Settings(), egress=EGRESS).update(AFF_A, created.id, {"enabled": False}, None)


def test_update_changes_updated_at_every_time(service: PostbackService) -> None:
    created = service.create(AFF_A, dict(BODY))
    first = service.update(AFF_A, created.id, {}, None)
    second = service.update(AFF_A, created.id, {}, None)
    assert created.updated_at < first.updated_at < second.updated_at
    assert second.created_at == created.created_at


def test_rejected_update_stores_nothing(service: PostbackService, store: InMemoryPostbacks) -> None:
    created = service.create(AFF_A, dict(BODY))
    with pytest.raises(ValidationFailed) as raised:
        service.update(AFF_A, created.id, {"conversion_types": [], "enabled": "no"}, None)
    assert {e.field for e in raised.value.errors} == {"conversion_types", "enabled"}
    assert store.items[created.id] == created


def test_listing_with_an_offer_filter_uses_scope(service: PostbackService) -> None:
    covering = service.create(AFF_A, {**BODY, "scope": "offer", "included_offer_ids": ["o-1"]})
    service.create(AFF_A, {**BODY, "excluded_offer_ids": ["o-1"]})
    result = service.list(AFF_A, affiliate_id=None, offer_id="o-1", limit=None, cursor=None)
    assert result.items == [covering] and result.next_cursor is None


def test_affiliate_cannot_list_another(service: PostbackService) -> None:
    with pytest.raises(Forbidden):
        service.list(AFF_A, affiliate_id="aff-b", offer_id=None, limit=None, cursor=None)


def test_limit_and_cursor_errors_are_reported_together(service: PostbackService) -> None:
    with pytest.raises(ValidationFailed) as raised:
        service.list(ADMIN, affiliate_id=None, offer_id=None, limit="0", cursor="junk")
    assert [e.field for e in raised.value.errors] == ["limit", "cursor"]


def test_delete_twice_is_not_found(service: PostbackService) -> None:
    created = service.create(AFF_A, dict(BODY))
    service.delete(AFF_A, created.id)
    with pytest.raises(PostbackNotFound):
        service.delete(AFF_A, created.id)
