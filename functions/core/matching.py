"""Firing semantics (docs/contract.md §2): which postbacks a conversion change fires, and what each sends.

A postback fires for a change when all of these hold:
- same affiliate;
- offer in scope (`global`: not excluded, so offers never seen before are covered; `offer`: included);
- the conversion type is one of the postback's types;
- the new status is one of the postback's statuses and differs from the previous status (an insert
  is a change from no status);
- the postback is enabled;
- the change is not retroactive: it was written at or after the postback's creation,
  `changed_at >= created_at`. An edit does not move this point: a change written shortly before an
  edit and still on its way (stream lag) is judged by the postback as it stands when evaluated, so
  an edit never drops a change that matches the postback as it now stands (`fires_from`).

Precision: Lambda's `ApproximateCreationDateTime` is rounded down to the second, so a change
written in the same second as the creation, but after it, may not fire it. docs/contract.md §2
allows this: a new postback applies to changes evaluated at most the rules-cache window after it
was saved.

Every matching postback fires, and each match is rendered here, at match time (a later edit of the
postback does not change a delivery already made). A rendered URL over `max_url_bytes` (UTF-8) is
not sent: the match is returned apart (`MatchResult.too_long`, `url_too_long`), with its URL cut to
the limit, so the evaluator records it dead-lettered. Pure: no AWS, no clock.

The postbacks given are indexed by offer once (`_index_of`): the evaluator passes each affiliate's
postbacks as the rules cache holds them, the same objects batch after batch, so each change tests
only the postbacks that can cover its offer instead of all of the affiliate's.

`earlier_deliveries` names the deliveries an earlier evaluation of the same change may have made
for postbacks that do not fire now (edited since): re-enqueueing follows the deliveries that exist,
not a fresh match (docs/reliability.md).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

from functions.core.model import (
    ConversionChange,
    PlannedDelivery,
    Postback,
    Scope,
    delivery_id_for,
    direct_init,
    parse_timestamp,
)
from functions.core.rendering import RenderError, render_change

# docs/contract.md §2: a rendered URL longer than this (UTF-8 bytes) is not sent.
DEFAULT_MAX_URL_BYTES = 8192
REASON_URL_TOO_LONG = "url_too_long"


@dataclass(frozen=True)
class RenderFailure:
    """A matching postback whose URL could not be rendered for this change."""

    postback_id: str
    reason: str


@direct_init  # made for every change that fires
@dataclass(frozen=True)
class MatchResult:
    """What a change fires."""

    deliveries: tuple[PlannedDelivery, ...]
    failures: tuple[RenderFailure, ...]
    # Matches whose rendered URL is over the limit, the URL cut to it: recorded `url_too_long`, never sent.
    too_long: tuple[PlannedDelivery, ...] = ()


def offer_in_scope(postback: Postback, offer_id: str) -> bool:
    if postback.scope == Scope.OFFER:
        return offer_id in postback.included_offer_ids
    return offer_id not in postback.excluded_offer_ids


@functools.lru_cache(maxsize=65536)
def _epoch_seconds(timestamp: str) -> float:
    # Postbacks are re-read often but saved rarely: parse each distinct timestamp once.
    return parse_timestamp(timestamp).timestamp()


def fires_from(postback: Postback) -> float:
    """Epoch seconds from which changes may fire the postback: its creation, never its last edit."""
    return _epoch_seconds(postback.created_at)


def _plan_delivery(postback: Postback, change: ConversionChange) -> PlannedDelivery:
    """The postback's URL rendered for the change; `RenderError` if it cannot be rendered."""
    conversion = change.conversion
    delivery_id = delivery_id_for(postback.id, conversion.conversion_id, conversion.status)
    # The rendered URL has the template's authority (`render_change` checks it), so its host.
    url, host = render_change(postback.url, change, postback.id, delivery_id)
    if not host:
        raise RenderError("rendered URL has no host")
    return PlannedDelivery(
        delivery_id,
        postback.id,
        conversion.affiliate_id,
        conversion.conversion_id,
        conversion.status,
        change.previous_status,
        conversion.offer_id,
        url,
        host,
        postback.delay_seconds,
    )


