"""Composition root: the one place that builds the repositories, queues and clients, once per cold start.

The three handlers (API, evaluator, sender) and the on-call tools get every component through the
getters below; nothing else constructs a repository or an AWS or HTTP client. Every getter is
cached, so a process shares one SQS client, one HTTP client and one set of repositories, and
imports what it builds only when called: a Lambda constructs (and imports) only the parts it uses —
the sender never builds the API's service, the API builds the HTTP client only for a test fire.

Tests build components directly with fakes, or call `reset(settings)` to run the real wiring with
settings of their own (`reset()` goes back to the environment's).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from functions.core.model import utc_now
from functions.settings import Settings, load_settings

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from functions.api.auth import TokenRules
    from functions.api.delivery_service import DeliveryService
    from functions.api.service import PostbackService
    from functions.api.testfire import PostbackTestFire
    from functions.core.egress import EgressPolicy
    from functions.core.metrics import MetricsBatch
    from functions.egress_http import PinnedHttpClient
    from functions.evaluator.ports import WriteMap
    from functions.evaluator.service import ConversionEvaluator
    from functions.sender.backfill import Backfill
    from functions.sender.hosts import HostGuard
    from functions.sender.service import DeliverySender
    from functions.storage.deliveries import DeliveryRepository
    from functions.storage.hosts import HostRepository
    from functions.storage.postback_health import PostbackHealthRepository
    from functions.storage.postbacks import PostbackRepository
    from functions.storage.queues import Queue
    from functions.storage.streams import StreamRangeReader


@dataclass(frozen=True)
class AwsClientLimits:
    """Timeouts and attempts of the AWS clients this process builds."""

    connect_timeout: float
    read_timeout: float
    max_attempts: int


# A Lambda bounds every call tightly: a hung call must not use up the invocation.
LAMBDA_CLIENT_LIMITS = AwsClientLimits(connect_timeout=3, read_timeout=10, max_attempts=3)
# An engineer at a terminal (the on-call tools) waits longer and retries more.
TERMINAL_CLIENT_LIMITS = AwsClientLimits(connect_timeout=5, read_timeout=30, max_attempts=5)

_chosen_settings: Settings | None = None
_client_limits: AwsClientLimits = LAMBDA_CLIENT_LIMITS
# Where EMF lines go: None = stdout, which CloudWatch Logs turns into metrics in Lambda.
_metrics_writer: Callable[[str], None] | None = None


def reset(
    settings: Settings | None = None,
    *,
    client_limits: AwsClientLimits = LAMBDA_CLIENT_LIMITS,
    metrics_writer: Callable[[str], None] | None = None,
) -> None:
    """Forget every built component; the getters build anew from `settings` (None: the environment's).

    `client_limits`: `TERMINAL_CLIENT_LIMITS` for the on-call tools. `metrics_writer`: where the
    handlers' EMF lines go (None: stdout, as in Lambda). Tests call `reset()` after changing the
    environment, or `reset(settings)` to wire the real components with their own.
    """
    global _chosen_settings, _client_limits, _metrics_writer
    _chosen_settings = settings
    _client_limits = client_limits
    _metrics_writer = metrics_writer
    if evaluator_writers.cache_info().currsize:
        writers = evaluator_writers()
        if writers is not None:
            writers.shutdown(wait=False)
    for getter in _GETTERS:
        getter.cache_clear()


# Settings and clients.


@functools.cache
def settings() -> Settings:
    from functions.audit import log_effective_policy

    loaded = _chosen_settings if _chosen_settings is not None else load_settings()
    log_effective_policy(loaded)
    return loaded


def new_metrics_batch() -> MetricsBatch:
    """The metrics of one invocation (`functions.core.metrics`): a handler flushes it once, at its end."""
    from functions.core.metrics import MetricsBatch

    stage = settings().stage
    return MetricsBatch(stage=stage) if _metrics_writer is None else MetricsBatch(stage=stage, write=_metrics_writer)


@functools.cache
def _aws_session() -> Any:
    """The botocore session the AWS clients of this process are created from.

    botocore directly, not boto3: boto3's import adds s3transfer, multiprocessing and pickle
    (about 25 ms of a cold start, docs/performance.md) for nothing these clients use.
    """
    import botocore.session

    return botocore.session.get_session()


def _aws_client(service: str, region: str, config: Any) -> Any:
    return _aws_session().create_client(service, region_name=region, config=config)


def _client_config(max_pool_connections: int = 10) -> Any:
    from botocore.config import Config

    return Config(
        connect_timeout=_client_limits.connect_timeout,
        read_timeout=_client_limits.read_timeout,
        retries={"mode": "standard", "max_attempts": _client_limits.max_attempts},
        max_pool_connections=max_pool_connections,
    )


@functools.cache
def sqs_client() -> Any:
    """The one SQS client of this process, safe to share between threads.

    Created on one thread: the sender's batch workers share it, with a connection per worker so
    none waits for the pool.
    """
    config = settings()
    return _aws_client("sqs", config.region, _client_config(max_pool_connections=config.sender_max_concurrency))


@functools.cache
def dynamodb_streams_client() -> Any:
    """The client that reads the conversions stream back (the replay of a stream batch failure)."""
    return _aws_client("dynamodbstreams", settings().region, _client_config())


@functools.cache
def cloudformation_client() -> Any:
    """The on-call tools' client for reading a stack's outputs (`--stack`)."""
    return _aws_client("cloudformation", settings().region, _client_config())


@functools.cache
def cloudwatch_client() -> Any:
    """The on-call tools' client for queue ages and alarm states (`status`)."""
    return _aws_client("cloudwatch", settings().region, _client_config())


@functools.cache
def egress_policy() -> EgressPolicy:
    from functions.core.egress import EgressPolicy

    config = settings()
    return EgressPolicy(allowed_ports=config.allowed_ports, allow_private=config.allow_private_targets)


@functools.cache
def http_client() -> PinnedHttpClient:
    """The pinned, bounded HTTP client of every GET to a tracker (the sender's and the test fire's)."""
    return new_http_client()


def new_http_client() -> PinnedHttpClient:
    """A client of its own, configured as `http_client` (the benchmarks compare clients side by side)."""
    from functions.egress_http import PinnedHttpClient

    config = settings()
    return PinnedHttpClient(
        egress_policy(),
        connect_timeout=config.connect_timeout_seconds,
        read_timeout=config.read_timeout_seconds,
        total_timeout=config.total_timeout_seconds,
        max_response_bytes=config.max_response_bytes,
        pool_maxsize=config.sender_max_concurrency,
    )


@functools.cache
def token_rules() -> TokenRules:
    """The API's token rules; outside local mode the key is read from Secrets Manager (once)."""
    from functions.api.auth import TokenRules
    from functions.settings import SettingsError, weak_jwt_secret_problem

    config = settings()
    if config.jwt_secret_arn is not None:
        from functions.storage.secrets import read_secret_string, region_of

        client = _aws_client("secretsmanager", region_of(config.jwt_secret_arn), _client_config())
        secret = read_secret_string(config.jwt_secret_arn, client)
        problem = weak_jwt_secret_problem(secret)
        if problem is not None:
            raise SettingsError(f"the token signing secret {config.jwt_secret_arn} {problem}")
    elif config.local_mode:
        secret = config.jwt_secret
    else:
        raise SettingsError("outside local mode the API needs POSTBACKS_JWT_SECRET_ARN (its token signing secret)")
    return TokenRules(secret=secret, issuer=config.jwt_issuer, audience=config.jwt_audience)


# Queues.


def _queue(name_or_url: str) -> Queue:
    from functions.storage.queues import Queue

    return Queue(name_or_url, sqs_client())


@functools.cache
def deliveries_queue() -> Queue:
    return _queue(settings().deliveries_queue)


@functools.cache
def deliveries_dlq() -> Queue:
    return _queue(settings().deliveries_dlq)


@functools.cache
def evaluator_dlq() -> Queue:
    return _queue(settings().evaluator_dlq)


# Repositories.


@functools.cache
def postback_repository() -> PostbackRepository:
    from functions.storage.postbacks import PostbackRepository

    return PostbackRepository()


@functools.cache
def postback_health_repository() -> PostbackHealthRepository:
    from functions.storage.postback_health import PostbackHealthRepository

    return PostbackHealthRepository()


@functools.cache
def host_repository() -> HostRepository:
    """Tracker hosts' failures and pauses (items in the postbacks table)."""
    from functions.storage.hosts import HostRepository

    return HostRepository()


@functools.cache
def delivery_repository() -> DeliveryRepository:
    from functions.storage.deliveries import DeliveryRepository

    return DeliveryRepository(ttl_days=settings().delivery_ttl_days)


@functools.cache
def stream_range_reader() -> StreamRangeReader:
    from functions.storage.streams import StreamRangeReader

    # The client is created on the first range read: a command that replays no range never builds one.
    return StreamRangeReader(dynamodb_streams_client)


# Services.


@functools.cache
def postback_service() -> PostbackService:
    from functions.api.service import PostbackService

    return PostbackService(
        postback_repository(), settings(), waiting_deliveries=delivery_repository(), egress=egress_policy()
    )


@functools.cache
def postback_test_fire() -> PostbackTestFire:
    from functions.api.testfire import PostbackTestFire

    return PostbackTestFire(http=http_client(), deliveries=delivery_repository(), secrets=postback_repository())


@functools.cache
def delivery_service() -> DeliveryService:
    """The delivery log and the test fire of the API (the HTTP client is built on the first test fire)."""
    from functions.api.delivery_service import DeliveryService
    from functions.storage.test_fire_limits import TestFireLimits

    return DeliveryService(
        postbacks=postback_service(),
        deliveries=delivery_repository(),
        test_fire=postback_test_fire,
        affiliate_restricted_placeholders=settings().affiliate_restricted_placeholders,
        test_fire_limit=TestFireLimits(settings().test_fires_per_minute),
    )


def build_conversion_evaluator(
    *,
    clock: Callable[[], datetime] = utc_now,
    rules_clock: Callable[[], float] = time.monotonic,
    rules_wall_clock: Callable[[], float] = time.time,
) -> ConversionEvaluator:
    """An evaluator with a rules cache of its own, on this process's repositories and queues.

    The rules cache is validated by the postbacks table's rules version; the clocks are for tests.
    """
    from functions.evaluator.rules_cache import RulesCache
    from functions.evaluator.service import ConversionEvaluator

    config = settings()
    postbacks = postback_repository()
    return ConversionEvaluator(
        postbacks=postbacks,
        rules_versions=postbacks,
        deliveries=delivery_repository(),
        deliveries_queue=deliveries_queue(),
        dead_letter_queue=evaluator_dlq(),
        rules_cache=RulesCache(config.rules_cache_seconds, clock=rules_clock, wall_clock=rules_wall_clock),
        delivery_ttl_days=config.delivery_ttl_days,
        clock=clock,
        deliveries_dead_letters=deliveries_dlq(),
        max_url_bytes=config.max_url_bytes,
        write_map=evaluator_write_map(),
    )


def evaluator_write_map() -> WriteMap:
    """The evaluator's conditional writes, `POSTBACKS_EVALUATOR_WRITE_CONCURRENCY` at a time (one at a time: `map`)."""
    writers = evaluator_writers()
    return map if writers is None else writers.map


@functools.cache
def evaluator_writers() -> ThreadPoolExecutor | None:
    """The threads of the evaluator's writes; they live as long as the container (the clients are thread-safe)."""
    concurrency = settings().evaluator_write_concurrency
    if concurrency <= 1:
        return None
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="evaluator-write")


