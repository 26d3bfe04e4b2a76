"""Firing semantics (docs/contract.md §2): which postbacks a conversion change fires, and what each sends.

A postback fires for a change when all of these hold:
- same affiliate;
- offer in scope (`global`: not excluded, so offers never seen before are covered; `offer`: included);
- the conversion type is one of the postback's types;
- the new status is one of the postback's statuses and differs from the previous status (an insert
  is a change from no status);
- the postback is enabled;
- the change is not older than the postback's current rules: `changed_at >= updated_at`. Every
  save (create or edit) sets `updated_at`, so changes written before it do not fire.

Precision: Lambda's `ApproximateCreationDateTime` is rounded down to the second, so a change
written in the same second as an edit, but after it, may not fire it. docs/contract.md §2 allows
this: an edit applies to changes evaluated at most the rules-cache window after it was saved.

Every matching postback fires, and each match is rendered here, at match time (a later edit of the
postback does not change a delivery already made). Pure: no AWS, no clock.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from functions.core.model import ConversionChange, Postback, Scope, delivery_id_for, parse_timestamp
from functions.core.rendering import ChangeValues, RenderError, render_change_url, template_host


@dataclass(frozen=True)
class PlannedDelivery:
    """One match, rendered: what the delivery record is created from."""

    delivery_id: str
    postback_id: str
    affiliate_id: str
    conversion_id: str
    conversion_status: str
    previous_status: str | None
    offer_id: str
    url: str
    target_host: str


@dataclass(frozen=True)
class RenderFailure:
    """A matching postback whose URL could not be rendered for this change."""

    postback_id: str
    reason: str


@dataclass(frozen=True)
class MatchResult:
    deliveries: tuple[PlannedDelivery, ...]
    failures: tuple[RenderFailure, ...]


def offer_in_scope(postback: Postback, offer_id: str) -> bool:
    if postback.scope == Scope.OFFER:
        return offer_id in postback.included_offer_ids
    return offer_id not in postback.excluded_offer_ids


@functools.lru_cache(maxsize=65536)
def _epoch_seconds(timestamp: str) -> float:
    # Postbacks are re-read often but saved rarely: parse each distinct `updated_at` once.
    return parse_timestamp(timestamp).timestamp()


def rules_in_force_at(postback: Postback) -> float:
    """Epoch seconds from which the postback's current rules apply (its last save)."""
    return _epoch_seconds(postback.updated_at)


def _plan_delivery(postback: Postback, change: ConversionChange, values: ChangeValues) -> PlannedDelivery:
    """The postback's URL rendered for the change; `RenderError` if it cannot be rendered.

    `values` are the change's placeholder values, computed on first use and shared by every
    postback the change fires.
    """
    conversion = change.conversion
    delivery_id = delivery_id_for(postback.id, conversion.conversion_id, conversion.status)
    url = render_change_url(postback.url, values, postback.id, delivery_id)
    # The rendered URL has the template's authority (`render_change_url` checks it), so its host.
    host = template_host(postback.url)
    if not host:
        raise RenderError("rendered URL has no host")
    return PlannedDelivery(
        delivery_id=delivery_id,
        postback_id=postback.id,
        affiliate_id=conversion.affiliate_id,
        conversion_id=conversion.conversion_id,
        conversion_status=conversion.status,
        previous_status=change.previous_status,
        offer_id=conversion.offer_id,
        url=url,
        target_host=host,
    )


def match_change(change: ConversionChange, postbacks: Iterable[Postback]) -> MatchResult:
    """Every postback the change fires, rendered, in the order given; render failures apart."""
    deliveries: list[PlannedDelivery] = []
    failures: list[RenderFailure] = []
    values: ChangeValues | None = None
    conversion = change.conversion
    status = conversion.status
    if status == change.previous_status:
        return MatchResult(deliveries=(), failures=())
    # The conditions of the module docstring, with the change's fields read once and the cheapest
    # tests first: this loop runs for every postback of the affiliate on every status change.
    conversion_type = conversion.conversion_type
    affiliate_id = conversion.affiliate_id
    offer_id = conversion.offer_id
    changed_at = change.changed_at
    for postback in postbacks:
        if not (
            postback.enabled
            and status in postback.conversion_statuses
            and conversion_type in postback.conversion_types
            and postback.affiliate_id == affiliate_id
            and offer_in_scope(postback, offer_id)
            and changed_at >= rules_in_force_at(postback)
        ):
            continue
        if values is None:
            # Computed on first use and shared by every postback the change fires.
            values = ChangeValues(change)
        try:
            deliveries.append(_plan_delivery(postback, change, values))
        except RenderError as exc:
            failures.append(RenderFailure(postback_id=postback.id, reason=f"render_failed: {exc}"))
    return MatchResult(deliveries=tuple(deliveries), failures=tuple(failures))
