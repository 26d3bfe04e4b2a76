"""The API's HTTP behaviour on the local server (`local.api_server`): every method, unknown paths, CORS."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest

from tests.e2e.harness import Stack

pytestmark = pytest.mark.e2e


def _raw(stack: Stack, method: str, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    parts = urlsplit(stack.api_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    connection.request(method, path, headers=headers)
    return connection.getresponse()


@pytest.mark.parametrize("method", ["TRACE", "PUT", "PROPFIND"])
def test_any_method_a_path_lacks_is_a_405_problem(stack: Stack, method: str) -> None:
    response = _raw(stack, method, "/postbacks", {"Origin": stack.web_url})
    body = response.read()
    assert response.status == 405
    assert response.getheader("Content-Type") == "application/problem+json"
    assert b'"status":405' in body.replace(b" ", b"")
    assert response.getheader("Access-Control-Allow-Origin") == stack.web_url


def test_an_unknown_path_is_a_404_problem_with_cors(stack: Stack) -> None:
    response = _raw(stack, "GET", "/nothing/here", {"Origin": stack.web_url})
    response.read()
    assert response.status == 404
    assert response.getheader("Content-Type") == "application/problem+json"
    assert response.getheader("Access-Control-Allow-Origin") == stack.web_url


def test_a_401_reaches_the_page_with_cors(stack: Stack) -> None:
    response = _raw(stack, "GET", "/postbacks", {"Origin": stack.web_url})
    response.read()
    assert response.status == 401
    assert response.getheader("Access-Control-Allow-Origin") == stack.web_url