@functools.cache
def conversion_evaluator() -> ConversionEvaluator:
    """The evaluator of this container (its rules cache lives as long as the container)."""
    return build_conversion_evaluator()


@functools.cache
def delivery_sender() -> DeliverySender:
    """The sender of this container: repositories, queues and the pinned HTTP client."""
    from functions.core.schedule import RetryPolicy
    from functions.sender.service import DeliverySender

    config = settings()
    return DeliverySender(
        deliveries=delivery_repository(),
        postbacks=postback_repository(),
        health=postback_health_repository(),
        http=http_client(),
        queue=deliveries_queue(),
        dead_letters=deliveries_dlq(),
        policy=RetryPolicy(base_seconds=config.retry_base_seconds, max_attempts=config.max_attempts),
        hosts=host_guard(),
        backfill=sender_backfill(),
        max_concurrency=config.sender_max_concurrency,
        per_host_concurrency=config.sender_per_host_concurrency,
        lease_seconds=config.lease_seconds,
        request_deadline_seconds=config.total_timeout_seconds,
    )


def sender_backfill() -> Backfill | None:
    """What a sender invocation held by a slow GET takes from the deliveries queue (docs/sender.md#backfill)."""
    from functions.sender.backfill import Backfill, QueueBackfillSource

    after = settings().sender_backfill_after_seconds
    return Backfill(QueueBackfillSource(deliveries_queue()), after_seconds=after) if after > 0 else None


@functools.cache
def host_guard() -> HostGuard:
    """The sender's host pause (docs/sender.md): the shared host states behind a per-container cache."""
    from functions.core.host_pause import HostPausePolicy
    from functions.sender.hosts import HostGuard

    config = settings()
    policy = HostPausePolicy(
        pause_after=config.host_pause_after,
        pause_seconds=config.host_pause_seconds,
        probe_seconds=config.total_timeout_seconds + 5.0,
    )
    return HostGuard(
        host_repository(),
        policy,
        deliveries=delivery_repository(),
        queue=deliveries_queue(),
        dead_letters=deliveries_dlq(),
        retry_deadline_seconds=config.retry_deadline_seconds,
    )


_GETTERS = (
    settings,
    evaluator_writers,
    _aws_session,
    token_rules,
    sqs_client,
    dynamodb_streams_client,
    cloudformation_client,
    cloudwatch_client,
    egress_policy,
    http_client,
    deliveries_queue,
    deliveries_dlq,
    evaluator_dlq,
    postback_repository,
    postback_health_repository,
    delivery_repository,
    host_repository,
    host_guard,
    stream_range_reader,
    postback_service,
    postback_test_fire,
    delivery_service,
    conversion_evaluator,
    delivery_sender,
)
