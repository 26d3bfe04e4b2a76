"""A postback's deliveries in the API (docs/contract.md §5): the delivery log and the test fire.

No HTTP here: the routes (`functions.api.delivery_routes`) hand in the caller and the request's
values; this module checks them, returns domain objects or raises the typed errors of
`functions.api.service` and `functions.core.validation` (mapped to HTTP in `functions.api.errors`).
Authorization is that of the postback (`PostbackService.get`): an admin may use any, an affiliate
only its own; another affiliate's postback is not found.

Restricted placeholder values (docs/contract.md §4) in the delivery log's URLs read as `***` for an
affiliate not allowed them (`functions.core.masking`); each test fire is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from functions.api.pagination import decode_cursor, encode_cursor, parse_limit
from functions.api.service import Principal
from functions.audit import log_postback_action
from functions.core.masking import mask_restricted_values
from functions.core.model import Delivery, Postback
from functions.core.placeholders import RESTRICTED_NAMES
from functions.core.validation import FieldError, ValidationFailed

if TYPE_CHECKING:  # the storage stack (pynamodb, botocore) loads with the first request, not with the API
    from functions.api.testfire import ConversionValue, PostbackTestOutcome
    from functions.storage.deliveries import DeliveryPage


class VisiblePostbacks(Protocol):
    """The postback a caller may see (`PostbackService.get`); `PostbackNotFound` otherwise."""

    def get(self, caller: Principal, postback_id: str) -> Postback: ...


class DeliveryLogStore(Protocol):
    """What the delivery log needs of the deliveries table (`DeliveryRepository`)."""

    def page_for_postback(
        self, postback_id: str, limit: int, start_key: Mapping[str, str] | None = None
    ) -> DeliveryPage: ...


class TestFirer(Protocol):
    """`functions.api.testfire.PostbackTestFire`."""

    def fire(
        self, postback: Postback, overrides: Mapping[str, ConversionValue], removed: frozenset[str] = frozenset()
    ) -> PostbackTestOutcome: ...


class TestFireLimiter(Protocol):
    """The per-postback test-fire limit (`functions.storage.test_fire_limits.TestFireLimits`)."""

    def take(self, postback_id: str) -> int | None: ...


class TestFiresLimited(Exception):
    """The postback has had its test fires for this minute (429 with `Retry-After`)."""

    __test__ = False  # not a pytest class

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"This postback has had its test fires for this minute; try again in {retry_after} s.")
        self.retry_after = retry_after


@dataclass(frozen=True)
class DeliveryLog:
    """One page of a postback's delivery log, newest first, and the cursor of the next (None: the last)."""

    items: tuple[Delivery, ...]
    next_cursor: str | None


class DeliveryService:
    def __init__(
        self,
        *,
        postbacks: VisiblePostbacks,
        deliveries: DeliveryLogStore,
        test_fire: Callable[[], TestFirer],
        affiliate_restricted_placeholders: frozenset[str] = frozenset(),
        test_fire_limit: TestFireLimiter | None = None,
    ) -> None:
        """`test_fire` is called on the first test fire: the HTTP client is built only when needed.

        `affiliate_restricted_placeholders`: the restricted placeholders affiliates may read (`*`: all).
        """
        self._postbacks = postbacks
        self._deliveries = deliveries
        self._test_fire = test_fire
        self._affiliate_restricted = affiliate_restricted_placeholders
        self._test_fire_limit = test_fire_limit

    def _hidden_placeholders(self, caller: Principal) -> frozenset[str]:
        """The restricted placeholders whose values `caller` may not read (none for an admin).

        Every restricted name not allowed, not only those of the current URL: a delivery may
        predate a change of the URL (masking then hides all of its path and query).
        """
        if caller.is_admin or "*" in self._affiliate_restricted:
            return frozenset()
        return frozenset(RESTRICTED_NAMES - self._affiliate_restricted)

    def log(self, caller: Principal, postback_id: str, *, limit: str | None, cursor: str | None) -> DeliveryLog:
        """One page of the postback's delivery log, newest first (`limit` 1-100, default 50)."""
        postback = self._postbacks.get(caller, postback_id)
        page_size = parse_limit(limit)
        query = {"list": "deliveries", "postback_id": postback.id}
        from functions.storage.deliveries import PAGE_KEY_ATTRIBUTES

        start_key = decode_cursor(cursor, query, PAGE_KEY_ATTRIBUTES, {"postback_id": postback.id})
        page = self._deliveries.page_for_postback(postback.id, page_size, start_key)
        hidden = self._hidden_placeholders(caller)
        items = page.items
        if hidden:
            items = tuple(
                replace(item, url=mask_restricted_values(item.url, postback.url, hidden)) for item in page.items
            )
        return DeliveryLog(tuple(items), None if page.last_key is None else encode_cursor(query, page.last_key))

    def test(self, caller: Principal, postback_id: str, read_body: Callable[[], Any]) -> PostbackTestOutcome:
        """Fire the postback now with the sample conversion, the body's attributes applied (`parse_test_body`).

        `read_body` parses the request body; it is called once the postback is known to be
        visible, so a caller learns nothing about another affiliate's postback from a bad body.
        """
        # The test fire's rules (sample conversion, rendering) load with the first test fire, not with the API.
        from functions.api.testfire import parse_test_body
        from functions.core.rendering import RenderError

        postback = self._postbacks.get(caller, postback_id)
        overrides = parse_test_body(read_body())
        # POSTBACKS_TEST_FIRES_PER_MINUTE per postback (docs/contract.md §5), counted once the request is valid.
        retry_after = None if self._test_fire_limit is None else self._test_fire_limit.take(postback.id)
        if retry_after is not None:
            raise TestFiresLimited(retry_after)
        log_postback_action(
            action="test_fire",
            subject=caller.subject,
            role=caller.role.value,
            postback_id=postback.id,
            affiliate_id=postback.affiliate_id,
        )
        given = {name: value for name, value in overrides.items() if value is not None}
        removed = frozenset(name for name, value in overrides.items() if value is None)
        try:
            return self._test_fire().fire(postback, given, removed)
        except RenderError as exc:
            raise ValidationFailed([FieldError("body", f"the values cannot be placed in the URL: {exc}")]) from exc
