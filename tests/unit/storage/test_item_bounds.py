"""No delivery record can approach DynamoDB's 400 KB item limit (docs/reliability.md, poison records):
every stored value is bounded, and so is the number of attempts a record keeps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from functions.core.attempts import attempt_of
from functions.core.classification import classify
from functions.core.model import Attempt
from functions.settings import MAX_ATTEMPTS_LIMIT, MAX_URL_BYTES
from functions.storage.delivery_records import attempt_to_map
from functions.storage.delivery_safeguards import REDRIVE_HISTORY_KEPT, trimmed_history
from functions.storage.models import DeliveryModel

pytestmark = pytest.mark.unit

ITEM_LIMIT = 400 * 1024
STARTED = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class WorstOutcome:
    """A response that tries to make its attempt entry as large as it can."""

    status_code: int | None = 307
    error: str | None = "é" * 10_000
    duration_ms: int = 10_000
    resolved_address: str | None = "2001:db8::" + "f" * 10_000
    headers: dict[str, str] = field(
        default_factory=lambda: {"Retry-After": "€" * 100_000, "Location": "https://x/" + "€" * 100_000}
    )
    body_excerpt: bytes = "€".encode() * 100_000


WORST = attempt_of(1, STARTED, classify(307, None), WorstOutcome())


def worst_attempt(number: int) -> Attempt:
    return replace(WORST, number=number)


def test_every_text_of_an_attempt_is_bounded_in_bytes() -> None:
    logged = worst_attempt(1).logged()
    sizes = {key: len(str(value).encode()) for key, value in logged.items()}
    assert sizes["response_excerpt"] <= 1024
    assert sizes["retry_after"] <= 256 and sizes["location"] <= 2048
    assert sizes["error"] <= 128 and sizes["resolved_address"] <= 64


def test_the_largest_possible_record_stays_far_below_the_item_limit() -> None:
    attempts = [worst_attempt(n) for n in range(1, REDRIVE_HISTORY_KEPT + MAX_ATTEMPTS_LIMIT + 1)]
    item = DeliveryModel(
        "dl_" + "a" * 32,
        postback_id="pb_" + "A" * 26,
        affiliate_id="a" * 256,
        conversion_id="c" * 256,
        conversion_status="not_allowed",
        previous_status="not_allowed",
        offer_id="o" * 256,
        url="https://t.example/?" + "x" * MAX_URL_BYTES,
        target_host="t" * 253,
        state="dead_lettered",
        reason="retry_deadline_passed",
        attempts=[attempt_to_map(attempt) for attempt in attempts],
        cycle_attempts=MAX_ATTEMPTS_LIMIT,
        created_at="2026-01-01T00:00:00.000000Z",
        updated_at="2026-01-01T00:00:00.000000Z",
        expires_at=1,
    )
    # Attribute names and values as JSON: an upper bound of DynamoDB's own size count.
    size = len(json.dumps(item.serialize(), ensure_ascii=False).encode())
    assert size < ITEM_LIMIT * 0.6, size


def test_a_redrive_keeps_only_the_newest_attempts() -> None:
    attempts = [worst_attempt(n) for n in range(1, REDRIVE_HISTORY_KEPT + 6)]
    kept = trimmed_history(attempts)
    assert kept is not None and [a.number for a in kept] == list(range(6, REDRIVE_HISTORY_KEPT + 6))
    assert trimmed_history(attempts[:REDRIVE_HISTORY_KEPT]) is None
