"""The pure parts of CORS (`functions.api.cors`), links (`functions.api.links`) and the origins setting."""

from __future__ import annotations

import pytest

from functions.api.cors import allowed_origin, cors_headers, preflight_headers
from functions.api.links import path_prefix
from functions.settings import SettingsError, load_settings, parse_cors_origins

ALLOWED = frozenset({"http://127.0.0.1:8080", "https://app.example"})


def test_an_allowed_origin_is_echoed_as_sent() -> None:
    assert allowed_origin("https://APP.example", ALLOWED) == "https://APP.example"
    assert cors_headers("https://app.example", ALLOWED)["Access-Control-Allow-Origin"] == "https://app.example"


@pytest.mark.parametrize("origin", [None, "", "https://app.example.evil", "http://app.example", "null"])
def test_anything_else_gets_nothing(origin: str | None) -> None:
    assert cors_headers(origin, ALLOWED) == {}
    assert preflight_headers(origin, ALLOWED, ["GET"]) == {}


def test_a_preflight_names_methods_and_request_headers() -> None:
    headers = preflight_headers("https://app.example", ALLOWED, ["GET", "PATCH", "OPTIONS"])
    assert headers["Access-Control-Allow-Methods"] == "GET, PATCH, OPTIONS"
    assert headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type, If-Match"
    assert headers["Access-Control-Expose-Headers"] == "ETag, Location, Retry-After"


def test_origins_setting_is_parsed_and_checked() -> None:
    assert parse_cors_origins(" http://127.0.0.1:8080/ ,https://App.example,,") == ALLOWED
    assert load_settings({"POSTBACKS_CORS_ORIGINS": "http://localhost:5173"}).cors_origins == {"http://localhost:5173"}
    assert load_settings({}).cors_origins == frozenset()
    for bad in ("app.example", "https://app.example/path", "*", "ftp://x.example"):
        with pytest.raises(SettingsError, match="POSTBACKS_CORS_ORIGINS"):
            parse_cors_origins(bad)


@pytest.mark.parametrize(
    ("client_path", "app_path", "prefix"),
    [
        ("/api/postbacks", "/postbacks", "/api"),
        ("/v1/postbacks", "/postbacks", "/v1"),
        ("/postbacks", "/postbacks", ""),
        ("/elsewhere", "/postbacks", ""),
        (None, "/postbacks", ""),
    ],
)
def test_the_prefix_is_what_api_gateway_stripped(client_path: str | None, app_path: str, prefix: str) -> None:
    event = {"path": app_path, "requestContext": {"path": client_path}}
    assert path_prefix(event) == prefix
