"""Local tokens are the HS256 JWTs the API expects (docs/contract.md §5)."""

from __future__ import annotations

import jwt
import pytest

from functions.settings import Settings
from local.tokens import admin_token, affiliate_token, mint_token

pytestmark = pytest.mark.unit


def test_admin_token_is_signed_with_the_configured_secret() -> None:
    settings = Settings(jwt_secret="s" * 40)
    claims = jwt.decode(admin_token(settings), "s" * 40, algorithms=["HS256"])
    assert claims["role"] == "admin" and claims["sub"] and claims["exp"] > claims["iat"]


def test_affiliate_token_carries_its_affiliate_and_issuer_audience_when_configured() -> None:
    settings = Settings(jwt_secret="s" * 40, jwt_issuer="iss", jwt_audience="aud")
    token = affiliate_token(settings, "aff-42")
    claims = jwt.decode(token, "s" * 40, algorithms=["HS256"], audience="aud", issuer="iss")
    assert (claims["role"], claims["affiliate_id"]) == ("affiliate", "aff-42")


def test_an_affiliate_token_without_affiliate_is_refused() -> None:
    with pytest.raises(ValueError):
        mint_token(Settings(), role="affiliate", subject="x")
