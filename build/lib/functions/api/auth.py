"""Authentication of API callers: bearer JWTs (HS256) with the claims of docs/contract.md §5.

`verify_token` is the one verification. It runs in two places:

- in every route, through `authenticate(request, rules)`, so a missing or bad token gives a
  401 problem document everywhere (the test client, `chalice local`, AWS);
- in `jwt_authorizer`, the Chalice custom authorizer that API Gateway runs in front of the routes
  when the API is packaged with `POSTBACKS_API_AUTHORIZER=1`. API Gateway caches its decision for
  a token (`AUTHORIZER_CACHE_SECONDS`); the route verifies the token again, so a cached decision
  never outlives the token's `exp`.

A token must carry `sub`, `role`, `exp` and `iat`, live at most `MAX_TOKEN_LIFETIME_SECONDS`
(`exp - iat`), and carry `iss` / `aud` equal to the configured issuer / audience where those
are set (docs/contract.md §5). The rules, with the HS256 key, are built once per cold start by
`functions.bootstrap.token_rules` (the key comes from Secrets Manager outside local mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalice.app import AuthRequest, AuthResponse, Request

from functions import bootstrap
from functions.api.blueprint import api
from functions.api.service import Principal, Role

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30
MAX_TOKEN_LIFETIME_SECONDS = 86400
# How long API Gateway reuses the authorizer's decision for one token. Each route verifies the
# token again (so `exp` holds to the second); the cache only spares authorizer invocations.
AUTHORIZER_CACHE_SECONDS = 60


@dataclass(frozen=True)
class TokenRules:
    """What a bearer token is checked against: the HS256 key and the expected issuer/audience."""

    secret: str
    issuer: str | None = None
    audience: str | None = None
    max_lifetime_seconds: int = MAX_TOKEN_LIFETIME_SECONDS

    def __repr__(self) -> str:
        return f"TokenRules(secret=<hidden>, issuer={self.issuer!r}, audience={self.audience!r})"


class AuthenticationError(Exception):
    """No usable credentials; the message is safe to show to the caller."""


class AuthorizerDenied(Exception):
    """Raised by the authorizer Lambda. API Gateway answers 401 when the error message is `Unauthorized`."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization header must be 'Bearer <token>'")
    return token.strip()


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthenticationError("token has no subject")
    role_claim = claims.get("role")
    if role_claim not in (Role.ADMIN.value, Role.AFFILIATE.value):
        raise AuthenticationError("token role must be 'admin' or 'affiliate'")
    role = Role(role_claim)
    affiliate_id = claims.get("affiliate_id")
    if role is Role.AFFILIATE:
        if not isinstance(affiliate_id, str) or not affiliate_id:
            raise AuthenticationError("an affiliate token must carry affiliate_id")
        return Principal(subject, role, affiliate_id)
    return Principal(subject, role, affiliate_id if isinstance(affiliate_id, str) and affiliate_id else None)


def verify_token(token: str, rules: TokenRules) -> Principal:
    """Check the signature, `exp`/`iat`/`nbf`, the lifetime, `iss`/`aud` when configured, the claims."""
    import jwt  # PyJWT on the first verification, not at the Lambda's import (docs/performance.md)

    try:
        claims = jwt.decode(
            token,
            rules.secret,
            algorithms=[ALGORITHM],
            issuer=rules.issuer,
            audience=rules.audience,
            leeway=LEEWAY_SECONDS,
            options={
                "require": ["sub", "role", "exp", "iat"],
                "verify_aud": rules.audience is not None,
                "verify_iss": rules.issuer is not None,
            },
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationError("token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthenticationError("token is not valid") from exc
    lifetime = _lifetime(claims)
    if lifetime is None or lifetime > rules.max_lifetime_seconds:
        raise AuthenticationError(f"token must live at most {rules.max_lifetime_seconds} seconds (exp - iat)")
    return principal_from_claims(claims)


def _lifetime(claims: Mapping[str, Any]) -> float | None:
    issued, expires = claims.get("iat"), claims.get("exp")
    numbers = (int, float)
    if isinstance(issued, bool) or isinstance(expires, bool):
        return None
    if not isinstance(issued, numbers) or not isinstance(expires, numbers):
        return None
    return float(expires) - float(issued)


def authenticate(request: Request, rules: TokenRules) -> Principal:
    """The caller of a route, from its bearer token (verified here even behind the authorizer)."""
    return verify_token(bearer_token(request.headers.get("authorization")), rules)


def authorizer_response(auth_request: AuthRequest, rules: TokenRules) -> AuthResponse:
    """The authorizer's decision; raises `AuthorizerDenied` (401 at API Gateway) on a bad token."""
    try:
        principal = verify_token(bearer_token(auth_request.token), rules)
    except AuthenticationError as exc:
        raise AuthorizerDenied() from exc
    context = {"role": principal.role.value, "affiliate_id": principal.affiliate_id or ""}
    return AuthResponse(routes=["*"], principal_id=principal.subject, context=context)


@api.authorizer(ttl_seconds=AUTHORIZER_CACHE_SECONDS)
def jwt_authorizer(auth_request: AuthRequest) -> AuthResponse:
    """API Gateway TOKEN authorizer (identity source: the Authorization header)."""
    return authorizer_response(auth_request, bootstrap.token_rules())
