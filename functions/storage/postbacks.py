"""`PostbackRepository`: postbacks in DynamoDB (the postbacks table, see `functions.storage.models`).

- `get` is a consistent GetItem; `list_for_affiliate` is one Query of the `by_affiliate` index
  (all pages), the evaluator's read.
- `create` and `delete` run in one transaction with the affiliate's quota item, so the
  per-affiliate limit holds under concurrent creates.
- `update` is conditional on the version the caller read (optimistic concurrency): it raises
  `VersionConflict` when someone else saved first and `PostbackGone` when the postback was
  deleted meanwhile. It writes only the definition, so health fields the sender maintains are
  never overwritten.
- Every successful `create`, `update` and `delete` also bumps the table's rules version item
  (`rules#version`) in the same transaction; a refused write bumps nothing. `rules_version` reads
  it (consistently): the evaluator keeps its cached postbacks while the number is unchanged.
  Every write of the API now touches that one item, so a transaction cancelled only because
  another one held it at the same moment (`TransactionConflict`) is retried a few times.
- `page_for_affiliate` / `page_all` read the two indexes newest first with an optional filter,
  filling a page up to `limit` matching items.
- Signing secrets (docs/security.md) live in items of their own (`secret#<postback id>`), in no
  index. `create` writes one in its transaction, `update` writes one if the postback has none
  yet (postbacks older than signing), `delete` removes it. Only three paths read one:
  `get_many` (the sender's batch read: the same BatchGetItem, on `Postback.signing_secret`),
  `ensure_signing_secret` and `rotate_signing_secret` (the API's signing-secret endpoint and the
  test fire). No other read returns it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from functions.core.model import Postback, Scope
from functions.core.signing import SigningSecret, new_signing_secret
from functions.storage.errors import response_code
from functions.storage.models import (
    POSTBACK_LISTING_PARTITION,
    QUOTA_PREFIX,
    RULES_VERSION_KEY,
    SIGNING_SECRET_PREFIX,
    PostbackModel,
)
from functions.storage.postback_types import (
    BY_AFFILIATE_KEY,
    BY_CREATED_KEY,
    PostbackGone,
    PostbackPage,
    Predicate,
    QuotaExceeded,
    RulesVersion,
    StoreBusy,
    VersionConflict,
)

CONDITION_FAILED_REASON = "ConditionalCheckFailed"
TRANSACTION_CONFLICT = "TransactionConflict"
# A transaction that collides with another on the same item (the rules version item is in every
# one) is cancelled without effect; it is tried again after a short jittered pause.
TRANSACTION_ATTEMPTS = 4
TRANSACTION_BACKOFF_SECONDS = 0.02
QUERY_PAGE_SIZE = 100

# The names of `postback_types` (defined apart so that the API imports them without pynamodb).
__all__ = [
    "BY_AFFILIATE_KEY",
    "BY_CREATED_KEY",
    "PostbackGone",
    "PostbackPage",
    "PostbackRepository",
    "Predicate",
    "QuotaExceeded",
    "RulesVersion",
    "StoreBusy",
    "VersionConflict",
]


def quota_key(affiliate_id: str) -> str:
    return QUOTA_PREFIX + affiliate_id


def secret_key(postback_id: str) -> str:
    return SIGNING_SECRET_PREFIX + postback_id


def _not_a_postback_key(key: str) -> bool:
    return key.startswith((QUOTA_PREFIX, SIGNING_SECRET_PREFIX))


def sending_keys(postback_ids: Iterable[str]) -> list[str]:
    """The keys the sender's batch read asks for: each postback once, and its signing secret item."""
    unique = [key for key in dict.fromkeys(postback_ids) if not _not_a_postback_key(key)]
    return unique + [secret_key(key) for key in unique]


def postbacks_with_secrets(items: Iterable[PostbackModel]) -> dict[str, Postback]:
    """The postbacks among `items` (of a batch read of `sending_keys`), each with its signing secret if read."""
    read = list(items)
    secrets = {
        item.postback_id[len(SIGNING_SECRET_PREFIX) :]: SigningSecret(item.signing_secret)
        for item in read
        if item.postback_id.startswith(SIGNING_SECRET_PREFIX) and item.signing_secret
    }
    return {
        item.postback_id: replace(to_domain(item), signing_secret=secrets.get(item.postback_id))
        for item in read
        if _is_postback(item)
    }


