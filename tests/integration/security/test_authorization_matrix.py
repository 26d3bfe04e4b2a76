"""The authorization matrix: every endpoint x every kind of caller x every kind of target, one table.

Callers: no token, an expired token, a token signed with another key, an admin, the affiliate that
owns the postback (`aff-a`), another affiliate (`aff-b`). Targets: the owner's postback, a postback
of a third affiliate (`aff-c`), a postback that does not exist. For the collection endpoints the
target is the `affiliate_id` named (in the body or the query): the owner's, the third
affiliate's, or none. `EXPECTED` states the status of every cell; each cell is one test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from chalice.test import Client
from moto import mock_aws

from functions import bootstrap
from functions.settings import DEFAULT_JWT_SECRET
from functions.storage.models import DeliveryModel, PostbackModel
from tests.support.api_client import ADMIN, Api, auth, body_of, definition, token

pytestmark = pytest.mark.integration

CALLERS: dict[str, dict[str, str]] = {
    "no_token": {"Content-Type": "application/json"},
    "expired": auth(token("admin", expires_in=-3600)),
    "wrong_key": auth(token("admin", secret="another-key-that-is-at-least-32-bytes-long")),
    "admin": ADMIN,
    "owner": auth(token("affiliate", "aff-a")),
    "other_affiliate": auth(token("affiliate", "aff-b")),
}
TARGETS = ("own", "anothers", "missing")
UNAUTHENTICATED = ("no_token", "expired", "wrong_key")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # `{id}` is the target postback; `{affiliate}` the target affiliate of a collection
    body: Any = None
    public: bool = False


ENDPOINTS: dict[str, Endpoint] = {
    "health": Endpoint("GET", "/health", public=True),
    "parameters": Endpoint("GET", "/parameters"),
    "create": Endpoint("POST", "/postbacks", body="definition"),
    "list": Endpoint("GET", "/postbacks{affiliate}"),
    "get": Endpoint("GET", "/postbacks/{id}"),
    "patch": Endpoint("PATCH", "/postbacks/{id}", body={"conversion_types": ["lead"]}),
    "delete": Endpoint("DELETE", "/postbacks/{id}"),
    "deliveries": Endpoint("GET", "/postbacks/{id}/deliveries"),
    "test_fire": Endpoint("POST", "/postbacks/{id}/test", body={"aff_s1": "abc"}),
    "read_signing_secret": Endpoint("GET", "/postbacks/{id}/signing-secret"),
    "rotate_signing_secret": Endpoint("POST", "/postbacks/{id}/signing-secret", body={}),
}


def _item(ok: int) -> dict[str, dict[str, int]]:
    """An endpoint on one postback: another affiliate's postback is indistinguishable from none."""
    return {
        "admin": {"own": ok, "anothers": ok, "missing": 404},
        "owner": {"own": ok, "anothers": 404, "missing": 404},
        "other_affiliate": {"own": 404, "anothers": 404, "missing": 404},
    }


EXPECTED: dict[str, dict[str, dict[str, int]]] = {
    "health": {caller: dict.fromkeys(TARGETS, 200) for caller in CALLERS},
    "parameters": {caller: dict.fromkeys(TARGETS, 200) for caller in ("admin", "owner", "other_affiliate")},
    # Target: the affiliate_id of the body (the owner's, a third affiliate's, none).
    "create": {
        "admin": {"own": 201, "anothers": 201, "missing": 400},
        "owner": {"own": 201, "anothers": 403, "missing": 201},
        "other_affiliate": {"own": 403, "anothers": 403, "missing": 201},
    },
    # Target: ?affiliate_id= (the owner's, a third affiliate's, none).
    "list": {
        "admin": {"own": 200, "anothers": 200, "missing": 200},
        "owner": {"own": 200, "anothers": 403, "missing": 200},
        "other_affiliate": {"own": 403, "anothers": 403, "missing": 200},
    },
    "get": _item(200),
    "patch": _item(200),
    "delete": _item(204),
    "deliveries": _item(200),
    "test_fire": _item(200),
    "read_signing_secret": _item(200),
    "rotate_signing_secret": _item(200),
}
for _name, _endpoint in ENDPOINTS.items():
    if not _endpoint.public:
        EXPECTED[_name].update({caller: dict.fromkeys(TARGETS, 401) for caller in UNAUTHENTICATED})

CELLS = [
    pytest.param(endpoint, caller, target, EXPECTED[endpoint][caller][target], id=f"{endpoint}-{caller}-{target}")
    for endpoint in ENDPOINTS
    for caller in CALLERS
    for target in TARGETS
]


def test_the_table_covers_every_cell() -> None:
    assert len(CELLS) == len(ENDPOINTS) * len(CALLERS) * len(TARGETS)
    assert all(set(EXPECTED[name]) == set(CALLERS) for name in ENDPOINTS)


@pytest.fixture(scope="module")
def api(tracker: str) -> Iterator[tuple[Api, str]]:
    from app import app

    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        monkeypatch.setenv("POSTBACKS_ALLOW_PRIVATE_TARGETS", "1")
        monkeypatch.setenv("POSTBACKS_TOTAL_TIMEOUT_SECONDS", "1")
        PostbackModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        DeliveryModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        bootstrap.reset()
        with Client(app) as test_client:
            yield Api(test_client), tracker
        bootstrap.reset()


def _request(api: Api, tracker: str, endpoint: Endpoint, caller: str, target: str) -> Any:
    affiliate = {"own": "aff-a", "anothers": "aff-c", "missing": None}[target]
    path = endpoint.path
    if "{id}" in path:
        if target == "missing":
            postback_id = "pb_00000000000000000000000000"
        else:
            postback_id = api.create(ADMIN, affiliate_id=affiliate, url=f"{tracker}/cb?c={{affS1}}")["id"]
        path = path.replace("{id}", postback_id)
    path = path.replace("{affiliate}", f"?affiliate_id={affiliate}" if affiliate else "")
    body = endpoint.body
    if body == "definition":
        body = definition(**({"affiliate_id": affiliate} if affiliate else {}))
    return api.request(endpoint.method, path, CALLERS[caller], body)


@pytest.mark.parametrize(("endpoint", "caller", "target", "status"), CELLS)
def test_authorization_matrix(api: tuple[Api, str], endpoint: str, caller: str, target: str, status: int) -> None:
    client, tracker = api
    response = _request(client, tracker, ENDPOINTS[endpoint], caller, target)
    assert response.status_code == status, response.body
    if status >= 400:
        assert body_of(response)["status"] == status
    if status == 401:
        assert "WWW-Authenticate" in response.headers


def test_expired_and_foreign_tokens_are_what_they_claim() -> None:
    expired = jwt.decode(
        CALLERS["expired"]["Authorization"][7:], DEFAULT_JWT_SECRET, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert expired["exp"] < time.time()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(CALLERS["wrong_key"]["Authorization"][7:], DEFAULT_JWT_SECRET, algorithms=["HS256"])
