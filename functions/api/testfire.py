"""The test fire (`POST /postbacks/{id}/test`, docs/contract.md §5): a postback fired now with a sample conversion.

`parse_test_body` checks the request body: a JSON object of conversion-record attributes
(docs/contract.md §3) to use instead of the sample's, `null` removing an optional one.
`PostbackTestFire.fire` renders the URL with the sample conversion, sends the GET through the same
pinned HTTP client as the sender (same egress guard, timeouts, no redirects) and records a test
delivery with its one attempt. The HTTP client is passed in (`functions.bootstrap.http_client`),
so importing this module loads no HTTP stack.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from functions.api.service import PostbackNotFound
from functions.core.attempts import HttpGetter, attempt_of
from functions.core.classification import Classification, classify
from functions.core.conversion import normalise_status
from functions.core.egress import InvalidUrl, parse_target
from functions.core.model import (
    CONVERSION_STATUSES,
    CONVERSION_TYPE_PATTERN,
    Attempt,
    Conversion,
    ConversionChange,
    Delivery,
    DeliveryState,
    Postback,
    delivery_id_for,
    format_timestamp,
    new_ulid,
    utc_now,
)
from functions.core.rendering import ChangeValues, render_change_url
from functions.core.signing import SigningSecret, attempt_url, uses_signature
from functions.core.validation import FieldError, ValidationFailed

logger = logging.getLogger(__name__)

SAMPLE_OFFER_ID = "sample-offer"
TEST_CONVERSION_PREFIX = "test-"
REQUIRED_ATTRIBUTES = ("conversion_id", "offer_id", "conversion_type", "status")
MAX_ATTRIBUTE_LENGTH = 1024
ConversionValue = str | Decimal | list[str]


class SecretSource(Protocol):
    """The postback's signing secret, created if it has none (`PostbackRepository`); None: no such postback."""

    def ensure_signing_secret(self, postback_id: str, now: str) -> str | None: ...


class DeliveryRecorder(Protocol):
    """What the test fire needs of the deliveries table (`DeliveryRepository`)."""

    def record_test_delivery(
        self,
        *,
        delivery_id: str,
        postback_id: str,
        affiliate_id: str,
        conversion_id: str,
        conversion_status: str,
        offer_id: str | None,
        url: str,
        target_host: str,
        state: DeliveryState,
        reason: str | None,
        attempt: Attempt,
        now: datetime,
    ) -> Delivery: ...


@dataclass(frozen=True)
class PostbackTestOutcome:
    """What a test fire sent and what the tracker answered (the body of `POST /postbacks/{id}/test`)."""

    delivery_id: str
    url: str
    classification: Classification
    status_code: int | None
    duration_ms: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.classification.delivered


def _amount(name: str, value: int | float, errors: list[FieldError]) -> Decimal | None:
    if isinstance(value, float) and not math.isfinite(value):
        errors.append(FieldError(name, "must be a finite number"))
        return None
    return Decimal(str(value))


def parse_test_body(body: Any) -> dict[str, ConversionValue | None]:
    """The conversion attributes a test-fire body gives; `ValidationFailed` naming every bad field.

    A value of None removes an optional attribute from the sample.
    """
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    # pydantic and the request models load with the first request that has a body (docs/performance.md).
    from functions.api.body_shapes import overrides_shape

    values, errors = overrides_shape(body)
    overrides: dict[str, ConversionValue | None] = {}
    for name, value in values.items():
        if value is None:
            if name in REQUIRED_ATTRIBUTES:
                errors.append(FieldError(name, "must not be null"))
            overrides[name] = None
        elif isinstance(value, int | float):
            overrides[name] = _amount(name, value, errors)
        elif isinstance(value, str):
            if len(value) > MAX_ATTRIBUTE_LENGTH:
                errors.append(FieldError(name, f"must be at most {MAX_ATTRIBUTE_LENGTH} characters"))
            elif name in REQUIRED_ATTRIBUTES and not value.strip():
                errors.append(FieldError(name, "must not be empty"))
            overrides[name] = value
        else:
            overrides[name] = [str(item) for item in value]
    status = overrides.get("status")
    if isinstance(status, str):
        normalised = normalise_status(status)
        if normalised not in CONVERSION_STATUSES:
            errors.append(FieldError("status", f"must be one of {', '.join(CONVERSION_STATUSES)}"))
        overrides["status"] = normalised
    conversion_type = overrides.get("conversion_type")
    if isinstance(conversion_type, str) and not CONVERSION_TYPE_PATTERN.match(conversion_type):
        errors.append(FieldError("conversion_type", "must be 1-64 characters of a-z, 0-9, _ and -"))
    if errors:
        raise ValidationFailed(errors)
    return overrides


