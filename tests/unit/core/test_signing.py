"""Signed postbacks (docs/contract.md §6): the known-answer vectors, the wire form, placement rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from urllib3.util.url import _encode_target

from functions.core.model import Conversion, ConversionChange
from functions.core.placeholders import BY_NAME
from functions.core.rendering import ChangeValues, render_change_url
from functions.core.signing import (
    SECRET_PATTERN,
    SigningSecret,
    SigningSecretMissing,
    attempt_url,
    new_signing_secret,
    signature,
    signature_problems,
    wire_target,
)
from functions.egress_http import _request_target
from tests.support.receiving_snippets import VECTORS, vectors

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("vector", vectors(), ids=lambda vector: vector["name"])
def test_known_answer_vectors(vector: dict[str, object]) -> None:
    secret, message, expected = str(vector["secret"]), str(vector["message"]), str(vector["signature"])
    assert signature(secret, message) == expected
    assert vector["target"] == message + expected
    sent = attempt_url(str(vector["url"]), SigningSecret(secret), int(str(vector["timestamp"])))
    assert sent == vector["sent_url"]
    assert sent.endswith(str(vector["target"]))


def test_the_vectors_file_holds_the_contracts_example() -> None:
    document = json.loads(VECTORS.read_text(encoding="utf-8"))
    messages = [vector["message"] for vector in document["vectors"]]
    assert "/cb?click=abc&ts=1795998367&sig=" in messages
    assert len(document["vectors"]) >= 3


def test_signature_is_base64url_hmac_sha256_without_padding() -> None:
    digest = hmac.new(b"pbsec_key", b"/cb?a=1&sig=", hashlib.sha256).digest()
    assert signature("pbsec_key", "/cb?a=1&sig=") == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", signature("pbsec_key", "/cb?a=1&sig="))


def test_new_secrets_are_prefixed_random_and_distinct() -> None:
    first, second = new_signing_secret(), new_signing_secret()
    assert first != second
    assert SECRET_PATTERN.fullmatch(first) and first.startswith("pbsec_")
    assert base64.urlsafe_b64decode(first.removeprefix("pbsec_") + "=") == base64.urlsafe_b64decode(
        first.removeprefix("pbsec_") + "="
    )
    assert len(base64.urlsafe_b64decode(first.removeprefix("pbsec_") + "=")) == 32
    assert new_signing_secret(lambda size: bytes(size)) == "pbsec_" + "A" * 43


def test_a_secret_never_shows_in_its_repr_or_str() -> None:
    secret = SigningSecret("pbsec_very-secret-value")
    assert "very-secret" not in repr(secret) and "very-secret" not in str(secret)
    assert "very-secret" not in f"{secret} {secret!r}"
    assert secret.reveal() == "pbsec_very-secret-value"


def test_each_attempt_fills_its_own_timestamp_and_signature() -> None:
    url = "https://t.example/cb?click=abc&ts={timestamp}&sig={signature}"
    secret = SigningSecret("pbsec_k")
    first, later = attempt_url(url, secret, 1_800_000_000), attempt_url(url, secret, 1_800_000_060)
    assert "ts=1800000000&" in first and "ts=1800000060&" in later
    assert first.rpartition("=")[2] != later.rpartition("=")[2]
    assert first.rpartition("=")[2] == signature("pbsec_k", "/cb?click=abc&ts=1800000000&sig=")


def test_a_timestamp_alone_needs_no_secret_and_a_plain_url_is_unchanged() -> None:
    assert attempt_url("https://t.example/cb/{timestamp}?t={timestamp}", None, 5) == "https://t.example/cb/5?t=5"
    plain = "https://t.example/cb?a=b c"
    assert attempt_url(plain, None, 5) is plain


def test_a_signed_url_without_a_secret_is_never_sent_unsigned() -> None:
    with pytest.raises(SigningSecretMissing):
        attempt_url("https://t.example/cb?sig={signature}", None, 5)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://t.example/cb?sig={signature}", True),
        ("https://t.example/cb?a=1&ts={timestamp}&sig={signature}", True),
        ("https://t.example/cb?sig={signature}&a=1", False),
        ("https://t.example/cb?a=1&sig={signature}#frag", False),
        ("https://t.example/cb#x?sig={signature}", False),
        ("https://t.example/{signature}", False),
        ("https://t.example/cb?{signature}", False),
        ("https://t.example/cb?a=1&={signature}", False),
        ("https://t.example/cb?a={signature}&b={signature}", False),
        ("https://t.example/cb?{affS1}={signature}", False),
        ("https://t.example/cb?a=1", True),
    ],
)
def test_signature_must_be_the_value_of_the_final_query_parameter(url: str, ok: bool) -> None:
    assert (signature_problems(url) == []) is ok


def test_rendering_keeps_the_attempt_placeholders_for_the_sender() -> None:
    template = "https://t.example/cb?click={affS1}&ts={timestamp}&sig={signature}"
    conversion = Conversion("c-1", "aff-1", "offer-1", "sale", "approved", {"aff_s1": "a&b {signature}"})
    values = ChangeValues(ConversionChange(conversion=conversion, previous_status=None, changed_at=0.0))
    rendered = render_change_url(template, values, "pb_1", "dl_1")
    assert rendered == "https://t.example/cb?click=a%26b%20%7Bsignature%7D&ts={timestamp}&sig={signature}"
    assert BY_NAME["timestamp"].restricted is False and BY_NAME["signature"].restricted is False


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@given(path=_TEXT, query=_TEXT)
@example(path="a b/%zz", query="x=%41%2f|y")
@example(path="p%2fq", query="x=%E2%82%ac&y=é")
def test_the_signed_target_is_exactly_what_the_http_client_writes(path: str, query: str) -> None:
    url = "https://t.example/" + path.replace("?", "").replace("#", "") + "?" + query.replace("#", "") + "&s="
    target = wire_target(url)
    # The pinned client's request target, as urllib3 encodes it before writing the request line.
    assert _encode_target(_request_target(url)) == target
    assert _encode_target(target) == target  # a signed URL in wire form is sent unchanged


def test_values_rendered_by_us_are_already_in_wire_form() -> None:
    url = "https://t.example/cb?v=" + quote("ä /?&=#%", safe="") + "&sig="
    assert wire_target(url) == url.removeprefix("https://t.example")
