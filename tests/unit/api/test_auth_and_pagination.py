"""Token verification, the authorizer's decision and the cursor format."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from chalice.app import AuthRequest

from functions.api.auth import (
    AuthenticationError,
    AuthorizerDenied,
    TokenRules,
    authorizer_response,
    bearer_token,
    verify_token,
)
from functions.api.body_shapes import field_name
from functions.api.pagination import decode_cursor, encode_cursor, parse_limit
from functions.api.service import Role, parse_if_match
from functions.core.validation import ValidationFailed
from functions.settings import Settings

pytestmark = pytest.mark.unit

SETTINGS = TokenRules(secret=Settings().jwt_secret)
KEY = frozenset({"postback_id", "affiliate_id", "created_at"})


def make_token(secret: str = SETTINGS.secret, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"sub": "u1", "role": "affiliate", "affiliate_id": "aff-1", "iat": now, "exp": now + 600}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm="HS256")


def test_affiliate_token_gives_an_affiliate_principal() -> None:
    principal = verify_token(make_token(), SETTINGS)
    assert principal.role is Role.AFFILIATE and principal.affiliate_id == "aff-1" and principal.subject == "u1"


def test_admin_token_needs_no_affiliate() -> None:
    principal = verify_token(make_token(role="admin", affiliate_id=None), SETTINGS)
    assert principal.is_admin and principal.affiliate_id is None


@pytest.mark.parametrize(
    "claims",
    [
        {"affiliate_id": None},
        {"affiliate_id": ""},
        {"role": "root"},
        {"role": None},
        {"sub": None},
        {"exp": int(time.time()) - 120},
        {"nbf": int(time.time()) + 3600},
    ],
)
def test_tokens_with_bad_claims_are_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(AuthenticationError):
        verify_token(make_token(**claims), SETTINGS)


def test_issuer_and_audience_are_checked_when_configured() -> None:
    settings = TokenRules(secret=SETTINGS.secret, issuer="https://issuer.example", audience="postbacks")
    good = make_token(iss="https://issuer.example", aud="postbacks")
    assert verify_token(good, settings).subject == "u1"
    for bad in (make_token(iss="https://other.example", aud="postbacks"), make_token(iss="https://issuer.example")):
        with pytest.raises(AuthenticationError):
            verify_token(bad, settings)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(AuthenticationError):
        verify_token(make_token(secret="x" * 40), SETTINGS)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Token abc", "abc"])
def test_authorization_header_must_be_a_bearer_token(header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        bearer_token(header)


def test_authorizer_allows_a_valid_token_with_role_context() -> None:
    request = AuthRequest("TOKEN", f"Bearer {make_token()}", "arn:aws:execute-api:us-east-1:1:api/dev/GET/postbacks")
    response = authorizer_response(request, SETTINGS).to_dict(request)
    assert response["principalId"] == "u1"
    assert response["context"] == {"role": "affiliate", "affiliate_id": "aff-1"}
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_authorizer_denies_a_bad_token_with_the_unauthorized_message() -> None:
    request = AuthRequest("TOKEN", "Bearer nope", "arn:aws:execute-api:us-east-1:1:api/dev/GET/postbacks")
    with pytest.raises(AuthorizerDenied, match=r"^Unauthorized$"):
        authorizer_response(request, SETTINGS)


def test_cursor_round_trips_for_its_own_query() -> None:
    query = {"index": "by_affiliate", "affiliate_id": "aff-1", "offer_id": None}
    key = {"postback_id": "pb_1", "affiliate_id": "aff-1", "created_at": "2026-01-01T00:00:00.000000Z"}
    cursor = encode_cursor(query, key)
    assert "=" not in cursor
    assert decode_cursor(cursor, query, KEY, {"affiliate_id": "aff-1"}) == key


@pytest.mark.parametrize(
    "cursor_key",
    [
        {"postback_id": "pb_1", "affiliate_id": "aff-2", "created_at": "t"},  # another partition
        {"postback_id": "pb_1", "affiliate_id": "aff-1"},  # missing attribute
        {"postback_id": "pb_1", "affiliate_id": "aff-1", "created_at": 5},  # wrong type
    ],
)
def test_cursor_with_a_foreign_key_is_refused(cursor_key: dict[str, Any]) -> None:
    query = {"index": "by_affiliate", "affiliate_id": "aff-1", "offer_id": None}
    with pytest.raises(ValidationFailed) as raised:
        decode_cursor(encode_cursor(query, cursor_key), query, KEY, {"affiliate_id": "aff-1"})
    assert [error.field for error in raised.value.errors] == ["cursor"]


def test_cursor_of_another_query_is_refused() -> None:
    query = {"index": "by_affiliate", "affiliate_id": "aff-1", "offer_id": None}
    cursor = encode_cursor(query, {"postback_id": "p", "affiliate_id": "aff-1", "created_at": "t"})
    with pytest.raises(ValidationFailed):
        decode_cursor(cursor, {**query, "offer_id": "o-1"}, KEY, {"affiliate_id": "aff-1"})
    for garbage in ("!!!", "bm90IGpzb24", "W10"):
        with pytest.raises(ValidationFailed):
            decode_cursor(garbage, query, KEY, {"affiliate_id": "aff-1"})


def test_limit_defaults_to_50_and_accepts_1_to_100() -> None:
    assert parse_limit(None) == 50 and parse_limit("") == 50
    assert parse_limit("1") == 1 and parse_limit("100") == 100
    for bad in ("0", "101", "1.5", "-3", "ten"):
        with pytest.raises(ValidationFailed):
            parse_limit(bad)


def test_error_locations_become_json_field_names() -> None:
    assert field_name(("conversion_statuses", 1)) == "conversion_statuses[1]"
    assert field_name(("url",)) == "url"
    assert field_name(()) == "body"


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        (None, None),
        ('"3"', [3]),
        ("3", [3]),
        ('W/"3"', []),
        ('W/"3", "3"', [3]),
        ('"1", "2"', [1, 2]),
        ("*", [None]),
        ('"x"', []),
    ],
)
def test_if_match_forms(header: str | None, versions: list[int | None] | None) -> None:
    assert parse_if_match(header) == versions
