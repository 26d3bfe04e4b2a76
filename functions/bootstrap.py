"""Composition root: builds each component once per cold start, on first use.

Every getter is cached and imports what it builds only when called, so a Lambda constructs (and
imports) only the parts it uses: the sender never builds the API's service, the API never
builds an HTTP client. Tests build components directly with fakes, or call `reset()` after
changing the environment.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from functions.settings import Settings, load_settings

if TYPE_CHECKING:
    from functions.api.auth import TokenRules
    from functions.api.service import PostbackService
    from functions.evaluator.service import ConversionEvaluator
    from functions.sender.service import PostbackTestFire
    from functions.storage.delivery_attempts import DeliveryAttemptRepository
    from functions.storage.postbacks import PostbackRepository


@functools.cache
def settings() -> Settings:
    from functions.audit import log_effective_policy

    loaded = load_settings()
    log_effective_policy(loaded)
    return loaded


@functools.cache
def token_rules() -> TokenRules:
    """The API's token rules; outside local mode the key is read from Secrets Manager (once)."""
    from functions.api.auth import TokenRules
    from functions.settings import SettingsError, weak_jwt_secret_problem

    config = settings()
    if config.jwt_secret_arn is not None:
        from functions.storage.secrets import read_secret_string

        secret = read_secret_string(config.jwt_secret_arn)
        problem = weak_jwt_secret_problem(secret)
        if problem is not None:
            raise SettingsError(f"the token signing secret {config.jwt_secret_arn} {problem}")
    elif config.local_mode:
        secret = config.jwt_secret
    else:
        raise SettingsError("outside local mode the API needs POSTBACKS_JWT_SECRET_ARN (its token signing secret)")
    return TokenRules(secret=secret, issuer=config.jwt_issuer, audience=config.jwt_audience)


@functools.cache
def postback_repository() -> PostbackRepository:
    from functions.storage.postbacks import PostbackRepository

    return PostbackRepository()


@functools.cache
def postback_service() -> PostbackService:
    from functions.api.service import PostbackService

    return PostbackService(postback_repository(), settings(), waiting_deliveries=delivery_attempts())


@functools.cache
def delivery_attempts() -> DeliveryAttemptRepository:
    from functions.storage.delivery_attempts import DeliveryAttemptRepository

    return DeliveryAttemptRepository(ttl_days=settings().delivery_ttl_days)


@functools.cache
def postback_test_fire() -> PostbackTestFire:
    from functions.sender.service import build_postback_test_fire

    return build_postback_test_fire(settings())


@functools.cache
def conversion_evaluator() -> ConversionEvaluator:
    """The evaluator of this container (its rules cache lives as long as the container)."""
    from functions.evaluator.service import build_evaluator

    return build_evaluator(settings())


def reset() -> None:
    """Forget every built component (tests that change the environment)."""
    for getter in (
        settings,
        token_rules,
        postback_repository,
        postback_service,
        delivery_attempts,
        postback_test_fire,
        conversion_evaluator,
    ):
        getter.cache_clear()
