"""The synthetic but realistic workload shared by the benchmarks.

1,000 affiliates x 20 postbacks; conversion records with affiliates drawn from a Zipf
distribution (s = 1.1), as the conversions stream would deliver them to Lambda
(NEW_AND_OLD_IMAGES). The record mix is designed so that about 30 % are status changes that
fire at least one postback:

| kind | share | change | fires |
|---|---|---|---|
| `approve` | 25 % | pending -> approved on an offer with an offer-scoped postback of that type | 1 |
| `reject` | 5 % | pending -> rejected, offer-scoped postback listening to rejections too | 1-2 |
| `insert` | 25 % | new conversion, status pending | 0 |
| `correction` | 25 % | payout corrected, status unchanged (approved) | 0 |
| `other` | 20 % | pending -> on_hold, or approved on an offer nobody tracks | 0 |

Postback j (0..19) of each affiliate: j < 18 is offer-scoped to `offer-j`, type `sale` (even j)
or `lead` (odd j), statuses `approved` (plus `rejected` when j % 3 == 0); j = 18 is global
(except `offer-0`), types sale and lead, statuses rejected and refunded; j = 19 is global, type
signup, status approved.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bench.stats import ZipfSampler
from functions.core.model import Postback, Scope
from tests.support.conversions import postback
from tests.support.streams import stream_record

AFFILIATES = 1000
POSTBACKS_PER_AFFILIATE = 20
ZIPF_EXPONENT = 1.1
OFFER_SCOPED = 18
UNTRACKED_OFFERS = range(20, 30)
CREATED_AT = "2026-01-01T00:00:00.000000Z"
URL_TEMPLATE = (
    "https://{host}/postback?click={{affS1}}&sub2={{affS2}}&status={{conversionStatus}}"
    "&payout={{payout}}&cur={{currency}}&txn={{externalId}}&dedup={{deliveryId}}"
)

KIND_SHARES: tuple[tuple[str, float], ...] = (
    ("approve", 0.25),
    ("reject", 0.05),
    ("insert", 0.25),
    ("correction", 0.25),
    ("other", 0.20),
)
FIRING_KINDS = frozenset({"approve", "reject"})


def affiliate_id(rank: int) -> str:
    return f"aff-{rank:04d}"


def postback_id(rank: int, index: int) -> str:
    return f"pb_bench{rank:04d}x{index:02d}"


def postbacks_of(rank: int, host: str | None = None) -> list[Postback]:
    """The 20 postbacks of the affiliate of Zipf rank `rank`."""
    url = URL_TEMPLATE.format(host=host or f"tracker-{rank % 97}.example.com")
    postbacks: list[Postback] = []
    included: tuple[str, ...]
    excluded: tuple[str, ...]
    for index in range(POSTBACKS_PER_AFFILIATE):
        if index < OFFER_SCOPED:
            scope, included, excluded = Scope.OFFER, (f"offer-{index}",), ()
            types: tuple[str, ...] = ("sale",) if index % 2 == 0 else ("lead",)
            statuses: tuple[str, ...] = ("approved", "rejected") if index % 3 == 0 else ("approved",)
        elif index == OFFER_SCOPED:
            scope, included, excluded = Scope.GLOBAL, (), ("offer-0",)
            types, statuses = ("sale", "lead"), ("rejected", "refunded")
        else:
            scope, included, excluded = Scope.GLOBAL, (), ()
            types, statuses = ("signup",), ("approved",)
        postbacks.append(
            postback(
                postback_id(rank, index),
                affiliate_id(rank),
                scope=scope,
                included=included,
                excluded=excluded,
                types=types,
                statuses=statuses,
                url=url,
                updated_at=CREATED_AT,
            )
        )
    return postbacks


def all_postbacks(affiliates: int = AFFILIATES, host: str | None = None) -> list[Postback]:
    return [postback for rank in range(1, affiliates + 1) for postback in postbacks_of(rank, host)]


@dataclass(frozen=True)
class GeneratedRecord:
    kind: str
    affiliate_rank: int
    record: dict[str, Any]


def _conversion(
    conversion_id: str, rank: int, offer: int, conversion_type: str, status: str, payout: Decimal
) -> dict[str, Any]:
    return {
        "conversion_id": conversion_id,
        "affiliate_id": affiliate_id(rank),
        "offer_id": f"offer-{offer}",
        "conversion_type": conversion_type,
        "status": status,
        "cid": f"click-{conversion_id}",
        "external_id": f"order-{conversion_id}",
        "aff_s1": f"s1-{conversion_id}",
        "aff_s2": "campaign-7",
        "payout": payout,
        "revenue": payout * 2,
        "currency": "USD",
        "created_at": "2026-11-24T10:00:00Z",
        "status_changed_at": "2026-11-24T10:05:00Z",
    }


class RecordGenerator:
    """Lambda-shaped DynamoDB stream records for the mix above, reproducible from the rng."""

    def __init__(
        self,
        rng: random.Random,
        affiliates: int = AFFILIATES,
        exponent: float = ZIPF_EXPONENT,
        conversion_prefix: str = "cv",
    ) -> None:
        self._rng = rng
        self._prefix = conversion_prefix
        self.zipf = ZipfSampler(affiliates, exponent, rng)
        self._sequence = 0
        kinds, shares = zip(*KIND_SHARES, strict=True)
        self._kinds: tuple[str, ...] = kinds
        self._shares: tuple[float, ...] = shares

    def next(self, changed_at: float) -> GeneratedRecord:
        rng = self._rng
        self._sequence += 1
        rank = self.zipf.draw()
        kind = rng.choices(self._kinds, self._shares)[0]
        conversion_id = f"{self._prefix}-{self._sequence:08d}-{rng.getrandbits(32):08x}"
        payout = Decimal(rng.randint(100, 5000)) / 100
        old: dict[str, Any] | None
        if kind in ("approve", "reject"):
            index = rng.randrange(OFFER_SCOPED)
            if kind == "reject":
                index = rng.choice([j for j in range(OFFER_SCOPED) if j % 3 == 0])
            conversion_type = "sale" if index % 2 == 0 else "lead"
            new_status = "approved" if kind == "approve" else "rejected"
            old = _conversion(conversion_id, rank, index, conversion_type, "pending", payout)
            new = _conversion(conversion_id, rank, index, conversion_type, new_status, payout)
        elif kind == "insert":
            old = None
            new = _conversion(conversion_id, rank, rng.randrange(30), rng.choice(("sale", "lead")), "pending", payout)
        elif kind == "correction":
            offer = rng.randrange(OFFER_SCOPED)
            conversion_type = "sale" if offer % 2 == 0 else "lead"
            old = _conversion(conversion_id, rank, offer, conversion_type, "approved", payout)
            new = _conversion(conversion_id, rank, offer, conversion_type, "approved", payout + 1)
        else:
            if rng.random() < 0.5:
                offer = rng.randrange(30)
                old = _conversion(conversion_id, rank, offer, "sale", "pending", payout)
                new = _conversion(conversion_id, rank, offer, "sale", "on_hold", payout)
            else:
                offer = rng.choice(list(UNTRACKED_OFFERS))
                old = _conversion(conversion_id, rank, offer, "sale", "pending", payout)
                new = _conversion(conversion_id, rank, offer, "sale", "approved", payout)
        record = stream_record(
            "INSERT" if old is None else "MODIFY",
            new=new,
            old=old,
            sequence_number=f"{self._sequence:021d}",
            created_at=changed_at,
        )
        return GeneratedRecord(kind, rank, record)

    def batch(self, size: int, changed_at: float) -> list[GeneratedRecord]:
        return [self.next(changed_at) for _ in range(size)]


@dataclass(frozen=True)
class Floor:
    """The request floor without caching, for one batch (docs/performance.md, benchmark 1)."""

    queries: int
    writes: int
    sends: int

    @property
    def total(self) -> int:
        return self.queries + self.writes + self.sends


def floor_for_batch(distinct_affiliates: int, deliveries: int) -> Floor:
    """One query per distinct affiliate, one conditional write per delivery, a SendMessageBatch per ten."""
    return Floor(distinct_affiliates, deliveries, -(-deliveries // 10))
