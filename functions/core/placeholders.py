"""The placeholder catalogue (docs/contract.md §4): the single source of truth.

Validation, `GET /parameters`, the OpenAPI description and rendering all read this table.
Each placeholder says how its value is taken from a conversion change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

PLACEHOLDER_PATTERN = re.compile(r"\{([A-Za-z][A-Za-z0-9]*)\}")


class Source(StrEnum):
    ATTRIBUTE = "attribute"  # a string attribute of the conversion record
    AMOUNT = "amount"  # a number attribute, rendered as a plain decimal
    FIRST_OF_LIST = "first_of_list"  # the first element of a list attribute
    STATUS = "status"  # the new status, lower case
    PREVIOUS_STATUS = "previous_status"  # the status before the change, empty on insert
    UNIX_SECONDS = "unix_seconds"  # an ISO 8601 attribute as Unix seconds
    POSTBACK_ID = "postback_id"
    DELIVERY_ID = "delivery_id"
    # Filled by the sender at each attempt (functions.core.signing), never at match time.
    ATTEMPT_TIMESTAMP = "attempt_timestamp"
    SIGNATURE = "signature"


@dataclass(frozen=True)
class Placeholder:
    """A `{placeholder}` a postback URL may use: where its value comes from, whether it is restricted."""

    name: str
    label: str
    description: str
    source: Source
    attribute: str | None = None
    restricted: bool = False


def _attr(name: str, attribute: str, label: str, description: str, restricted: bool = False) -> Placeholder:
    return Placeholder(name, label, description, Source.ATTRIBUTE, attribute, restricted)


CATALOGUE: tuple[Placeholder, ...] = (
    *(
        _attr(f"affS{i}", f"aff_s{i}", f"Aff S{i}", f"Affiliate sub-parameter {i} sent with the click.")
        for i in range(1, 6)
    ),
    _attr("cid", "cid", "Click ID", "Our click ID."),
    _attr("externalCid", "external_cid", "External CID", "The advertiser's visitor identifier."),
    _attr("externalId", "external_id", "External ID", "The advertiser's order or transaction ID."),
    _attr("conversionId", "conversion_id", "Conversion ID", "Our conversion ID, stable across status changes."),
    _attr("offerId", "offer_id", "Offer ID", "The offer of the conversion."),
    _attr("affiliateId", "affiliate_id", "Affiliate ID", "The affiliate that owns the click."),
    _attr("conversionType", "conversion_type", "Conversion type", "The conversion type code, e.g. sale."),
    Placeholder(
        "conversionStatus", "Conversion status", "The new status of the conversion, lower case.", Source.STATUS
    ),
    Placeholder(
        "previousStatus",
        "Previous status",
        "The status before this change, lower case; empty when the conversion is new.",
        Source.PREVIOUS_STATUS,
    ),
    Placeholder("payout", "Payout", "The affiliate's commission, as a plain decimal.", Source.AMOUNT, "payout"),
    Placeholder("saleAmount", "Sale amount", "The order value, as a plain decimal.", Source.AMOUNT, "sale_amount"),
    _attr("currency", "currency", "Currency", "ISO 4217 currency code."),
    Placeholder("couponCode", "Coupon code", "The first coupon code used.", Source.FIRST_OF_LIST, "coupon_codes"),
    _attr("conversionTime", "created_at", "Conversion time", "When the conversion was created (ISO 8601 UTC)."),
    Placeholder(
        "conversionTimestamp",
        "Conversion timestamp",
        "When the conversion was created, as Unix seconds.",
        Source.UNIX_SECONDS,
        "created_at",
    ),
    _attr("statusChangedAt", "status_changed_at", "Status changed at", "When the status last changed (ISO 8601 UTC)."),
    _attr("clickTime", "click_time", "Click time", "When the click happened (ISO 8601 UTC)."),
    Placeholder("postbackId", "Postback ID", "The ID of this postback.", Source.POSTBACK_ID),
    Placeholder(
        "deliveryId",
        "Delivery ID",
        "The ID of this delivery, the same on every retry: use it to deduplicate.",
        Source.DELIVERY_ID,
    ),
    Placeholder(
        "timestamp",
        "Timestamp",
        "Unix seconds when this attempt is sent, filled afresh on every retry.",
        Source.ATTEMPT_TIMESTAMP,
    ),
    Placeholder(
        "signature",
        "Signature",
        "The attempt's signature (HMAC-SHA256 with the postback's signing secret, base64url); "
        "must be the value of the URL's final query parameter.",
        Source.SIGNATURE,
    ),
    Placeholder(
        "revenue", "Revenue", "The network's revenue, as a plain decimal.", Source.AMOUNT, "revenue", restricted=True
    ),
    _attr("customerId", "customer_id", "Customer ID", "The advertiser's customer ID.", restricted=True),
    *(
        _attr(f"advS{i}", f"adv_s{i}", f"Adv S{i}", f"Advertiser custom parameter {i}.", restricted=True)
        for i in range(1, 6)
    ),
)

BY_NAME: dict[str, Placeholder] = {placeholder.name: placeholder for placeholder in CATALOGUE}
RESTRICTED_NAMES: frozenset[str] = frozenset(p.name for p in CATALOGUE if p.restricted)


def placeholders_in(text: str) -> list[str]:
    """The placeholder names written in `text`, in order of appearance (with repeats)."""
    return PLACEHOLDER_PATTERN.findall(text)


def allowed_for(role_is_admin: bool, affiliate_allowed: frozenset[str]) -> frozenset[str]:
    """The placeholder names a caller may use; `affiliate_allowed` may hold `*` for all restricted."""
    if role_is_admin or "*" in affiliate_allowed:
        return frozenset(BY_NAME)
    return frozenset(name for name in BY_NAME if name not in RESTRICTED_NAMES or name in affiliate_allowed)
