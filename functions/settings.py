"""The one place the environment is read.

Every setting of the system is an environment variable read here. Most code receives a
`Settings` object (built once per cold start by `load_settings()`); the few values that are
needed at import time (pynamodb `Meta` table names, decorator arguments) are exposed as module
constants below, read from the same variables.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from functions.core.metadata import overlaps_metadata

DEFAULT_JWT_SECRET = "local-dev-secret-change-me-0123456789"
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
MIN_JWT_SECRET_BYTES = 32
# Bounds that keep every delivery record far below DynamoDB's 400 KB item limit (docs/reliability.md):
# the rendered URL (`POSTBACKS_MAX_URL_BYTES`) and the attempts of one schedule (`POSTBACKS_MAX_ATTEMPTS`).
MIN_URL_BYTES = 2048
MAX_URL_BYTES = 16384
MAX_ATTEMPTS_LIMIT = 30
ORIGIN_PATTERN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting has a value the system cannot run with."""


def _env(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _env(environ, name, str(default))
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bounded_int(environ: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    value = _int(environ, name, default, minimum)
    if value > maximum:
        raise SettingsError(f"{name} must be <= {maximum}, got {value}")
    return value


def _float(environ: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = _env(environ, name, str(default))
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _flag(environ: Mapping[str, str], name: str) -> bool:
    raw = _env(environ, name, "0").lower()
    if raw in ("0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")


def weak_jwt_secret_problem(secret: str) -> str | None:
    """Why `secret` may not sign API tokens outside local mode, or None when it is strong enough."""
    if secret == DEFAULT_JWT_SECRET:
        return "is the public local default"
    if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        return f"is shorter than {MIN_JWT_SECRET_BYTES} bytes"
    return None


def parse_private_targets(raw: str) -> tuple[Network, ...]:
    """`POSTBACKS_ALLOW_PRIVATE_TARGETS`: `1` (loopback), `0`/empty (none) or a CIDR list.

    A range that includes any cloud metadata address (`functions.core.metadata`) is refused.
    """
    raw = raw.strip()
    if raw in ("", "0"):
        return ()
    if raw == "1":
        return tuple(ipaddress.ip_network(cidr) for cidr in LOOPBACK_NETWORKS)
    networks: list[Network] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise SettingsError(
                f"POSTBACKS_ALLOW_PRIVATE_TARGETS: {part!r} is not a CIDR (use 1, 0 or a CIDR list)"
            ) from exc
        if overlaps_metadata(networks[-1]):
            raise SettingsError(
                f"POSTBACKS_ALLOW_PRIVATE_TARGETS: {part!r} includes cloud metadata addresses "
                "(169.254.0.0/16, fd00:ec2::/32), which are never allowed"
            )
    return tuple(networks)


def parse_ports(raw: str) -> frozenset[int]:
    ports: set[int] = set()
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise SettingsError(f"POSTBACKS_ALLOWED_PORTS: {part!r} is not a port")
        ports.add(int(part))
    return frozenset(ports)


def parse_cors_origins(raw: str) -> frozenset[str]:
    """`POSTBACKS_CORS_ORIGINS`: comma-separated origins (`scheme://host[:port]`), compared exactly."""
    origins: set[str] = set()
    for part in raw.split(","):
        origin = part.strip().rstrip("/")
        if not origin:
            continue
        if not ORIGIN_PATTERN.fullmatch(origin):
            raise SettingsError(
                f"POSTBACKS_CORS_ORIGINS: {part.strip()!r} is not an origin like https://app.example:8443"
            )
        origins.add(origin.lower())
    return frozenset(origins)


def parse_name_list(raw: str) -> frozenset[str]:
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """The process's configuration, read from the environment once (`load_settings`)."""

    stage: str = "local"
    # `POSTBACKS_LOCAL_MODE=1`: a developer's machine or the tests (`make run`, local/, tests/).
    local_mode: bool = True
    region: str = "us-east-1"
    # `AWS_ENDPOINT_URL`: every AWS client's endpoint (the local stack's moto server); None: AWS itself.
    aws_endpoint_url: str | None = None
    # Resource names (names or full queue URLs; names are resolved once per cold start).
    postbacks_table: str = "postbacks"
    deliveries_table: str = "postback-deliveries"
    conversions_table: str = "conversions"
    deliveries_queue: str = "postback-deliveries"
    deliveries_dlq: str = "postback-deliveries-dlq"
    evaluator_dlq: str = "postback-evaluator-dlq"
    # Authentication. Outside local mode the API's HS256 secret is read from Secrets Manager
    # (`jwt_secret_arn`, see `functions.bootstrap.token_rules`); `jwt_secret` is local mode's.
    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_secret_arn: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Egress guard.
    allow_private_targets: tuple[Network, ...] = ()
    allowed_ports: frozenset[int] = frozenset({80, 443, 8080, 8443})
    # Restricted placeholders affiliates may use (`*` for all of them).
    affiliate_restricted_placeholders: frozenset[str] = frozenset()
    # Browser origins that get CORS headers (exact match, lower case).
    cors_origins: frozenset[str] = frozenset()
    # Limits.
    max_postbacks_per_affiliate: int = 100
    max_offers_per_postback: int = 500
    max_url_length: int = 2048
    # A rendered URL longer than this (UTF-8 bytes) is not sent: dead-lettered `url_too_long` (docs/contract.md §2).
    max_url_bytes: int = 8192
    # Evaluator.
    rules_cache_seconds: float = 5.0
    delivery_ttl_days: int = 90
    # The batch's conditional delivery writes in flight at once (each is one network round trip).
    evaluator_write_concurrency: int = 16
    # Sender: retry schedule and HTTP.
    retry_base_seconds: float = 30.0
    max_attempts: int = 13
    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 5.0
    total_timeout_seconds: float = 10.0
    max_response_bytes: int = 65536
    sender_max_concurrency: int = 50
    sender_per_host_concurrency: int = 10
    lease_seconds: float = 30.0
    # A sender invocation with a GET in flight this long takes more messages while it waits (0: never).
    sender_backfill_after_seconds: float = 1.0
    # Tracker protection (docs/contract.md §6): consecutive failures that pause a host (0: off), first pause.
    host_pause_after: int = 5
    host_pause_seconds: float = 60.0
    # Test fires per postback per minute (docs/contract.md §5).
    test_fires_per_minute: int = 10

    @property
    def is_local(self) -> bool:
        return self.local_mode

    @property
    def retry_deadline_seconds(self) -> float:
        """72 h at the default base of 30 s (base x 8640)."""
        return self.retry_base_seconds * 8640


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment; raises SettingsError on a bad value."""
    env = os.environ if environ is None else environ
    stage = _env(env, "POSTBACKS_STAGE", "local")
    local_mode = _flag(env, "POSTBACKS_LOCAL_MODE")
    secret = _env(env, "POSTBACKS_JWT_SECRET", "")
    secret_arn = _env(env, "POSTBACKS_JWT_SECRET_ARN", "") or None
    private_targets = _env(env, "POSTBACKS_ALLOW_PRIVATE_TARGETS", "")
    if not local_mode:
        if secret:
            raise SettingsError(
                "POSTBACKS_JWT_SECRET is accepted only in local mode (POSTBACKS_LOCAL_MODE=1); "
                "elsewhere give the API the ARN of the secret in POSTBACKS_JWT_SECRET_ARN"
            )
        if parse_private_targets(private_targets):
            raise SettingsError(
                "POSTBACKS_ALLOW_PRIVATE_TARGETS is accepted only in local mode (POSTBACKS_LOCAL_MODE=1): "
                "outside it every postback target must be public"
            )
    if secret_arn is not None and not secret_arn.startswith("arn:"):
        raise SettingsError(f"POSTBACKS_JWT_SECRET_ARN must be a Secrets Manager ARN, got {secret_arn!r}")
    restricted = _env(env, "POSTBACKS_AFFILIATE_RESTRICTED_PLACEHOLDERS", "")
    return Settings(
        stage=stage,
        local_mode=local_mode,
        region=_env(env, "AWS_REGION", _env(env, "AWS_DEFAULT_REGION", "us-east-1")),
        aws_endpoint_url=_env(env, "AWS_ENDPOINT_URL", "") or None,
        postbacks_table=_env(env, "POSTBACKS_TABLE", "postbacks"),
        deliveries_table=_env(env, "POSTBACKS_DELIVERIES_TABLE", "postback-deliveries"),
        conversions_table=_env(env, "POSTBACKS_CONVERSIONS_TABLE", "conversions"),
        deliveries_queue=_env(env, "POSTBACKS_DELIVERIES_QUEUE", "postback-deliveries"),
        deliveries_dlq=_env(env, "POSTBACKS_DELIVERIES_DLQ", "postback-deliveries-dlq"),
        evaluator_dlq=_env(env, "POSTBACKS_EVALUATOR_DLQ", "postback-evaluator-dlq"),
        jwt_secret=secret or DEFAULT_JWT_SECRET,
        jwt_secret_arn=secret_arn,
        jwt_issuer=env.get("POSTBACKS_JWT_ISSUER") or None,
        jwt_audience=env.get("POSTBACKS_JWT_AUDIENCE") or None,
        allow_private_targets=parse_private_targets(private_targets),
        allowed_ports=parse_ports(_env(env, "POSTBACKS_ALLOWED_PORTS", "80,443,8080,8443")),
        affiliate_restricted_placeholders=parse_name_list(restricted),
        cors_origins=parse_cors_origins(_env(env, "POSTBACKS_CORS_ORIGINS", "")),
        max_postbacks_per_affiliate=_int(env, "POSTBACKS_MAX_POSTBACKS_PER_AFFILIATE", 100, 1),
        max_offers_per_postback=_int(env, "POSTBACKS_MAX_OFFERS_PER_POSTBACK", 500, 1),
        rules_cache_seconds=_float(env, "POSTBACKS_RULES_CACHE_SECONDS", 5.0),
        max_url_bytes=_bounded_int(env, "POSTBACKS_MAX_URL_BYTES", 8192, MIN_URL_BYTES, MAX_URL_BYTES),
        max_attempts=_bounded_int(env, "POSTBACKS_MAX_ATTEMPTS", 13, 1, MAX_ATTEMPTS_LIMIT),
        delivery_ttl_days=_int(env, "POSTBACKS_DELIVERY_TTL_DAYS", 90, 1),
        evaluator_write_concurrency=_bounded_int(env, "POSTBACKS_EVALUATOR_WRITE_CONCURRENCY", 16, 1, 64),
        retry_base_seconds=_float(env, "POSTBACKS_RETRY_BASE_SECONDS", 30.0, 0.001),
        connect_timeout_seconds=_float(env, "POSTBACKS_CONNECT_TIMEOUT_SECONDS", 3.0, 0.01),
        read_timeout_seconds=_float(env, "POSTBACKS_READ_TIMEOUT_SECONDS", 5.0, 0.01),
        total_timeout_seconds=_float(env, "POSTBACKS_TOTAL_TIMEOUT_SECONDS", 10.0, 0.01),
        max_response_bytes=_int(env, "POSTBACKS_MAX_RESPONSE_BYTES", 65536, 1),
        sender_max_concurrency=_int(env, "POSTBACKS_SENDER_MAX_CONCURRENCY", 50, 1),
        sender_per_host_concurrency=_int(env, "POSTBACKS_SENDER_PER_HOST_CONCURRENCY", 10, 1),
        lease_seconds=_float(env, "POSTBACKS_LEASE_SECONDS", 30.0, 1.0),
        sender_backfill_after_seconds=_float(env, "POSTBACKS_SENDER_BACKFILL_AFTER_SECONDS", 1.0),
        host_pause_after=_int(env, "POSTBACKS_HOST_PAUSE_AFTER", 5),
        host_pause_seconds=_float(env, "POSTBACKS_HOST_PAUSE_SECONDS", 60.0, 1.0),
        test_fires_per_minute=_int(env, "POSTBACKS_TEST_FIRES_PER_MINUTE", 10, 1),
    )


# Import-time values (pynamodb Meta, decorator arguments), from the same variables.
REGION = _env(os.environ, "AWS_REGION", _env(os.environ, "AWS_DEFAULT_REGION", "us-east-1"))
POSTBACKS_TABLE = _env(os.environ, "POSTBACKS_TABLE", "postbacks")
DELIVERIES_TABLE = _env(os.environ, "POSTBACKS_DELIVERIES_TABLE", "postback-deliveries")
CONVERSIONS_TABLE = _env(os.environ, "POSTBACKS_CONVERSIONS_TABLE", "conversions")
DELIVERIES_QUEUE = _env(os.environ, "POSTBACKS_DELIVERIES_QUEUE", "postback-deliveries")
# `1` when packaging for AWS: API Gateway runs the JWT authorizer in front of the API routes.
API_AUTHORIZER = _env(os.environ, "POSTBACKS_API_AUTHORIZER", "0") == "1"
# The handler string of this Lambda (the runtime sets `_HANDLER`; empty outside Lambda): a handler
# module imports its heavy dependencies in the init phase only in its own Lambda.
LAMBDA_HANDLER = os.environ.get("_HANDLER", "")
# Chalice's decorators need the stream ARN at package time; the merge template overrides it.
CONVERSIONS_STREAM_ARN = _env(
    os.environ,
    "POSTBACKS_CONVERSIONS_STREAM_ARN",
    "arn:aws:dynamodb:us-east-1:123456789012:table/conversions/stream/1970-01-01T00:00:00.000",
)