def to_domain(item: PostbackModel) -> Postback:
    return Postback(
        id=item.postback_id,
        affiliate_id=item.affiliate_id or "",
        scope=Scope(item.scope or Scope.GLOBAL.value),
        included_offer_ids=_strings(item.included_offer_ids),
        excluded_offer_ids=_strings(item.excluded_offer_ids),
        conversion_types=_strings(item.conversion_types),
        conversion_statuses=_strings(item.conversion_statuses),
        url=item.url or "",
        enabled=bool(item.enabled),
        created_at=item.created_at or "",
        updated_at=item.updated_at or "",
        version=int(item.version or 0),
        last_success_at=item.last_success_at,
        consecutive_failures=int(item.consecutive_failures or 0),
        last_failure_reason=item.last_failure_reason,
        last_failure_at=item.last_failure_at,
        created_by=item.created_by,
        updated_by=item.updated_by,
        delay_seconds=int(item.delay_seconds or 0),
    )


def _strings(values: Any) -> tuple[str, ...]:
    return tuple(str(value) for value in values or ())


def new_item(postback: Postback, model: type[PostbackModel] = PostbackModel) -> PostbackModel:
    """The table item of a new postback (version 1 once saved, health empty)."""
    return model(
        postback.id,
        affiliate_id=postback.affiliate_id,
        listing=POSTBACK_LISTING_PARTITION,
        scope=postback.scope.value,
        included_offer_ids=_stored(postback.included_offer_ids),
        excluded_offer_ids=_stored(postback.excluded_offer_ids),
        conversion_types=_stored(postback.conversion_types),
        conversion_statuses=_stored(postback.conversion_statuses),
        url=postback.url,
        enabled=postback.enabled,
        created_at=postback.created_at,
        updated_at=postback.updated_at,
        created_by=postback.created_by,
        updated_by=postback.updated_by,
        delay_seconds=postback.delay_seconds,
        consecutive_failures=0,
    )


def _stored(values: tuple[str, ...]) -> Any:
    """A list for a `ListAttribute(of=UnicodeAttribute)` (typed by pynamodb as attribute objects)."""
    return list(values)


def _serialized_key(key: dict[str, str] | None) -> dict[str, dict[str, Any]] | None:
    return None if key is None else {name: {"S": value} for name, value in key.items()}


def _is_postback(item: PostbackModel) -> bool:
    return not item.postback_id.startswith(QUOTA_PREFIX) and item.affiliate_id is not None


def _cancellation_codes(exc: TransactWriteError) -> list[str | None]:
    """The reason of each item of a cancelled transaction, in request order (None: not a reason)."""
    if response_code(exc) != "TransactionCanceledException":
        return []
    return [None if reason is None else reason.code for reason in exc.cancellation_reasons]


def _only_conflicted(exc: TransactWriteError) -> bool:
    codes = [code for code in _cancellation_codes(exc) if code not in (None, "None")]
    return bool(codes) and all(code == TRANSACTION_CONFLICT for code in codes)


