"""CORS, preflights and 405s (docs/contract.md §5), through the app of `app.py` on moto in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions import bootstrap
from tests.support.api_client import ADMIN, AFF_A, Api, body_of

PAGE = "http://127.0.0.1:8080"
OTHER = "https://evil.example"


@pytest.fixture
def cors_client(client: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("POSTBACKS_CORS_ORIGINS", f"{PAGE}, http://localhost:5173")
    bootstrap.reset()
    yield client
    bootstrap.reset()


def _cors(response: Any) -> dict[str, str]:
    headers = response.headers
    return {key.lower(): value for key, value in headers.items() if key.lower().startswith("access-control-")}


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        pytest.param("GET", "/health", {}, 200, id="public"),
        pytest.param("GET", "/postbacks", ADMIN, 200, id="list"),
        pytest.param("GET", "/postbacks", {}, 401, id="no token"),
        pytest.param("GET", "/postbacks/pb_missing", AFF_A, 404, id="not found"),
        pytest.param("PUT", "/postbacks", ADMIN, 405, id="method not allowed"),
        pytest.param("POST", "/postbacks", {**ADMIN, "Content-Type": "text/plain"}, 415, id="media type"),
    ],
)
def test_an_allowed_origin_gets_cors_headers_on_every_response(
    cors_client: Api, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = cors_client.request(method, path, {**headers, "Origin": PAGE}, {} if method != "GET" else None)
    assert response.status_code == status
    cors = _cors(response)
    assert cors["access-control-allow-origin"] == PAGE
    assert set(cors["access-control-expose-headers"].replace(" ", "").split(",")) == {"ETag", "Location", "Retry-After"}
    assert "Origin" in response.headers["Vary"]


@pytest.mark.parametrize("origin", [OTHER, "http://127.0.0.1:8081", "null"])
def test_other_origins_get_no_cors_headers(cors_client: Api, origin: str) -> None:
    response = cors_client.request("GET", "/postbacks", {**ADMIN, "Origin": origin})
    assert response.status_code == 200
    assert _cors(response) == {}
    preflight = cors_client.request(
        "OPTIONS", "/postbacks", {"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 204
    assert _cors(preflight) == {}


def test_without_configured_origins_nobody_gets_cors_headers(client: Api) -> None:
    response = client.request("GET", "/postbacks", {**ADMIN, "Origin": PAGE})
    assert _cors(response) == {}


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/postbacks", {"GET", "POST", "OPTIONS"}),
        ("/postbacks/pb_1", {"GET", "PATCH", "DELETE", "OPTIONS"}),
        ("/postbacks/pb_1/test", {"POST", "OPTIONS"}),
    ],
)
def test_a_preflight_allows_the_page_s_headers_without_a_token(cors_client: Api, path: str, methods: set[str]) -> None:
    response = cors_client.request(
        "OPTIONS",
        path,
        {
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, content-type, if-match",
        },
    )
    assert response.status_code == 204
    cors = _cors(response)
    assert cors["access-control-allow-origin"] == "http://localhost:5173"
    assert set(cors["access-control-allow-methods"].replace(" ", "").split(",")) == methods
    assert {h.strip().lower() for h in cors["access-control-allow-headers"].split(",")} == {
        "authorization",
        "content-type",
        "if-match",
    }
    assert int(cors["access-control-max-age"]) > 0
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == methods


@pytest.mark.parametrize("method", ["PUT", "HEAD", "DELETE"])
def test_a_method_a_path_lacks_is_a_405_problem_with_allow(client: Api, method: str) -> None:
    response = client.request(method, "/postbacks", ADMIN)
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST", "OPTIONS"}
    if method != "HEAD":
        problem = body_of(response)
        assert problem["status"] == 405 and problem["title"] == "Method Not Allowed"
        assert response.headers["Content-Type"] == "application/problem+json"


def test_location_is_the_path_the_client_used(client: Api) -> None:
    response = client.request(
        "POST",
        "/postbacks",
        ADMIN,
        {
            "affiliate_id": "aff-a",
            "conversion_types": ["sale"],
            "conversion_statuses": ["approved"],
            "url": "https://tracker.example.com/cb",
        },
    )
    assert response.status_code == 201
    created = body_of(response)
    assert response.headers["Location"] == f"/postbacks/{created['id']}"


@pytest.mark.parametrize("path", ["/postbacks?colour=red", "/postbacks?limit=5&colour=red"])
def test_an_unknown_query_parameter_is_a_400_naming_it(client: Api, path: str) -> None:
    response = client.request("GET", path, ADMIN)
    assert response.status_code == 400
    assert body_of(response)["errors"] == [{"field": "colour", "message": "unknown query parameter"}]
