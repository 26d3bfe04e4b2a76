"""The outcome classification table of docs/sender.md, and what an attempt keeps of a response."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.core.classification import OutcomeClass, classify, header_text, response_excerpt

pytestmark = pytest.mark.unit


@given(st.integers(min_value=200, max_value=299))
def test_every_2xx_is_delivered(code: int) -> None:
    assert classify(code, None).outcome is OutcomeClass.DELIVERED


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504, 599])
def test_transient_statuses_are_retryable(code: int) -> None:
    result = classify(code, None)
    assert result.outcome is OutcomeClass.RETRYABLE
    assert result.reason == f"http_{code}"


@pytest.mark.parametrize(
    "error",
    [
        "timeout",
        "connect_timeout",
        "read_timeout",
        "deadline_exceeded",
        "connection_refused",
        "connection_reset",
        "dns_error",
        "tls_error",
        "protocol_error",
    ],
)
def test_network_failures_are_retryable(error: str) -> None:
    result = classify(None, error)
    assert result.outcome is OutcomeClass.RETRYABLE
    assert result.reason == error


def test_410_is_terminal_gone() -> None:
    result = classify(410, None)
    assert (result.outcome, result.reason) == (OutcomeClass.TERMINAL, "gone")


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 422, 451])
def test_other_4xx_are_terminal_with_their_code(code: int) -> None:
    result = classify(code, None)
    assert (result.outcome, result.reason) == (OutcomeClass.TERMINAL, f"http_{code}")


@pytest.mark.parametrize("code", [300, 301, 302, 303, 307, 308])
def test_redirects_are_terminal_and_not_followed(code: int) -> None:
    result = classify(code, None)
    assert (result.outcome, result.reason) == (OutcomeClass.TERMINAL, "redirect_not_followed")


def test_a_blocked_destination_is_never_retried() -> None:
    result = classify(None, "blocked_destination")
    assert (result.outcome, result.reason) == (OutcomeClass.BLOCKED, "blocked_destination")
    assert not result.retryable


def test_an_invalid_url_is_terminal() -> None:
    assert classify(None, "invalid_url").outcome is OutcomeClass.TERMINAL


def test_retry_after_is_honoured_on_429_and_503_only() -> None:
    honoured = {code for code in range(100, 600) if classify(code, None).honours_retry_after}
    assert honoured == {429, 503}


def test_the_floor_applies_after_timeouts_and_429_only() -> None:
    assert classify(429, None).applies_floor
    assert classify(None, "read_timeout").applies_floor
    assert classify(None, "deadline_exceeded").applies_floor
    assert not classify(503, None).applies_floor
    assert not classify(None, "connection_refused").applies_floor


@given(st.binary(max_size=5000))
def test_an_excerpt_is_printable_and_at_most_one_kib(body: bytes) -> None:
    excerpt = response_excerpt(body)
    if excerpt is not None:
        assert len(excerpt.encode("utf-8")) <= 1024
        assert excerpt.isprintable()


def test_an_excerpt_keeps_the_text_and_drops_control_characters() -> None:
    assert response_excerpt(b"ok\r\n\x1b[31mred\x00") == "ok   [31mred"
    assert response_excerpt(b"") is None


def test_header_text_is_printable_and_bounded() -> None:
    assert header_text("http://a.example/\r\nx") == "http://a.example/  x"
    assert header_text(None) is None
    assert len(header_text("x" * 5000) or "") == 2048
