"""The composition root: one set of components per process, built from the settings it was given."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from functions import bootstrap
from functions.settings import Settings, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _forget_components() -> Iterator[None]:
    bootstrap.reset()
    yield
    bootstrap.reset()


def test_the_egress_policy_is_built_from_the_configured_ranges_and_ports() -> None:
    bootstrap.reset(
        load_settings(
            {
                "POSTBACKS_ALLOW_PRIVATE_TARGETS": "1",
                "POSTBACKS_ALLOWED_PORTS": "443",
                "POSTBACKS_STAGE": "test",
                "POSTBACKS_LOCAL_MODE": "1",
            }
        )
    )
    policy = bootstrap.egress_policy()
    assert policy.allowed_ports == frozenset({443})
    assert policy.allows_loopback

    bootstrap.reset(load_settings({"POSTBACKS_STAGE": "test"}))
    assert not bootstrap.egress_policy().allow_private


def test_the_getters_build_from_the_settings_given_to_reset() -> None:
    given = replace(Settings(), deliveries_queue="https://sqs.example/1/given-queue", delivery_ttl_days=7)
    bootstrap.reset(given)
    assert bootstrap.settings() is given
    assert bootstrap.deliveries_queue().url == "https://sqs.example/1/given-queue"


def test_a_component_is_built_once_until_reset() -> None:
    bootstrap.reset(Settings())
    repository = bootstrap.delivery_repository()
    assert bootstrap.delivery_repository() is repository
    bootstrap.reset(Settings())
    assert bootstrap.delivery_repository() is not repository


def test_every_queue_shares_the_one_sqs_client() -> None:
    bootstrap.reset(Settings())
    client = bootstrap.sqs_client()
    assert bootstrap.deliveries_queue().client is client
    assert bootstrap.deliveries_dlq().client is client
    assert bootstrap.evaluator_dlq().client is client


def test_the_aws_clients_are_built_without_importing_boto3() -> None:
    # boto3's import brings s3transfer, multiprocessing and pickle to a cold start (docs/performance.md).
    probe = (
        "import sys; from functions import bootstrap; "
        "clients = [bootstrap.sqs_client(), bootstrap.dynamodb_streams_client()]; "
        "assert [c.meta.service_model.service_name for c in clients] == ['sqs', 'dynamodbstreams']; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 's3transfer', 'multiprocessing')); "
        "assert not loaded, loaded"
    )
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


def test_lambda_clients_are_bounded_tighter_than_the_terminal_s() -> None:
    bootstrap.reset(Settings())
    lambda_config = bootstrap.sqs_client().meta.config
    bootstrap.reset(Settings(), client_limits=bootstrap.TERMINAL_CLIENT_LIMITS)
    terminal_config = bootstrap.sqs_client().meta.config
    assert (lambda_config.connect_timeout, lambda_config.read_timeout) == (3, 10)
    assert (terminal_config.connect_timeout, terminal_config.read_timeout) == (5, 30)
    assert lambda_config.retries["total_max_attempts"] < terminal_config.retries["total_max_attempts"]


def test_reset_without_limits_goes_back_to_the_lambda_limits() -> None:
    bootstrap.reset(Settings(), client_limits=bootstrap.TERMINAL_CLIENT_LIMITS)
    bootstrap.reset(Settings())
    assert bootstrap.sqs_client().meta.config.read_timeout == 10


def test_the_sender_backfills_from_the_deliveries_queue_unless_turned_off() -> None:
    bootstrap.reset(replace(Settings(), deliveries_queue="https://sqs.example/1/deliveries"))
    backfill = bootstrap.sender_backfill()
    assert backfill is not None and backfill.after_seconds == 1.0

    bootstrap.reset(replace(Settings(), sender_backfill_after_seconds=0.0))
    assert bootstrap.sender_backfill() is None
