"""Domain types shared by the API, the evaluator, the sender and the on-call tools.

Frozen dataclasses, no AWS. Storage modules convert to and from these.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from functions.core.signing import SigningSecret

CONVERSION_STATUSES: tuple[str, ...] = (
    "approved",
    "pending",
    "on_hold",
    "test",
    "fraud",
    "not_allowed",
    "rejected",
    "refunded",
    "blocked",
)
CONVERSION_TYPE_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")


class Scope(StrEnum):
    GLOBAL = "global"
    OFFER = "offer"


class DeliveryState(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset(
    {DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.DEAD_LETTERED, DeliveryState.CANCELLED}
)
ACTIVE_STATES = frozenset({DeliveryState.PENDING, DeliveryState.IN_FLIGHT, DeliveryState.RETRYING})


@dataclass(frozen=True)
class Postback:
    """A postback: which conversion changes fire it (scope, offers, types, statuses) and the URL it sends."""

    id: str
    affiliate_id: str
    scope: Scope
    included_offer_ids: tuple[str, ...]
    excluded_offer_ids: tuple[str, ...]
    conversion_types: tuple[str, ...]
    conversion_statuses: tuple[str, ...]
    url: str
    enabled: bool
    created_at: str
    updated_at: str
    version: int
    # Health, maintained by the sender.
    last_success_at: str | None = None
    consecutive_failures: int = 0
    last_failure_reason: str | None = None
    last_failure_at: str | None = None
    # Audit: the `sub` of the caller that created it and of the one that last changed it.
    created_by: str | None = None
    updated_by: str | None = None
    # The first attempt waits this long after the match (docs/contract.md §5).
    delay_seconds: int = 0
    # Set only by the sender's batch read (`PostbackRepository.get_many`); never shown, never compared.
    signing_secret: SigningSecret | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Attempt:
    """One attempt of a delivery, as logged on the delivery record (docs/sender.md)."""

    number: int
    at: str
    outcome: str  # functions.core.classification.OutcomeClass value
    duration_ms: int | None = None
    status_code: int | None = None
    error: str | None = None
    resolved_address: str | None = None
    retry_after: str | None = None
    location: str | None = None
    response_excerpt: str | None = None
    next_attempt_at: str | None = None
    test: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Every field, unset ones as None (the shape of the dead-letter message body)."""
        return asdict(self)

    def logged(self) -> dict[str, Any]:
        """The fields as stored on the record: unset ones and a false `test` are left out."""
        values = {key: value for key, value in self.to_dict().items() if value is not None}
        if not self.test:
            values.pop("test", None)
        return values


@dataclass(frozen=True)
class Delivery:
    """One delivery record: what the evaluator wrote, the sender's schedule and log, the redrive marks."""

    delivery_id: str
    postback_id: str
    affiliate_id: str
    conversion_id: str
    conversion_status: str  # the status that fired it
    url: str  # rendered at match time; never logged (it carries click data)
    target_host: str
    state: DeliveryState
    created_at: str
    updated_at: str
    previous_status: str | None = None
    offer_id: str | None = None
    reason: str | None = None
    is_test: bool = False
    attempts: tuple[Attempt, ...] = ()
    # Attempts of the current schedule (a redrive starts a new schedule; history is kept).
    cycle_attempts: int = 0
    schedule_started_at: str | None = None
    next_attempt_at: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None  # epoch seconds
    enqueued_at: str | None = None
    delivered_at: str | None = None
    dead_lettered_at: str | None = None
    dead_letter_partition: str | None = None
    redrive_count: int = 0
    redrive_token: str | None = None
    expires_at: int | None = None  # TTL, epoch seconds
    # Dead-lettered only: the copy in the deliveries DLQ was sent (written with the outcome, never on the happy path).
    dlq_copy_sent: bool = False
    # The last host pause this delivery waited for (docs/sender.md, host pause), and how many times it waited.
    host_paused_until: str | None = None
    host_pause_waits: int = 0

    @property
    def last_status_code(self) -> int | None:
        for attempt in reversed(self.attempts):
            if attempt.status_code is not None:
                return attempt.status_code
        return None


_Record = TypeVar("_Record")


def direct_init(cls: type[_Record]) -> type[_Record]:
    """Give a frozen dataclass an `__init__` that stores its fields straight in the instance's `__dict__`.

    For records made for every stream record, match or enqueued delivery (`Conversion`,
    `ConversionChange`, `PlannedDelivery`, `MatchResult`, `OutgoingMessage`): the frozen
    dataclass's own `__init__` sets each field through `object.__setattr__`, at about twice the
    cost. Same parameters and defaults as the dataclass's (a field with a `default_factory` takes
    None for a fresh default), generated from its fields as `dataclasses` generates its own; the
    record stays frozen, compared and printed as a dataclass (tests/unit/core/test_model.py).
    """
    namespace: dict[str, Any] = {}
    parameters: list[str] = []
    stores: list[str] = []
    for item in fields(cls):  # type: ignore[arg-type]
        name = item.name
        if item.default is not MISSING:
            namespace[f"_default_{name}"] = item.default
            parameters.append(f"{name}=_default_{name}")
            stores.append(f"    stored[{name!r}] = {name}")
        elif item.default_factory is not MISSING:
            namespace[f"_factory_{name}"] = item.default_factory
            parameters.append(f"{name}=None")
            stores.append(f"    stored[{name!r}] = _factory_{name}() if {name} is None else {name}")
        else:
            parameters.append(name)
            stores.append(f"    stored[{name!r}] = {name}")
    source = f"def __init__(self, {', '.join(parameters)}):\n    stored = self.__dict__\n" + "\n".join(stores)
    exec(source, namespace)  # field names only, from the class's own definition
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    setattr(cls, "__init__", init)  # noqa: B010 (mypy keeps the dataclass's signature)
    return cls


