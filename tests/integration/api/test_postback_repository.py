"""PostbackRepository against moto: the quota transaction, optimistic concurrency, full reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from moto import mock_aws

from functions.core.model import Postback, Scope, format_timestamp, new_postback_id, utc_now
from functions.storage.models import PostbackModel
from functions.storage.postbacks import (
    PostbackGone,
    PostbackRepository,
    QuotaExceeded,
    VersionConflict,
    quota_key,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def repository() -> Iterator[PostbackRepository]:
    with mock_aws():
        PostbackModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        yield PostbackRepository()


def postback(affiliate_id: str = "aff-a", **overrides: object) -> Postback:
    now = format_timestamp(utc_now())
    values: dict[str, object] = {
        "id": new_postback_id(),
        "affiliate_id": affiliate_id,
        "scope": Scope.GLOBAL,
        "included_offer_ids": (),
        "excluded_offer_ids": ("offer-7",),
        "conversion_types": ("sale",),
        "conversion_statuses": ("approved",),
        "url": "https://tracker.example.com/cb",
        "enabled": True,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    values.update(overrides)
    return Postback(**values)  # type: ignore[arg-type]


def test_created_postback_reads_back_identically(repository: PostbackRepository) -> None:
    created = repository.create(postback(), limit=10)
    assert repository.get(created.id) == created
    assert created.version == 1


def test_creates_beyond_the_limit_are_refused(repository: PostbackRepository) -> None:
    outcomes = []
    for _ in range(5):
        try:
            repository.create(postback(), limit=3)
            outcomes.append(True)
        except QuotaExceeded:
            outcomes.append(False)
    assert outcomes == [True, True, True, False, False]
    assert len(repository.list_for_affiliate("aff-a")) == 3
    assert repository.count_for_affiliate("aff-a") == 3


def test_the_limit_is_enforced_by_the_quota_item_inside_the_write(repository: PostbackRepository) -> None:
    # The check is a condition on the quota item evaluated by DynamoDB in the same transaction
    # as the put (not a count read before it), so concurrent creates cannot both pass it.
    # moto does not serialise concurrent requests, so this is shown with the counter alone.
    PostbackModel(quota_key("aff-a"), postback_count=3).save()
    with pytest.raises(QuotaExceeded):
        repository.create(postback(), limit=3)
    assert repository.list_for_affiliate("aff-a") == []
    assert repository.count_for_affiliate("aff-a") == 3


def test_delete_releases_the_quota_slot(repository: PostbackRepository) -> None:
    first = repository.create(postback(), limit=1)
    with pytest.raises(QuotaExceeded):
        repository.create(postback(), limit=1)
    repository.delete(first)
    assert repository.get(first.id) is None
    repository.create(postback(), limit=1)
    with pytest.raises(PostbackGone):
        repository.delete(first)
    assert repository.count_for_affiliate("aff-a") == 1


def test_update_with_a_stale_version_conflicts(repository: PostbackRepository) -> None:
    created = repository.create(postback(), limit=10)
    changed = repository.update(replace(created, enabled=False), expected_version=1)
    assert changed.version == 2 and changed.enabled is False
    with pytest.raises(VersionConflict):
        repository.update(replace(created, url="https://other.example.com/"), expected_version=1)
    assert repository.get(created.id) == changed


def test_update_of_a_deleted_postback_is_gone(repository: PostbackRepository) -> None:
    created = repository.create(postback(), limit=10)
    repository.delete(created)
    with pytest.raises(PostbackGone):
        repository.update(created, expected_version=1)
    assert repository.get(created.id) is None


def test_update_keeps_health_written_by_the_sender(repository: PostbackRepository) -> None:
    created = repository.create(postback(), limit=10)
    item = PostbackModel.get(created.id)
    item.update(
        actions=[PostbackModel.consecutive_failures.set(3), PostbackModel.last_failure_reason.set("gone")],
        add_version_condition=False,
    )
    current = repository.get(created.id)
    assert current is not None
    changed = repository.update(replace(created, enabled=False), expected_version=current.version)
    assert changed.consecutive_failures == 3 and changed.last_failure_reason == "gone"


def test_list_for_affiliate_reads_every_page_newest_first(repository: PostbackRepository) -> None:
    created = [
        repository.create(postback(created_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000000Z"), limit=500)
        for i in range(105)
    ]
    repository.create(postback("aff-b"), limit=500)
    listed = repository.list_for_affiliate("aff-a")
    assert [p.id for p in listed] == [p.id for p in reversed(created)]
    assert repository.list_for_affiliate("aff-nobody") == []
