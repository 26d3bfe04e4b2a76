"""Firing semantics (contract §2): which postbacks a conversion change fires, and what each sends.

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
written in the same second as an edit, but after it, may not fire it. Contract §2 allows this: an
edit applies to changes evaluated at most the rules-cache window after it was saved.

Every matching postback fires, and each match is rendered here, at match time (a later edit of the
postback does not change a delivery already made). Pure: no AWS, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from functions.core.model import ConversionChange, Postback, Scope, delivery_id_for, parse_timestamp
from functions.core.rendering import RenderError, conversion_values, render_url, with_ids


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


def rules_in_force_at(postback: Postback) -> float:
    """Epoch seconds from which the postback's current rules apply (its last save)."""
    return parse_timestamp(postback.updated_at).timestamp()


def postback_fires(postback: Postback, change: ConversionChange) -> bool:
    conversion = change.conversion
    return (
        postback.enabled
        and postback.affiliate_id == conversion.affiliate_id
        and conversion.status != change.previous_status
        and conversion.status in postback.conversion_statuses
        and conversion.conversion_type in postback.conversion_types
        and offer_in_scope(postback, conversion.offer_id)
        and change.changed_at >= rules_in_force_at(postback)
    )


def plan_delivery(
    postback: Postback, change: ConversionChange, values: Mapping[str, str] | None = None
) -> PlannedDelivery:
    """Render the postback's URL for the change; `RenderError` if it cannot be rendered.

    `values` are the change's placeholder values (`conversion_values`), computed once per change.
    """
    conversion = change.conversion
    delivery_id = delivery_id_for(postback.id, conversion.conversion_id, conversion.status)
    change_values = conversion_values(change) if values is None else values
    url = render_url(postback.url, with_ids(change_values, postback.id, delivery_id))
    try:
        host = urlsplit(url).hostname
    except ValueError as exc:
        raise RenderError(f"rendered URL does not parse: {exc}") from exc
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
    values: dict[str, str] | None = None
    for postback in postbacks:
        if not postback_fires(postback, change):
            continue
        if values is None:
            values = conversion_values(change)
        try:
            deliveries.append(plan_delivery(postback, change, values))
        except RenderError as exc:
            failures.append(RenderFailure(postback_id=postback.id, reason=f"render_failed: {exc}"))
    return MatchResult(deliveries=tuple(deliveries), failures=tuple(failures))
