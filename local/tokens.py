"""Bearer tokens for the local stack: HS256 JWTs signed with `POSTBACKS_JWT_SECRET` (docs/contract.md §5, §8).

python -m local.tokens                       # an admin token
python -m local.tokens --affiliate aff-42    # a token of affiliate aff-42
"""

from __future__ import annotations

import argparse
import os
import time

import jwt

from functions.settings import Settings, load_settings

DEFAULT_TTL_SECONDS = 12 * 3600


def mint_token(
    settings: Settings,
    *,
    role: str,
    subject: str,
    affiliate_id: str | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    if role not in ("admin", "affiliate"):
        raise ValueError(f"role must be admin or affiliate, got {role!r}")
    if role == "affiliate" and not affiliate_id:
        raise ValueError("an affiliate token needs an affiliate_id")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": subject, "role": role, "iat": issued, "exp": issued + ttl_seconds}
    if affiliate_id:
        claims["affiliate_id"] = affiliate_id
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def admin_token(settings: Settings) -> str:
    return mint_token(settings, role="admin", subject="local-admin")


def affiliate_token(settings: Settings, affiliate_id: str) -> str:
    return mint_token(settings, role="affiliate", subject=f"user-of-{affiliate_id}", affiliate_id=affiliate_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.tokens", description=__doc__.splitlines()[0])
    parser.add_argument("--affiliate", metavar="AFFILIATE_ID", help="mint an affiliate token instead of an admin one")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime in seconds")
    args = parser.parse_args(argv)
    # Tokens for the local stack: read its settings in local mode, as `make run` does.
    settings = load_settings({**os.environ, "POSTBACKS_LOCAL_MODE": os.environ.get("POSTBACKS_LOCAL_MODE") or "1"})
    if args.affiliate:
        print(
            mint_token(
                settings,
                role="affiliate",
                subject=f"user-of-{args.affiliate}",
                affiliate_id=args.affiliate,
                ttl_seconds=args.ttl,
            )
        )
    else:
        print(mint_token(settings, role="admin", subject="local-admin", ttl_seconds=args.ttl))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
