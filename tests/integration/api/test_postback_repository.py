"""PostbackRepository against moto: the quota transaction, optimistic concurrency, full reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from moto import mock_aws

from functions.core.model import Postback, format_timestamp, new_postback_id, utc_now
from functions.storage.models import RULES_VERSION_KEY, PostbackModel
from functions.storage.postback_health import PostbackHealthRepository
from functions.storage.postbacks import (
    TRANSACTION_ATTEMPTS,
    PostbackGone,
    PostbackRepository,
    QuotaExceeded,
    RulesVersion,
    StoreBusy,
    VersionConflict,
    quota_key,
)
from tests.support import conversions as support

pytestmark = pytest.mark.integration


@pytest.fixture
def repository() -> Iterator[PostbackRepository]:
    with mock_aws():
        PostbackModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        yield PostbackRepository()


def quota_count(affiliate_id: str) -> int:
    """The affiliate's quota counter, as stored (0 without a quota item)."""
    try:
        item = PostbackModel.get(quota_key(affiliate_id), consistent_read=True)
    except PostbackModel.DoesNotExist:
        return 0
    return int(item.postback_count or 0)


def postback(affiliate_id: str = "aff-a", created_at: str | None = None) -> Postback:
    """A new postback of the affiliate, saved now (unless `created_at` says when), with an ID of its own."""
    now = format_timestamp(utc_now())
    return support.postback(
        new_postback_id(),
        affiliate_id,
        excluded=("offer-7",),
        url="https://tracker.example.com/cb",
        created_at=created_at or now,
        updated_at=now,
    )


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
    assert quota_count("aff-a") == 3


def test_the_limit_is_enforced_by_the_quota_item_inside_the_write(repository: PostbackRepository) -> None:
    # The check is a condition on the quota item evaluated by DynamoDB in the same transaction
    # as the put (not a count read before it), so concurrent creates cannot both pass it.
    # moto does not serialise concurrent requests, so this is shown with the counter alone.
    PostbackModel(quota_key("aff-a"), postback_count=3).save()
    with pytest.raises(QuotaExceeded):
        repository.create(postback(), limit=3)
    assert repository.list_for_affiliate("aff-a") == []
    assert quota_count("aff-a") == 3


def test_delete_releases_the_quota_slot(repository: PostbackRepository) -> None:
    first = repository.create(postback(), limit=1)
    with pytest.raises(QuotaExceeded):
        repository.create(postback(), limit=1)
    repository.delete(first)
    assert repository.get(first.id) is None
    repository.create(postback(), limit=1)
    with pytest.raises(PostbackGone):
        repository.delete(first)
    assert quota_count("aff-a") == 1


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
    # The API passes the postback it has just read, with the patch applied.
    changed = repository.update(replace(current, enabled=False), expected_version=current.version)
    assert changed.consecutive_failures == 3 and changed.last_failure_reason == "gone"
    stored = repository.get(created.id)
    assert stored is not None and stored == changed
    assert stored.consecutive_failures == 3 and stored.last_failure_reason == "gone" and stored.enabled is False