def sample_conversion(
    postback: Postback,
    now: datetime,
    overrides: Mapping[str, ConversionValue],
    removed: frozenset[str] = frozenset(),
) -> Conversion:
    """A plausible conversion of the postback's affiliate that matches it, with `overrides` applied.

    `overrides` are attributes of the conversion record (docs/contract.md §3), already validated;
    `removed` are optional attributes to leave out; `affiliate_id` is always the postback's.
    """
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    click = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ulid = new_ulid()
    values: dict[str, ConversionValue] = {
        "conversion_id": TEST_CONVERSION_PREFIX + ulid,
        "offer_id": postback.included_offer_ids[0] if postback.included_offer_ids else SAMPLE_OFFER_ID,
        "conversion_type": postback.conversion_types[0] if postback.conversion_types else "sale",
        "status": postback.conversion_statuses[0] if postback.conversion_statuses else "approved",
        "cid": "test-click-" + ulid.lower(),
        "external_cid": "sample-visitor-1",
        "external_id": "sample-order-1001",
        **{f"aff_s{i}": f"sample-aff-s{i}" for i in range(1, 6)},
        **{f"adv_s{i}": f"sample-adv-s{i}" for i in range(1, 6)},
        "payout": Decimal("12.5"),
        "revenue": Decimal("20"),
        "sale_amount": Decimal("99.9"),
        "currency": "USD",
        "customer_id": "sample-customer-1",
        "coupon_codes": ["SAMPLE10"],
        "created_at": stamp,
        "status_changed_at": stamp,
        "click_time": click,
    }
    values.update(overrides)
    for name in removed:
        values.pop(name, None)
    values["affiliate_id"] = postback.affiliate_id
    return Conversion(
        conversion_id=str(values["conversion_id"]),
        affiliate_id=postback.affiliate_id,
        offer_id=str(values["offer_id"]),
        conversion_type=str(values["conversion_type"]),
        status=str(values["status"]),
        attributes=values,
    )


def _target_host(url: str) -> str:
    try:
        return parse_target(url).host
    except InvalidUrl:
        return ""


class PostbackTestFire:
    """Fire a postback now with a sample conversion, through the same HTTP client, and log it as a test.

    A disabled postback can be test-fired: testing a postback before enabling it is the point.
    The test delivery gets an ID of its own (never that of a real delivery), is never retried,
    and is recorded `delivered` or `failed` with its one attempt marked `test`.
    """

    def __init__(
        self,
        *,
        http: HttpGetter,
        deliveries: DeliveryRecorder,
        secrets: SecretSource,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._http = http
        self._deliveries = deliveries
        self._secrets = secrets
        self._clock = clock

    def _secret_for(self, postback: Postback, url: str, now: datetime) -> SigningSecret | None:
        if not uses_signature(url):
            return None
        value = self._secrets.ensure_signing_secret(postback.id, format_timestamp(now))
        if value is None:
            raise PostbackNotFound(postback.id)  # deleted while it was being test-fired
        return SigningSecret(value)

    def fire(
        self,
        postback: Postback,
        overrides: Mapping[str, ConversionValue],
        removed: frozenset[str] = frozenset(),
    ) -> PostbackTestOutcome:
        """Raises `functions.core.rendering.RenderError` when the values cannot be placed in the URL."""
        now = self._clock()
        conversion = sample_conversion(postback, now, overrides, removed)
        change = ConversionChange(conversion=conversion, previous_status=None, changed_at=now.timestamp())
        delivery_id = delivery_id_for(postback.id, f"{TEST_CONVERSION_PREFIX}{new_ulid()}", conversion.status)
        # As a delivery record keeps it: `{timestamp}` and `{signature}` unfilled.
        url = render_change_url(postback.url, ChangeValues(change), postback.id, delivery_id)
        secret = self._secret_for(postback, url, now)
        started = self._clock()
        sent = attempt_url(url, secret, int(started.timestamp()))
        outcome = self._http.get(sent)
        classification = classify(outcome.status_code, outcome.error)
        attempt = attempt_of(1, started, classification, outcome, test=True)
        state = DeliveryState.DELIVERED if classification.delivered else DeliveryState.FAILED
        self._deliveries.record_test_delivery(
            delivery_id=delivery_id,
            postback_id=postback.id,
            affiliate_id=postback.affiliate_id,
            conversion_id=conversion.conversion_id,
            conversion_status=conversion.status,
            offer_id=conversion.offer_id,
            url=url,
            target_host=_target_host(url),
            state=state,
            reason=classification.reason,
            attempt=attempt,
            now=self._clock(),
        )
        logger.info(
            "test fire of postback %s (host %s): %s", postback.id, _target_host(url), classification.outcome.value
        )
        return PostbackTestOutcome(
            delivery_id=delivery_id,
            url=sent,
            classification=classification,
            status_code=outcome.status_code,
            duration_ms=outcome.duration_ms,
            error=outcome.error,
        )