def cut_to_bytes(text: str, limit: int) -> str:
    """At most `limit` bytes of `text` in UTF-8, cut on a character boundary."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def url_over_limit(url: str, max_url_bytes: int) -> bool:
    """The rendered URL is longer than the limit (docs/contract.md §2), counted in UTF-8 bytes."""
    return len(url) > max_url_bytes or (not url.isascii() and len(url.encode("utf-8")) > max_url_bytes)


class _Index:
    """An affiliate's postbacks arranged for matching: for each offer named by an offer-scoped postback,
    the enabled postbacks that can cover it (those offer-scoped postbacks and every enabled global one),
    in the order given; for every other offer, the enabled global ones.

    Only a pre-selection: `match_change` still tests every condition on each candidate, so the
    result is the same as testing every postback.
    """

    __slots__ = ("_latest_edit", "by_offer", "other_offers", "postbacks", "statuses")

    def __init__(self, postbacks: tuple[Postback, ...]) -> None:
        self.postbacks = postbacks
        global_scope: list[Postback] = []
        by_offer: dict[str, list[Postback]] = {}
        for postback in postbacks:
            if not postback.enabled:
                continue
            if postback.scope == Scope.OFFER:
                for offer_id in dict.fromkeys(postback.included_offer_ids):
                    candidates = by_offer.get(offer_id)
                    if candidates is None:
                        # The global postbacks given before this one come before it.
                        candidates = by_offer[offer_id] = list(global_scope)
                    candidates.append(postback)
            else:
                global_scope.append(postback)
                for candidates in by_offer.values():
                    candidates.append(postback)
        self.other_offers: list[Postback] = global_scope
        self.by_offer = by_offer
        # Every status an enabled postback listens to: a change to any other fires nothing.
        self.statuses = frozenset(
            status for postback in postbacks if postback.enabled for status in postback.conversion_statuses
        )
        self._latest_edit: float | None = None

    def latest_edit(self) -> float:
        if self._latest_edit is None:
            self._latest_edit = max((_epoch_seconds(postback.updated_at) for postback in self.postbacks), default=0.0)
        return self._latest_edit


# The indexes of the postbacks seen lately (each affiliate's, as the rules cache holds them), by the
# identity of their first postback: an entry serves only the same postbacks (the same objects, or
# equal ones) in the same order, whatever sequence holds them; the entry keeps that first postback
# alive, so its `id()` is not reused while the entry exists. Entries of postbacks the rules cache
# has since read again stay until the bound is reached and every entry is dropped: at most that many
# affiliates' postbacks are kept here (an index costs about as much as testing every postback once).
_INDEXES: dict[int, _Index] = {}
_MAX_INDEXES = 2048
_EMPTY_INDEX = _Index(())


def _index_of(postbacks: Iterable[Postback]) -> _Index:
    """The index of these postbacks, built once for the same postbacks."""
    snapshot = tuple(postbacks)  # the tuple itself when given one
    if not snapshot:
        return _EMPTY_INDEX
    key = id(snapshot[0])
    index = _INDEXES.get(key)
    if index is not None and (index.postbacks is snapshot or index.postbacks == snapshot):
        return index
    index = _Index(snapshot)
    if len(_INDEXES) >= _MAX_INDEXES:
        _INDEXES.clear()  # more affiliates than that in one container: the busy ones are indexed again
    _INDEXES[key] = index
    return index


# What a change that fires nothing matches (always this object).
NOTHING = MatchResult(deliveries=(), failures=())


def match_change(
    change: ConversionChange, postbacks: Iterable[Postback], max_url_bytes: int = DEFAULT_MAX_URL_BYTES
) -> MatchResult:
    """Every postback the change fires, rendered, in the order given; render failures and URLs over the limit apart."""
    conversion = change.conversion
    status = conversion.status
    if status == change.previous_status:
        return NOTHING
    index = _index_of(postbacks)
    if status not in index.statuses:
        return NOTHING
    offer_id = conversion.offer_id
    candidates = index.by_offer.get(offer_id, index.other_offers)
    if not candidates:
        return NOTHING
    deliveries: list[PlannedDelivery] = []
    failures: list[RenderFailure] = []
    too_long: list[PlannedDelivery] = []
    # The conditions of the module docstring, with the change's fields read once and the cheapest
    # tests first.
    conversion_type = conversion.conversion_type
    affiliate_id = conversion.affiliate_id
    changed_at = change.changed_at
    for postback in candidates:
        if not (
            postback.enabled
            and status in postback.conversion_statuses
            and conversion_type in postback.conversion_types
            and postback.affiliate_id == affiliate_id
            and (  # `offer_in_scope`
                offer_id in postback.included_offer_ids
                if postback.scope == Scope.OFFER
                else offer_id not in postback.excluded_offer_ids
            )
            and changed_at >= fires_from(postback)
        ):
            continue
        try:
            planned = _plan_delivery(postback, change)
        except RenderError as exc:
            failures.append(RenderFailure(postback_id=postback.id, reason=f"render_failed: {exc}"))
            continue
        if url_over_limit(planned.url, max_url_bytes):
            too_long.append(replace(planned, url=cut_to_bytes(planned.url, max_url_bytes)))
        else:
            deliveries.append(planned)
    if not (deliveries or failures or too_long):
        return NOTHING
    return MatchResult(tuple(deliveries), tuple(failures), tuple(too_long))


def latest_edit(postbacks: Iterable[Postback]) -> float:
    """Epoch seconds of the newest save among the postbacks (0 for none): one number per affiliate."""
    return _index_of(postbacks).latest_edit()


def earlier_deliveries(
    change: ConversionChange, postbacks: Iterable[Postback], fired: Collection[str], staleness_seconds: float
) -> list[str]:
    """IDs of deliveries an earlier evaluation of this change may have made that the current rules do not make.

    An evaluation sees each postback as it stood at most `staleness_seconds` before it (the rules
    cache's bound), and every evaluation comes after the change was written; so a postback that
    does not fire now can have fired earlier only if it was saved after `changed_at -
    staleness_seconds` — an edit — and created before the change (never retroactive). `fired` are the
    postback IDs that fire now. The caller checks which of these deliveries exist and are still
    `pending`; with no recent edit the list is empty and nothing is read.
    """
    conversion = change.conversion
    if conversion.status == change.previous_status:
        return []
    edited_since = change.changed_at - staleness_seconds
    return [
        delivery_id_for(postback.id, conversion.conversion_id, conversion.status)
        for postback in postbacks
        if postback.id not in fired
        and _epoch_seconds(postback.updated_at) > edited_since
        and change.changed_at >= fires_from(postback)
    ]
