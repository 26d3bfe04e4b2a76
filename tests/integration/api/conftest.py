"""API tests: the application of `app.py`, driven by `chalice.test.Client`, on moto in-process.

The app is imported, never rebuilt: Chalice consumes a blueprint's registration arguments, so a
blueprint can be registered into only one app per process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from chalice.test import Client
from moto import mock_aws

from functions import bootstrap
from functions.settings import DEFAULT_JWT_SECRET
from functions.storage.models import PostbackModel


def token(
    role: str = "admin",
    affiliate_id: str | None = None,
    *,
    secret: str = DEFAULT_JWT_SECRET,
    expires_in: int = 3600,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"sub": f"user-{role}-{affiliate_id}", "role": role, "iat": now, "exp": now + expires_in}
    if affiliate_id is not None:
        payload["affiliate_id"] = affiliate_id
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def auth(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}


ADMIN = auth(token("admin"))
AFF_A = auth(token("affiliate", "aff-a"))
AFF_B = auth(token("affiliate", "aff-b"))


def definition(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scope": "global",
        "excluded_offer_ids": ["offer-7"],
        "conversion_types": ["sale"],
        "conversion_statuses": ["approved", "rejected"],
        "url": "https://tracker.example.com/cb?click={affS1}&status={conversionStatus}",
    }
    body.update(overrides)
    return body


class Api:
    """The test client with JSON helpers."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def request(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        return self.client.http.request(method, path, headers=headers, body=raw)

    def create(self, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
        response = self.request("POST", "/postbacks", headers, definition(**overrides))
        assert response.status_code == 201, response.body
        created: dict[str, Any] = json.loads(response.body)
        return created


def body_of(response: Any) -> Any:
    return json.loads(response.body)


@pytest.fixture
def client() -> Iterator[Api]:
    with mock_aws():
        PostbackModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        bootstrap.reset()
        from app import app

        with Client(app) as test_client:
            yield Api(test_client)
        bootstrap.reset()