@direct_init
@dataclass(frozen=True)
class PlannedDelivery:
    """One match, rendered (`functions.core.matching`): what the delivery record is created from."""

    delivery_id: str
    postback_id: str
    affiliate_id: str
    conversion_id: str
    conversion_status: str
    previous_status: str | None
    offer_id: str
    url: str
    target_host: str
    # The first attempt waits this long after the match (the postback's `delay_seconds`).
    delay_seconds: int = 0


@direct_init
@dataclass(frozen=True)
class Conversion:
    """One conversion as the conversion service wrote it (docs/contract.md §3), status normalised."""

    conversion_id: str
    affiliate_id: str
    offer_id: str
    conversion_type: str
    status: str
    attributes: dict[str, str | Decimal | list[str]] = field(default_factory=dict)


@direct_init
@dataclass(frozen=True)
class ConversionChange:
    """A stream record reduced to what firing needs: the new image and the previous status."""

    conversion: Conversion
    previous_status: str | None
    # When the change was written (stream ApproximateCreationDateTime), seconds since the epoch.
    changed_at: float


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and a `Z`: sorts as text in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _crockford(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[number & 31])
        number >>= 5
    return "".join(reversed(chars))


def new_ulid(now_ms: int | None = None) -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, 26 Crockford base32 characters."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    randomness = int.from_bytes(os.urandom(10), "big")
    return _crockford(millis, 10) + _crockford(randomness, 16)


def new_postback_id() -> str:
    return "pb_" + new_ulid()


def _spread_levels() -> tuple[tuple[int, int, int], ...]:
    """How `delivery_id_for` moves each 5-bit group of a 160-bit number into its own byte of 256 bits:
    five levels, each halving the groups of bits in each slot (160 bits in a 256-bit slot, then 80 in
    128, ... 5 in 8) — the low half stays, the high half moves up to the next slot. Per level: the
    mask of the low halves, the mask of the high halves and how far those move."""
    levels = []
    width, slot = 160, 256
    while width > 5:
        half, slot = width // 2, slot // 2
        low = sum(((1 << half) - 1) << (index * 2 * slot) for index in range(128 // slot))
        levels.append((low, ((1 << 256) - 1) & ~low, slot - half))
        width = half
    return tuple(levels)


_SPREAD = _spread_levels()
_LOW1, _HIGH1, _SHIFT1 = _SPREAD[0]
_LOW2, _HIGH2, _SHIFT2 = _SPREAD[1]
_LOW3, _HIGH3, _SHIFT3 = _SPREAD[2]
_LOW4, _HIGH4, _SHIFT4 = _SPREAD[3]
_LOW5, _HIGH5, _SHIFT5 = _SPREAD[4]
# Base32 (RFC 4648, lower case): the character of each 5-bit value, as a byte translation.
_BASE32 = bytes.maketrans(bytes(range(32)), b"abcdefghijklmnopqrstuvwxyz234567")


def delivery_id_for(postback_id: str, conversion_id: str, status: str) -> str:
    """The delivery ID derived from (postback, conversion, status): the deduplication key.

    Deterministic, so a redelivered stream record or a status flip-flop computes the same ID and
    the conditional write refuses a second delivery; it is also the `{deliveryId}` placeholder.
    `"dl_"` and the first 160 bits of SHA-256 in lower-case base32 (32 characters, no padding):
    exactly `base64.b32encode(digest[:20]).decode().lower()`, computed with a few operations on the
    whole number (each 5-bit group moved into a byte of its own, `_spread_levels`, then one byte
    translation) because the evaluator derives one ID per match.
    """
    digest = hashlib.sha256(f"{postback_id}\x1f{conversion_id}\x1f{status}".encode()).digest()
    bits = int.from_bytes(digest[:20], "big")
    bits = (bits & _LOW1) | (bits & _HIGH1) << _SHIFT1
    bits = (bits & _LOW2) | (bits & _HIGH2) << _SHIFT2
    bits = (bits & _LOW3) | (bits & _HIGH3) << _SHIFT3
    bits = (bits & _LOW4) | (bits & _HIGH4) << _SHIFT4
    bits = (bits & _LOW5) | (bits & _HIGH5) << _SHIFT5
    return "dl_" + bits.to_bytes(32, "big").translate(_BASE32).decode("ascii")
