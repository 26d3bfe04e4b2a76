"""What the sender does with the outcome of a GET (docs/sender.md, Outcome classification).

| outcome                                                     | class                          |
|-------------------------------------------------------------|--------------------------------|
| 2xx                                                         | delivered                      |
| 408, 425, 429, 5xx; timeouts; refused/reset; TLS, DNS        | retryable                      |
| 410                                                         | terminal `gone`                |
| other 4xx                                                   | terminal `http_<code>`         |
| 3xx                                                         | terminal `redirect_not_followed` |
| address refused by the egress guard                         | blocked `blocked_destination`  |

`Retry-After` is honoured on 429 and 503 only; the floor wait applies after a timeout or a 429.
Pure: no I/O. Error codes are those of `functions.egress_http.HttpOutcome.error`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OutcomeClass(StrEnum):
    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    TERMINAL = "terminal"
    BLOCKED = "blocked"


TIMEOUT_ERRORS = frozenset({"timeout", "connect_timeout", "read_timeout", "deadline_exceeded"})
RETRYABLE_ERRORS = TIMEOUT_ERRORS | frozenset(
    {"connection_refused", "connection_reset", "dns_error", "tls_error", "protocol_error"}
)
BLOCKED_ERRORS = frozenset({"blocked_destination"})
# A URL the client cannot even parse will not parse on the next attempt either.
TERMINAL_ERRORS = frozenset({"invalid_url"})
RETRYABLE_STATUS_CODES = frozenset({408, 425, 429})
RETRY_AFTER_STATUS_CODES = frozenset({429, 503})

REASON_GONE = "gone"
REASON_REDIRECT = "redirect_not_followed"
REASON_BLOCKED = "blocked_destination"
# A delivery whose postback was deleted or disabled after the match is cancelled, never sent.
REASON_POSTBACK_DELETED = "postback_deleted"
REASON_POSTBACK_DISABLED = "postback_disabled"


@dataclass(frozen=True)
class Classification:
    """How an attempt ended (`classify`): its outcome class, why, and how a retry is to be scheduled."""

    outcome: OutcomeClass
    # Why it failed: `http_503`, `timeout`, `gone`, ...; None when delivered.
    reason: str | None
    honours_retry_after: bool = False
    applies_floor: bool = False

    @property
    def delivered(self) -> bool:
        return self.outcome is OutcomeClass.DELIVERED

    @property
    def retryable(self) -> bool:
        return self.outcome is OutcomeClass.RETRYABLE


def classify(status_code: int | None, error: str | None) -> Classification:
    """Classify one GET by its status code, or by the client's error code when there is no response."""
    if status_code is None:
        code = error or "protocol_error"
        if code in BLOCKED_ERRORS:
            return Classification(OutcomeClass.BLOCKED, REASON_BLOCKED)
        if code in TERMINAL_ERRORS:
            return Classification(OutcomeClass.TERMINAL, code)
        # Unknown network failures are retried: the schedule bounds them.
        return Classification(OutcomeClass.RETRYABLE, code, applies_floor=code in TIMEOUT_ERRORS)
    if 200 <= status_code < 300:
        return Classification(OutcomeClass.DELIVERED, None)
    reason = f"http_{status_code}"
    if status_code in RETRYABLE_STATUS_CODES or 500 <= status_code < 600:
        return Classification(
            OutcomeClass.RETRYABLE,
            reason,
            honours_retry_after=status_code in RETRY_AFTER_STATUS_CODES,
            applies_floor=status_code == 429,
        )
    if status_code == 410:
        return Classification(OutcomeClass.TERMINAL, REASON_GONE)
    if 300 <= status_code < 400:
        return Classification(OutcomeClass.TERMINAL, REASON_REDIRECT)
    return Classification(OutcomeClass.TERMINAL, reason)


EXCERPT_BYTES = 1024
HEADER_TEXT_CHARS = 2048


def printable_text(text: str) -> str:
    """Printable characters only: control characters (newlines included) become spaces."""
    return "".join(char if char.isprintable() else " " for char in text)


def response_excerpt(body: bytes, limit: int = EXCERPT_BYTES) -> str | None:
    """At most `limit` bytes (UTF-8) of printable text from the start of a response body; None if empty."""
    if not body:
        return None
    text = printable_text(body[:limit].decode("utf-8", errors="replace")).strip()
    encoded = text.encode("utf-8")
    if len(encoded) > limit:
        text = encoded[:limit].decode("utf-8", errors="ignore")
    return text or None


def header_text(value: str | None, limit: int = HEADER_TEXT_CHARS) -> str | None:
    """A response header value as logged on an attempt (`Retry-After`, `Location`): printable, at most
    `limit` characters and `limit` bytes in UTF-8."""
    if value is None:
        return None
    text = printable_text(value).strip()[:limit]
    encoded = text.encode("utf-8")
    if len(encoded) > limit:
        text = encoded[:limit].decode("utf-8", errors="ignore")
    return text or None
