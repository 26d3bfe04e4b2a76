"""The attempt-log entry of one GET (docs/sender.md, the attempt log): what happened, sanitised and bounded.

The sender logs one entry per GET on the delivery record; a test fire logs its one GET the same
way, marked `test`. Pure: the GET's outcome is read through `HttpOutcomeView`, the part of
`functions.egress_http.HttpOutcome` an attempt is made from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from functions.core.classification import Classification, header_text, response_excerpt
from functions.core.model import Attempt, format_timestamp


class HttpOutcomeView(Protocol):
    """What an attempt records of the outcome of one GET."""

    @property
    def status_code(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def resolved_address(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def body_excerpt(self) -> bytes: ...


class HttpGetter(Protocol):
    """One GET through the egress guard (`functions.egress_http.PinnedHttpClient`)."""

    def get(self, url: str) -> HttpOutcomeView: ...


# Every stored text of an attempt is bounded (docs/reliability.md, item size): the excerpt and the
# headers by `functions.core.classification`, these two here.
ERROR_TEXT_BYTES = 128
ADDRESS_TEXT_BYTES = 64
# A valid Retry-After is a number or an HTTP date (29 characters); more is kept only to show what was sent.
RETRY_AFTER_TEXT_BYTES = 256


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A response header by name, whatever its case; None if absent."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def attempt_of(
    number: int, started: datetime, classification: Classification, outcome: HttpOutcomeView, test: bool = False
) -> Attempt:
    """Attempt `number`, started at `started`: its class, timing, status or error, and bounded excerpts."""
    is_redirect = outcome.status_code is not None and 300 <= outcome.status_code < 400
    return Attempt(
        number=number,
        at=format_timestamp(started),
        outcome=classification.outcome.value,
        duration_ms=outcome.duration_ms,
        status_code=outcome.status_code,
        error=header_text(outcome.error, ERROR_TEXT_BYTES),
        resolved_address=header_text(outcome.resolved_address, ADDRESS_TEXT_BYTES),
        retry_after=header_text(header(outcome.headers, "Retry-After"), RETRY_AFTER_TEXT_BYTES),
        location=header_text(header(outcome.headers, "Location")) if is_redirect else None,
        response_excerpt=response_excerpt(outcome.body_excerpt),
        test=test,
    )


def with_next(attempt: Attempt, next_attempt_at: str) -> Attempt:
    """The attempt with the time of the retry it scheduled."""
    return replace(attempt, next_attempt_at=next_attempt_at)
