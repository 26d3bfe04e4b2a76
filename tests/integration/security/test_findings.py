"""The findings of the security review, each through the API as deployed (Chalice test client, moto)."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import jwt
import pytest

from functions import bootstrap
from functions.core.model import DeliveryState, delivery_id_for, format_timestamp
from functions.settings import DEFAULT_JWT_SECRET, SettingsError
from functions.storage.models import AttemptMap, DeliveryModel, PostbackModel
from local.tokens import mint_token
from tests.support.api_client import ADMIN, AFF_A, Api, auth, body_of, definition

pytestmark = pytest.mark.integration

REVENUE_URL = (
    "https://tracker.example.com/cb/{revenue}?click={affS1}&rev={revenue}&c={customerId}-x&s={conversionStatus}"
)


def raw_token(claims: dict[str, Any], secret: str = DEFAULT_JWT_SECRET) -> dict[str, str]:
    return auth(jwt.encode(claims, secret, algorithm="HS256"))


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    document: dict[str, Any] = body_of(response)
    assert document["status"] == status
    return document


# --- tokens ---------------------------------------------------------------------------------------


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "u-1", "role": "admin", "iat": now, "exp": now + 600}
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(_claims(exp=None), id="no-exp"),
        pytest.param(_claims(iat=None), id="no-iat"),
        pytest.param(_claims(exp=32503680000), id="exp-in-2999"),
        pytest.param(_claims(exp=int(time.time()) + 86400 + 120), id="lifetime-over-24h"),
        pytest.param(_claims(iat="yesterday"), id="iat-not-a-number"),
    ],
)
def test_tokens_without_exp_or_iat_or_living_over_a_day_are_401(api: Api, claims: dict[str, Any]) -> None:
    problem(api.request("GET", "/postbacks", raw_token(claims)), 401)


def test_a_token_living_exactly_a_day_is_accepted(api: Api) -> None:
    now = int(time.time())
    assert api.request("GET", "/postbacks", raw_token(_claims(iat=now, exp=now + 86400))).status_code == 200


def test_the_local_stack_token_lives_twelve_hours_with_iat_and_is_accepted(api: Api) -> None:
    token = mint_token(bootstrap.settings(), role="admin", subject="local-admin")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 12 * 3600
    assert api.request("GET", "/postbacks", auth(token)).status_code == 200


def test_issuer_and_audience_must_match_where_configured(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTBACKS_JWT_ISSUER", "https://id.example")
    monkeypatch.setenv("POSTBACKS_JWT_AUDIENCE", "postbacks")
    bootstrap.reset()
    good = _claims(iss="https://id.example", aud="postbacks")
    assert api.request("GET", "/postbacks", raw_token(good)).status_code == 200
    for bad in (_claims(aud="postbacks"), _claims(iss="https://id.example"), {**good, "iss": "https://evil.example"}):
        problem(api.request("GET", "/postbacks", raw_token(bad)), 401)


# --- the signing secret -------------------------------------------------------------------------


def test_outside_local_mode_the_api_verifies_with_the_secret_from_secrets_manager(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-from-secrets-manager-0123456789abcdef"
    arn = boto3.client("secretsmanager").create_secret(Name="postbacks/test/jwt", SecretString=secret)["ARN"]
    monkeypatch.setenv("POSTBACKS_LOCAL_MODE", "0")
    monkeypatch.delenv("POSTBACKS_ALLOW_PRIVATE_TARGETS")
    monkeypatch.setenv("POSTBACKS_JWT_SECRET_ARN", arn)
    bootstrap.reset()
    assert api.request("GET", "/postbacks", raw_token(_claims(), secret)).status_code == 200
    problem(api.request("GET", "/postbacks", raw_token(_claims())), 401)


def test_a_weak_secret_in_secrets_manager_is_refused(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name="postbacks/test/weak", SecretString="short")["ARN"]
    monkeypatch.setenv("POSTBACKS_LOCAL_MODE", "0")
    monkeypatch.delenv("POSTBACKS_ALLOW_PRIVATE_TARGETS")
    monkeypatch.setenv("POSTBACKS_JWT_SECRET_ARN", arn)
    bootstrap.reset()
    with pytest.raises(SettingsError, match="shorter than 32 bytes"):
        bootstrap.token_rules()


def test_outside_local_mode_a_plain_secret_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTBACKS_LOCAL_MODE", "0")
    monkeypatch.delenv("POSTBACKS_ALLOW_PRIVATE_TARGETS", raising=False)
    monkeypatch.setenv("POSTBACKS_JWT_SECRET", "x" * 40)
    bootstrap.reset()
    try:
        with pytest.raises(SettingsError, match="POSTBACKS_JWT_SECRET_ARN"):
            bootstrap.settings()
    finally:
        bootstrap.reset()


# --- restricted data ------------------------------------------------------------------------------


def _restricted_postback(api: Api) -> dict[str, Any]:
    return api.create(ADMIN, affiliate_id="aff-a", url=REVENUE_URL)


@pytest.mark.parametrize(
    "change",
    [
        {"conversion_statuses": ["approved", "rejected", "pending"]},
        {"scope": "offer", "included_offer_ids": ["offer-1"], "excluded_offer_ids": []},
        {"excluded_offer_ids": []},
        {"conversion_types": ["sale", "lead"]},
        {"url": "https://tracker.example.com/cb?click={affS1}"},
        {"enabled": True},
        {"enabled": False, "conversion_statuses": ["approved"]},
    ],
)
def test_an_affiliate_may_not_change_a_postback_with_restricted_placeholders(api: Api, change: dict[str, Any]) -> None:
    created = _restricted_postback(api)
    path = f"/postbacks/{created['id']}"
    document = problem(api.request("PATCH", path, AFF_A, change), 403)
    assert "{revenue}" in document["detail"] and "{customerId}" in document["detail"]
    assert body_of(api.request("GET", path, ADMIN))["version"] == 1


def test_an_affiliate_may_disable_or_delete_a_postback_with_restricted_placeholders(api: Api) -> None:
    created = _restricted_postback(api)
    path = f"/postbacks/{created['id']}"
    disabled = api.request("PATCH", path, AFF_A, {"enabled": False})
    assert disabled.status_code == 200, disabled.body
    assert body_of(disabled)["enabled"] is False
    assert api.request("DELETE", path, AFF_A).status_code == 204


def test_an_affiliate_allowed_the_placeholders_and_an_admin_may_change_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = _restricted_postback(api)
    path = f"/postbacks/{created['id']}"
    assert api.request("PATCH", path, ADMIN, {"conversion_types": ["lead"]}).status_code == 200
    monkeypatch.setenv("POSTBACKS_AFFILIATE_RESTRICTED_PLACEHOLDERS", "revenue,customerId")
    bootstrap.reset()
    assert api.request("PATCH", path, AFF_A, {"conversion_types": ["sale"]}).status_code == 200


def _seed_delivery(postback_id: str, url: str, index: int = 1) -> None:
    created = datetime(2026, 11, 24, 10, 0, tzinfo=UTC) + timedelta(minutes=index)
    DeliveryModel(
        delivery_id_for(postback_id, f"c-{index}", "approved"),
        postback_id=postback_id,
        affiliate_id="aff-a",
        conversion_id=f"c-{index}",
        conversion_status="approved",
        url=url,
        target_host="tracker.example.com",
        state=DeliveryState.DELIVERED.value,
        attempts=[AttemptMap(number=1, at=format_timestamp(created), outcome="delivered", status_code=200)],
        created_at=format_timestamp(created),
        updated_at=format_timestamp(created),
        expires_at=int((created + timedelta(days=90)).timestamp()),
    ).save()


SENT = "https://tracker.example.com/cb/12.5?click=abc&rev=12.5&c=cust%2F7-x&s=approved"


def test_the_delivery_log_shows_restricted_values_as_stars_to_an_affiliate(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = _restricted_postback(api)
    _seed_delivery(created["id"], SENT)
    path = f"/postbacks/{created['id']}/deliveries"
    seen = body_of(api.request("GET", path, AFF_A))["items"][0]["url"]
    assert seen == "https://tracker.example.com/cb/***?click=abc&rev=***&c=***-x&s=approved"
    assert body_of(api.request("GET", path, ADMIN))["items"][0]["url"] == SENT
    monkeypatch.setenv("POSTBACKS_AFFILIATE_RESTRICTED_PLACEHOLDERS", "*")
    bootstrap.reset()
    assert body_of(api.request("GET", path, AFF_A))["items"][0]["url"] == SENT


def test_a_delivery_sent_with_an_earlier_url_is_masked_whole_for_an_affiliate(api: Api) -> None:
    created = _restricted_postback(api)
    _seed_delivery(created["id"], SENT)
    assert (
        api.request("PATCH", f"/postbacks/{created['id']}", ADMIN, {"url": "https://t.example.com/x"}).status_code
        == 200
    )
    seen = body_of(api.request("GET", f"/postbacks/{created['id']}/deliveries", AFF_A))["items"][0]["url"]
    assert seen == "https://tracker.example.com/***/***?***=***&***=***&***=***&***=***"


# --- bad bodies -----------------------------------------------------------------------------------


def test_a_very_deeply_nested_body_is_a_400_problem(api: Api) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    document = problem(api.request("POST", "/postbacks", ADMIN, body), 400)
    assert "nested too deeply" in document["detail"]


def test_a_deep_value_under_the_recursion_limit_is_a_400_naming_the_field(api: Api) -> None:
    nested: Any = "x"
    for _ in range(900):
        nested = [nested]
    body = json.dumps({**definition(affiliate_id="aff-a"), "conversion_types": nested}).encode()
    assert "conversion_types" in {
        e["field"].split("[")[0] for e in problem(api.request("POST", "/postbacks", ADMIN, body), 400)["errors"]
    }


def test_a_body_over_256_kib_is_a_413_problem(api: Api) -> None:
    body = json.dumps({**definition(affiliate_id="aff-a"), "included_offer_ids": ["o" * 100] * 3000}).encode()
    assert len(body) > 256 * 1024
    problem(api.request("POST", "/postbacks", ADMIN, body), 413)
    created = api.create(ADMIN, affiliate_id="aff-a")
    problem(api.request("PATCH", f"/postbacks/{created['id']}", ADMIN, body), 413)
    problem(api.request("POST", f"/postbacks/{created['id']}/test", ADMIN, body), 413)


def test_the_largest_valid_postback_fits_under_the_body_limit(api: Api) -> None:
    offers = [f"{index:03d}" + "o" * 125 for index in range(500)]
    url = "https://tracker.example.com/" + "p" * 2000
    body = definition(affiliate_id="aff-a", scope="offer", included_offer_ids=offers, excluded_offer_ids=[], url=url)
    assert api.request("POST", "/postbacks", ADMIN, body).status_code == 201


def test_a_weak_if_match_never_matches(api: Api) -> None:
    created = api.create(AFF_A)
    path = f"/postbacks/{created['id']}"
    problem(api.request("PATCH", path, {**AFF_A, "If-Match": 'W/"1"'}, {"enabled": False}), 412)
    assert body_of(api.request("GET", path, AFF_A))["enabled"] is True


# --- audit ------------------------------------------------------------------------------------------


def test_created_by_and_updated_by_are_the_callers_sub_read_only_and_stored(api: Api) -> None:
    created = api.create(ADMIN, affiliate_id="aff-a")
    assert created["created_by"] == created["updated_by"] == "user-admin-None"
    path = f"/postbacks/{created['id']}"
    patched = body_of(api.request("PATCH", path, AFF_A, {"enabled": False}))
    assert (patched["created_by"], patched["updated_by"]) == ("user-admin-None", "user-affiliate-aff-a")
    item = PostbackModel.get(created["id"], consistent_read=True)
    assert (item.created_by, item.updated_by) == ("user-admin-None", "user-affiliate-aff-a")
    refused = problem(api.request("PATCH", path, ADMIN, {"created_by": "someone-else"}), 400)
    assert [error["field"] for error in refused["errors"]] == ["created_by"]


def _audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = []
    for record in caplog.records:
        if record.name == "postbacks.audit":
            document = json.loads(record.getMessage())
            if document["event"] == "postback_audit":
                lines.append(document)
    return lines


def test_every_change_and_test_fire_is_one_json_audit_line_without_the_url(
    api: Api, tracker: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="postbacks.audit")
    url = f"{tracker}/cb?token=tracker-credential&c={{affS1}}"
    created = api.create(AFF_A, url=url)
    path = f"/postbacks/{created['id']}"
    assert api.request("PATCH", path, ADMIN, {"enabled": False}).status_code == 200
    assert api.request("POST", f"{path}/test", AFF_A, {"aff_s1": "x"}).status_code == 200
    assert api.request("DELETE", path, AFF_A).status_code == 204
    lines = _audit_lines(caplog)
    assert [(line["action"], line["sub"], line["role"]) for line in lines] == [
        ("create", "user-affiliate-aff-a", "affiliate"),
        ("update", "user-admin-None", "admin"),
        ("test_fire", "user-affiliate-aff-a", "affiliate"),
        ("delete", "user-affiliate-aff-a", "affiliate"),
    ]
    assert {(line["postback_id"], line["affiliate_id"]) for line in lines} == {(created["id"], "aff-a")}
    assert not any("tracker-credential" in record.getMessage() for record in caplog.records)


def test_a_refused_change_writes_no_audit_line(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    created = api.create(AFF_A)
    caplog.set_level(logging.INFO, logger="postbacks.audit")
    caplog.clear()
    api.request("PATCH", f"/postbacks/{created['id']}", AFF_A, {"url": "http://127.0.0.1.nip.io:22/"})
    api.request("DELETE", f"/postbacks/{created['id']}", auth(jwt.encode({"sub": "x"}, "k" * 40)))
    assert _audit_lines(caplog) == []


def test_the_effective_egress_policy_is_logged_once_per_cold_start(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="postbacks.audit")
    bootstrap.reset()
    try:
        bootstrap.settings()
        bootstrap.settings()
    finally:
        bootstrap.reset()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "postbacks.audit"]
    assert len(lines) == 1
    assert lines[0]["event"] == "egress_policy"
    assert set(lines[0]) >= {"local_mode", "allow_private_targets", "allowed_ports", "never_allowed"}
    assert "169.254.0.0/16" in lines[0]["never_allowed"]
