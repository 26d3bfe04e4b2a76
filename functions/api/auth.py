"""Authentication of API callers: bearer JWTs (HS256) with the claims of contract §5.

`verify_token` is the one verification. It runs in two places:

- in every route, through `authenticate(request, settings)`, so a missing or bad token gives a
  401 problem document everywhere (the test client, `chalice local`, AWS);
- in `jwt_authorizer`, the Chalice custom authorizer that API Gateway runs in front of the routes
  when the API is packaged with `POSTBACKS_API_AUTHORIZER=1`. Its context (`role`,
  `affiliate_id`) reaches the routes as `request.context['authorizer']`, which `authenticate`
  prefers: clients cannot set it, API Gateway does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt
from chalice.app import AuthRequest, AuthResponse, Request

from functions import bootstrap
from functions.api.blueprint import api
from functions.api.service import Principal, Role
from functions.settings import Settings

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30


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


def verify_token(token: str, settings: Settings) -> Principal:
    """Check signature, `exp`/`nbf`/`iat` (and `iss`/`aud` when configured) and the claims."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=LEEWAY_SECONDS,
            options={"require": ["sub", "role"], "verify_aud": settings.jwt_audience is not None},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationError("token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthenticationError("token is not valid") from exc
    return principal_from_claims(claims)


def authenticate(request: Request, settings: Settings) -> Principal:
    """The caller of a route: from the API Gateway authorizer's context if it ran, else the token."""
    context = request.context.get("authorizer") if isinstance(request.context, dict) else None
    if isinstance(context, dict) and context.get("role"):
        return principal_from_claims(
            {
                "sub": context.get("principalId"),
                "role": context.get("role"),
                "affiliate_id": context.get("affiliate_id"),
            }
        )
    return verify_token(bearer_token(request.headers.get("authorization")), settings)


def authorizer_response(auth_request: AuthRequest, settings: Settings) -> AuthResponse:
    """The authorizer's decision; raises `AuthorizerDenied` (401 at API Gateway) on a bad token."""
    try:
        principal = verify_token(bearer_token(auth_request.token), settings)
    except AuthenticationError as exc:
        raise AuthorizerDenied() from exc
    context = {"role": principal.role.value, "affiliate_id": principal.affiliate_id or ""}
    return AuthResponse(routes=["*"], principal_id=principal.subject, context=context)


@api.authorizer(ttl_seconds=300)
def jwt_authorizer(auth_request: AuthRequest) -> AuthResponse:
    """API Gateway TOKEN authorizer (identity source: the Authorization header)."""
    return authorizer_response(auth_request, bootstrap.settings())
