from __future__ import annotations

import ipaddress

import pytest

from functions.settings import DEFAULT_JWT_SECRET, SettingsError, load_settings, weak_jwt_secret_problem

pytestmark = pytest.mark.unit

LOCAL = {"POSTBACKS_LOCAL_MODE": "1"}


def test_defaults_match_the_contract() -> None:
    settings = load_settings({})
    assert settings.stage == "local"
    assert settings.allow_private_targets == ()
    assert settings.allowed_ports == frozenset({80, 443, 8080, 8443})
    assert settings.retry_base_seconds == 30
    assert settings.max_attempts == 13
    assert settings.rules_cache_seconds == 5
    assert settings.retry_deadline_seconds == 72 * 3600
    assert settings.deliveries_queue == "postback-deliveries"
    assert settings.deliveries_dlq == "postback-deliveries-dlq"
    assert settings.evaluator_dlq == "postback-evaluator-dlq"
    assert settings.sender_backfill_after_seconds == 1.0


def test_allow_private_targets_one_means_loopback() -> None:
    settings = load_settings({**LOCAL, "POSTBACKS_ALLOW_PRIVATE_TARGETS": "1"})
    assert settings.allow_private_targets == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize("raw", ["0", "", "  "])
def test_allow_private_targets_zero_or_empty_means_none(raw: str) -> None:
    assert load_settings({"POSTBACKS_ALLOW_PRIVATE_TARGETS": raw}).allow_private_targets == ()


def test_allow_private_targets_takes_a_cidr_list() -> None:
    settings = load_settings({**LOCAL, "POSTBACKS_ALLOW_PRIVATE_TARGETS": "10.1.0.0/16, fd12::/16"})
    assert settings.allow_private_targets == (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd12::/16"))


def test_a_bad_cidr_is_refused_with_the_variable_named() -> None:
    with pytest.raises(SettingsError, match="POSTBACKS_ALLOW_PRIVATE_TARGETS"):
        load_settings({**LOCAL, "POSTBACKS_ALLOW_PRIVATE_TARGETS": "not-a-network"})


def test_allowed_ports_are_parsed_and_checked() -> None:
    assert load_settings({"POSTBACKS_ALLOWED_PORTS": "443, 9443"}).allowed_ports == frozenset({443, 9443})
    with pytest.raises(SettingsError, match="POSTBACKS_ALLOWED_PORTS"):
        load_settings({"POSTBACKS_ALLOWED_PORTS": "443,70000"})


def test_weak_secrets_are_named() -> None:
    assert weak_jwt_secret_problem("short") == "is shorter than 32 bytes"
    assert weak_jwt_secret_problem(DEFAULT_JWT_SECRET) == "is the public local default"
    assert weak_jwt_secret_problem("x" * 32) is None


def test_local_mode_accepts_the_default_secret() -> None:
    assert load_settings(LOCAL).jwt_secret == DEFAULT_JWT_SECRET


def test_retry_base_scales_the_deadline() -> None:
    assert load_settings({"POSTBACKS_RETRY_BASE_SECONDS": "1"}).retry_deadline_seconds == 8640


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POSTBACKS_MAX_ATTEMPTS", "zero"),
        ("POSTBACKS_MAX_ATTEMPTS", "0"),
        ("POSTBACKS_RETRY_BASE_SECONDS", "-1"),
        ("POSTBACKS_SENDER_BACKFILL_AFTER_SECONDS", "-0.5"),
        ("POSTBACKS_SENDER_BACKFILL_AFTER_SECONDS", "soon"),
    ],
)
def test_bad_numbers_are_refused_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_unit_tier_cannot_open_connections() -> None:
    import socket

    with pytest.raises(RuntimeError, match="unit tests may not open network connections"):
        socket.create_connection(("127.0.0.1", 9))


def test_local_mode_is_an_explicit_flag_not_a_stage_name() -> None:
    assert load_settings(LOCAL).local_mode
    for stage in ("local", "test", "prod"):
        assert not load_settings({"POSTBACKS_STAGE": stage}).local_mode
    with pytest.raises(SettingsError, match="POSTBACKS_LOCAL_MODE"):
        load_settings({"POSTBACKS_LOCAL_MODE": "maybe"})


@pytest.mark.parametrize("stage", ["test", "local", "prod"])
def test_a_plain_jwt_secret_is_refused_outside_local_mode_whatever_the_stage(stage: str) -> None:
    with pytest.raises(SettingsError, match="POSTBACKS_JWT_SECRET_ARN"):
        load_settings({"POSTBACKS_STAGE": stage, "POSTBACKS_JWT_SECRET": DEFAULT_JWT_SECRET})


@pytest.mark.parametrize("raw", ["1", "10.0.0.0/8", "127.0.0.1/32"])
def test_private_targets_are_refused_outside_local_mode(raw: str) -> None:
    with pytest.raises(SettingsError, match=r"POSTBACKS_ALLOW_PRIVATE_TARGETS.*local mode"):
        load_settings({"POSTBACKS_STAGE": "prod", "POSTBACKS_ALLOW_PRIVATE_TARGETS": raw})
    assert (
        load_settings({"POSTBACKS_STAGE": "prod", "POSTBACKS_ALLOW_PRIVATE_TARGETS": "0"}).allow_private_targets == ()
    )


@pytest.mark.parametrize(
    "raw",
    [
        "169.254.169.254/32",
        "169.254.170.2/32",
        "169.254.0.0/16",
        "169.0.0.0/8",
        "0.0.0.0/0",
        "fd00:ec2::254/128",
        "fd00::/8",
        "::ffff:169.254.169.254/128",
        "::ffff:0:0/96",
        "::/0",
    ],
)
def test_ranges_holding_metadata_addresses_are_refused_even_in_local_mode(raw: str) -> None:
    with pytest.raises(SettingsError, match="metadata"):
        load_settings({**LOCAL, "POSTBACKS_ALLOW_PRIVATE_TARGETS": raw})


def test_the_secret_arn_must_be_an_arn() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:postbacks/prod/jwt-AbCdEf"
    assert load_settings({"POSTBACKS_JWT_SECRET_ARN": arn}).jwt_secret_arn == arn
    with pytest.raises(SettingsError, match="POSTBACKS_JWT_SECRET_ARN"):
        load_settings({"POSTBACKS_JWT_SECRET_ARN": "postbacks/prod/jwt"})
