"""What the API writes for CloudWatch when it answers with a problem: one JSON `api.error` line with the
method, route template, status, problem type and postback id — never the request's body (a postback's
URL and its placeholders), query or token."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import AFF_A, Api, auth, definition, token
from tests.support.lambda_logs import lambda_json_logs

pytestmark = pytest.mark.integration

SECRET_PATH = "/secret-path-91c"


def test_a_validation_error_is_one_line_without_the_body(client: Api) -> None:
    bearer = token("admin")
    body = definition(url=f"ftp://tracker.example{SECRET_PATH}?click={{affS1}}", conversion_types=[])
    with lambda_json_logs() as logs:
        response = client.request("POST", "/postbacks", auth(bearer), body)

    assert response.status_code == 400
    (line,) = logs.events("api.error")
    assert (line["level"], line["logger"], line["method"], line["route"], line["status_code"]) == (
        "INFO",
        "functions.api.errors",
        "POST",
        "/postbacks",
        400,
    )
    assert line["problem"] == "/problems/validation-failed"
    for text in logs.lines:
        assert SECRET_PATH not in text and "ftp://" not in text and bearer not in text


def test_a_missing_postback_names_it_and_an_unauthenticated_call_has_no_token(client: Api) -> None:
    with lambda_json_logs() as logs:
        missing = client.request("GET", "/postbacks/pb_nothere", AFF_A)
        unauthenticated = client.request("GET", "/postbacks", {"Authorization": "Bearer not-a-token-xyz"})

    assert (missing.status_code, unauthenticated.status_code) == (404, 401)
    first, second = logs.events("api.error")
    assert (first["route"], first["postback_id"], first["status_code"]) == ("/postbacks/{id}", "pb_nothere", 404)
    assert (second["route"], second["status_code"]) == ("/postbacks", 401)
    assert all("not-a-token-xyz" not in text for text in logs.lines)


def test_a_successful_request_writes_no_error_line(client: Api) -> None:
    with lambda_json_logs() as logs:
        response = client.request("GET", "/health", {})
    assert response.status_code == 200
    assert logs.events("api.error") == []