def test_list_for_affiliate_reads_every_page_newest_first(repository: PostbackRepository) -> None:
    created = [
        repository.create(postback(created_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000000Z"), limit=500)
        for i in range(105)
    ]
    repository.create(postback("aff-b"), limit=500)
    listed = repository.list_for_affiliate("aff-a")
    assert [p.id for p in listed] == [p.id for p in reversed(created)]
    assert repository.list_for_affiliate("aff-nobody") == []


# The rules version item: bumped by every successful create, update and delete, in the same
# transaction; untouched by refused writes and by the sender's health updates.


class WallClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def clocked() -> Iterator[tuple[PostbackRepository, WallClock]]:
    with mock_aws():
        PostbackModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        clock = WallClock()
        yield PostbackRepository(clock=clock, sleep=lambda _seconds: None), clock


def test_a_table_without_a_version_item_is_at_version_0(repository: PostbackRepository) -> None:
    assert repository.rules_version() == RulesVersion(0, None)


def test_create_update_and_delete_each_bump_the_rules_version(
    clocked: tuple[PostbackRepository, WallClock],
) -> None:
    repository, clock = clocked
    created = repository.create(postback(), limit=10)
    assert repository.rules_version() == RulesVersion(1, clock.now)
    repository.update(replace(created, enabled=False), expected_version=1)
    assert repository.rules_version() == RulesVersion(2, clock.now)
    repository.delete(created)
    assert repository.rules_version() == RulesVersion(3, clock.now)


def test_refused_writes_do_not_bump_the_rules_version(repository: PostbackRepository) -> None:
    created = repository.create(postback(), limit=1)
    repository.update(replace(created, enabled=False), expected_version=1)
    before = repository.rules_version()
    assert before.number == 2
    with pytest.raises(QuotaExceeded):
        repository.create(postback(), limit=1)
    with pytest.raises(VersionConflict):
        repository.update(replace(created, url="https://other.example.com/"), expected_version=1)
    repository.delete(created)
    after_delete = repository.rules_version()
    with pytest.raises(PostbackGone):
        repository.delete(created)
    with pytest.raises(PostbackGone):
        repository.update(created, expected_version=2)
    assert repository.rules_version() == after_delete
    assert after_delete.number == 3


def test_health_updates_do_not_bump_the_rules_version_or_the_postback_version(repository: PostbackRepository) -> None:
    created = repository.create(postback(), limit=10)
    before = repository.rules_version()
    health = PostbackHealthRepository()
    at = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert health.record_success(created.id, at)
    assert health.record_failure(created.id, "gone", at)
    assert repository.rules_version() == before
    stored = repository.get(created.id)
    assert stored is not None and stored.version == 1 and stored.consecutive_failures == 1


def test_the_version_item_is_not_a_postback_and_is_in_no_index(repository: PostbackRepository) -> None:
    created = repository.create(postback(), limit=10)
    assert repository.get(RULES_VERSION_KEY) is None
    assert [p.id for p in repository.list_for_affiliate("aff-a")] == [created.id]
    assert [p.id for p in repository.page_all(10, None).items] == [created.id]
    item = PostbackModel.get(RULES_VERSION_KEY, consistent_read=True)
    assert item.affiliate_id is None and item.listing is None and item.created_at is None


class _Response:
    """The part of an HTTP response botocore reads when a before-call hook short-circuits a call."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


class TransactionConflicts:
    """Cancels the first `times` TransactWriteItems calls as DynamoDB does when another transaction
    holds one of the items (here: the rules version item, the last of every transaction)."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0

    def __call__(self, params: dict[str, Any], **_: Any) -> Any:
        self.calls += 1
        if self.calls > self.times:
            return None
        items = json.loads(params["body"])["TransactItems"]
        reasons = [{"Code": "None"} for _ in items[:-1]] + [{"Code": "TransactionConflict"}]
        return _Response(400), {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled (injected)"},
            "CancellationReasons": reasons,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }


@pytest.fixture
def conflicts(clocked: tuple[PostbackRepository, WallClock]) -> Iterator[list[TransactionConflicts]]:
    client = PostbackModel._get_connection().connection.client
    installed: list[TransactionConflicts] = []

    def hook(**kwargs: Any) -> Any:
        return installed[0](**kwargs) if installed else None

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", hook)
    yield installed
    client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", hook)


def test_a_transaction_cancelled_by_a_conflict_is_tried_again(
    clocked: tuple[PostbackRepository, WallClock], conflicts: list[TransactionConflicts]
) -> None:
    repository, _ = clocked
    created = repository.create(postback(), limit=10)
    conflicts.append(TransactionConflicts(times=2))
    changed = repository.update(replace(created, enabled=False), expected_version=1)
    assert conflicts[0].calls == 3
    assert changed.version == 2 and repository.get(created.id) == changed
    assert repository.rules_version().number == 2


def test_a_persistent_conflict_is_reported_as_busy_and_writes_nothing(
    clocked: tuple[PostbackRepository, WallClock], conflicts: list[TransactionConflicts]
) -> None:
    repository, _ = clocked
    created = repository.create(postback(), limit=10)
    conflicts.append(TransactionConflicts(times=TRANSACTION_ATTEMPTS))
    with pytest.raises(StoreBusy):
        repository.update(replace(created, enabled=False), expected_version=1)
    assert conflicts[0].calls == TRANSACTION_ATTEMPTS
    assert repository.get(created.id) == created
    assert repository.rules_version().number == 1
