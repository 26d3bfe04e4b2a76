"""Tokens and a JSON client for driving the API through `chalice.test.Client`."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from chalice.test import Client

from functions.settings import DEFAULT_JWT_SECRET


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
