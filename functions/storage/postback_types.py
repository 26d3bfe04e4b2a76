"""What the postbacks repository's callers name without needing the repository itself.

The keys of its index pages, its errors and its small result types. They live apart from
`functions.storage.postbacks` (which imports pynamodb, and with it botocore) so that the API can
import its routes, services and error mapping without loading the AWS SDK: the API's Lambda
loads the storage stack when its first request builds the repository (docs/performance.md, cold
start). `functions.storage.postbacks` re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from functions.core.model import Postback

BY_AFFILIATE_KEY = frozenset({"postback_id", "affiliate_id", "created_at"})
BY_CREATED_KEY = frozenset({"postback_id", "listing", "created_at"})

Predicate = Callable[[Postback], bool]


class QuotaExceeded(Exception):
    """The affiliate already has the maximum number of postbacks."""

    def __init__(self, affiliate_id: str, limit: int) -> None:
        super().__init__(f"affiliate {affiliate_id} already has {limit} postbacks")
        self.affiliate_id = affiliate_id
        self.limit = limit


class StoreBusy(Exception):
    """A write kept colliding with concurrent writes and was not made; the caller may retry soon."""


class VersionConflict(Exception):
    """The postback changed since the version the caller read."""


class PostbackGone(Exception):
    """The postback does not exist (any more)."""


@dataclass(frozen=True)
class RulesVersion:
    """The table's rules version: bumped by every create, update and delete of a postback."""

    number: int
    # When it last changed (epoch seconds, the API's clock); None on a table that has none yet.
    changed_at: float | None


@dataclass(frozen=True)
class PostbackPage:
    """One page of postbacks and where the next starts."""

    items: list[Postback]
    # Start key of the next page (the key of the last item returned); None on the last page.
    next_key: dict[str, str] | None