class PostbackRepository:
    def __init__(
        self,
        model: type[PostbackModel] = PostbackModel,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        new_secret: Callable[[], str] = new_signing_secret,
    ) -> None:
        self._model = model
        self._clock = clock
        self._sleep = sleep
        self._new_secret = new_secret

    def get(self, postback_id: str) -> Postback | None:
        if _not_a_postback_key(postback_id):
            return None
        try:
            item = self._model.get(postback_id, consistent_read=True)
        except self._model.DoesNotExist:
            return None
        return to_domain(item) if _is_postback(item) else None

    def get_many(self, postback_ids: list[str]) -> dict[str, Postback]:
        """Consistent BatchGetItem (100 keys a request); IDs without a postback are absent from the result.

        The sender's read: each postback's signing secret item is read in the same request and
        set on `Postback.signing_secret` (None for a postback that has none).
        """
        keys = sending_keys(postback_ids)
        if not keys:
            return {}
        return postbacks_with_secrets(self._model.batch_get(keys, consistent_read=True))

    def ensure_signing_secret(self, postback_id: str, now: str) -> str | None:
        """The postback's signing secret, created first if it has none; None if there is no such postback."""
        current = self._read_secret(postback_id)
        if current is not None:
            return current
        model = self._model

        def write(transaction: TransactWrite) -> None:
            transaction.condition_check(model, postback_id, condition=model.affiliate_id.exists())
            transaction.update(
                model(secret_key(postback_id)), actions=self._secret_if_missing(now), add_version_condition=False
            )

        if not self._write_secret(write):
            return None
        return self._read_secret(postback_id)

    def rotate_signing_secret(self, postback_id: str, now: str) -> str | None:
        """Replace the postback's signing secret with a new one and return it; None if there is no such postback."""
        model = self._model
        secret = self._new_secret()

        def write(transaction: TransactWrite) -> None:
            transaction.condition_check(model, postback_id, condition=model.affiliate_id.exists())
            transaction.update(
                model(secret_key(postback_id)),
                actions=[model.signing_secret.set(secret), model.signing_secret_rotated_at.set(now)],
                add_version_condition=False,
            )

        return secret if self._write_secret(write) else None

    def _read_secret(self, postback_id: str) -> str | None:
        model = self._model
        try:
            item = model.get(
                secret_key(postback_id), consistent_read=True, attributes_to_get=[model.signing_secret.attr_name]
            )
        except model.DoesNotExist:
            return None
        return item.signing_secret or None

    def _write_secret(self, write: Callable[[TransactWrite], None]) -> bool:
        """Run a secret write conditioned on the postback (first item); False if the postback does not exist."""
        try:
            self._transact(write)
        except TransactWriteError as exc:
            codes = _cancellation_codes(exc)
            if codes and codes[0] == CONDITION_FAILED_REASON:
                return False
            raise
        return True

    def _secret_if_missing(self, now: str) -> list[Any]:
        """Update actions that give the secret item a secret unless it has one (`if_not_exists`)."""
        model = self._model
        return [
            model.signing_secret.set(model.signing_secret | self._new_secret()),
            model.signing_secret_rotated_at.set(model.signing_secret_rotated_at | now),
        ]

    def _ensure_secret_item(self, transaction: TransactWrite, postback: Postback) -> None:
        transaction.update(
            self._model(secret_key(postback.id)),
            actions=self._secret_if_missing(postback.updated_at),
            add_version_condition=False,
        )

    def list_for_affiliate(self, affiliate_id: str) -> list[Postback]:
        """Every postback of the affiliate, newest first.

        No page size: an affiliate's postbacks (at most the per-affiliate limit, ~1 KiB each) fit in
        one 1 MiB Query page, so the evaluator's hot path costs exactly one request per affiliate.
        """
        return [to_domain(item) for item in self._model.by_affiliate.query(affiliate_id, scan_index_forward=False)]

    def create(self, postback: Postback, limit: int) -> Postback:
        """Store a new postback (version 1) if the affiliate has fewer than `limit`."""
        item = new_item(postback, self._model)
        count = self._model.postback_count

        def write(transaction: TransactWrite) -> None:
            transaction.save(item, condition=self._model.postback_id.does_not_exist())
            transaction.update(
                self._model(quota_key(postback.affiliate_id)),
                actions=[count.add(1)],
                condition=count.does_not_exist() | (count < limit),
                add_version_condition=False,
            )
            self._bump_rules_version(transaction)
            self._ensure_secret_item(transaction, postback)

        try:
            self._transact(write)
        except TransactWriteError as exc:
            codes = _cancellation_codes(exc)
            # Items in request order: the put of the postback, the quota update, the rules version.
            if len(codes) > 1 and codes[1] == CONDITION_FAILED_REASON:
                raise QuotaExceeded(postback.affiliate_id, limit) from exc
            raise
        return to_domain(item)

    def update(self, postback: Postback, expected_version: int) -> Postback:
        """Write the definition of `postback` if the stored version is still `expected_version`.

        One transaction: the update, conditional on the postback existing with `expected_version`
        and incrementing it, and the rules version bump. Returns `postback` with the new version
        (the health fields are those the caller read: the update does not touch them).
        """
        model = self._model

        def write(transaction: TransactWrite) -> None:
            # Built afresh on every attempt: pynamodb appends the version increment to `actions`.
            actions: list[Any] = [
                model.scope.set(postback.scope.value),
                model.included_offer_ids.set(_stored(postback.included_offer_ids)),
                model.excluded_offer_ids.set(_stored(postback.excluded_offer_ids)),
                model.conversion_types.set(_stored(postback.conversion_types)),
                model.conversion_statuses.set(_stored(postback.conversion_statuses)),
                model.url.set(postback.url),
                model.enabled.set(postback.enabled),
                model.updated_at.set(postback.updated_at),
                model.delay_seconds.set(postback.delay_seconds),
            ]
            if postback.updated_by is not None:
                actions.append(model.updated_by.set(postback.updated_by))
            # `add_version_condition` (the default) adds `version = expected_version` and `version + 1`.
            transaction.update(
                model(postback.id, version=expected_version), actions=actions, condition=model.postback_id.exists()
            )
            self._bump_rules_version(transaction)
            # A postback made before signing existed gets its secret on its first edit.
            self._ensure_secret_item(transaction, postback)

        try:
            self._transact(write)
        except TransactWriteError as exc:
            codes = _cancellation_codes(exc)
            if not codes or codes[0] != CONDITION_FAILED_REASON:
                raise
            if self.get(postback.id) is None:
                raise PostbackGone(postback.id) from exc
            raise VersionConflict(postback.id) from exc
        return replace(postback, version=expected_version + 1)

    def delete(self, postback: Postback) -> None:
        """Delete the postback and release its quota slot; `PostbackGone` if it no longer exists."""

        def write(transaction: TransactWrite) -> None:
            transaction.delete(
                self._model(postback.id), condition=self._model.postback_id.exists(), add_version_condition=False
            )
            transaction.update(
                self._model(quota_key(postback.affiliate_id)),
                actions=[self._model.postback_count.add(-1)],
                add_version_condition=False,
            )
            self._bump_rules_version(transaction)
            transaction.delete(self._model(secret_key(postback.id)), add_version_condition=False)

        try:
            self._transact(write)
        except TransactWriteError as exc:
            codes = _cancellation_codes(exc)
            if codes and codes[0] == CONDITION_FAILED_REASON:
                raise PostbackGone(postback.id) from exc
            raise

    def rules_version(self) -> RulesVersion:
        """The table's rules version (one consistent GetItem); version 0 on a table without one."""
        model = self._model
        try:
            item = model.get(
                RULES_VERSION_KEY,
                consistent_read=True,
                attributes_to_get=[model.rules_version.attr_name, model.rules_changed_at.attr_name],
            )
        except model.DoesNotExist:
            return RulesVersion(0, None)
        changed_at = item.rules_changed_at
        return RulesVersion(int(item.rules_version or 0), None if changed_at is None else float(changed_at))

    def page_for_affiliate(
        self, affiliate_id: str, limit: int, start_key: dict[str, str] | None, predicate: Predicate | None = None
    ) -> PostbackPage:
        items = self._model.by_affiliate.query(
            affiliate_id,
            scan_index_forward=False,
            last_evaluated_key=_serialized_key(start_key),
            page_size=QUERY_PAGE_SIZE,
        )
        return _fill_page(items, limit, predicate, ("postback_id", "affiliate_id", "created_at"))

    def page_all(
        self, limit: int, start_key: dict[str, str] | None, predicate: Predicate | None = None
    ) -> PostbackPage:
        items = self._model.by_created.query(
            POSTBACK_LISTING_PARTITION,
            scan_index_forward=False,
            last_evaluated_key=_serialized_key(start_key),
            page_size=QUERY_PAGE_SIZE,
        )
        return _fill_page(items, limit, predicate, ("postback_id", "listing", "created_at"))

    def _bump_rules_version(self, transaction: TransactWrite) -> None:
        model = self._model
        transaction.update(
            model(RULES_VERSION_KEY),
            actions=[model.rules_version.add(1), model.rules_changed_at.set(self._clock())],
            add_version_condition=False,
        )

    def _transact(self, write: Callable[[TransactWrite], None]) -> None:
        """Run the transaction `write` builds; again (rebuilt) if it was cancelled only by a conflict."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                with TransactWrite(connection=self._connection()) as transaction:
                    write(transaction)
                return
            except TransactWriteError as exc:
                if not _only_conflicted(exc):
                    raise
                if attempt == TRANSACTION_ATTEMPTS:
                    raise StoreBusy(f"the write collided with concurrent writes {attempt} times") from exc
            self._sleep(TRANSACTION_BACKOFF_SECONDS * attempt * random.uniform(0.5, 1.0))

    def _connection(self) -> Any:
        return self._model._get_connection().connection


def _fill_page(
    items: Iterator[PostbackModel], limit: int, predicate: Predicate | None, key_attributes: tuple[str, ...]
) -> PostbackPage:
    """Up to `limit` matching items; the next key is the key of the last item returned.

    One more match is looked for so that the last page says so (next_key None) instead of
    handing out a cursor to an empty page.
    """
    page: list[Postback] = []
    last_key: dict[str, str] | None = None
    for item in items:
        postback = to_domain(item)
        if predicate is not None and not predicate(postback):
            continue
        if len(page) == limit:
            return PostbackPage(page, last_key)
        page.append(postback)
        last_key = {name: str(getattr(item, name)) for name in key_attributes}
    return PostbackPage(page, None)
