"""The postbacks API end to end through Chalice's test client, on moto (tables per test)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.storage.models import PostbackModel
from tests.integration.api.conftest import ADMIN, AFF_A, AFF_B, Api, auth, body_of, definition, token

pytestmark = pytest.mark.integration

RESOURCE_FIELDS = {
    "id",
    "affiliate_id",
    "scope",
    "included_offer_ids",
    "excluded_offer_ids",
    "conversion_types",
    "conversion_statuses",
    "url",
    "enabled",
    "delay_seconds",
    "created_at",
    "updated_at",
    "version",
    "created_by",
    "updated_by",
    "last_success_at",
    "consecutive_failures",
    "last_failure_reason",
    "host_paused_until",
}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    document: dict[str, Any] = body_of(response)
    assert {"type", "title", "status", "detail"} <= set(document)
    assert document["status"] == status
    return document


def error_fields(response: Any) -> set[str]:
    return {error["field"] for error in assert_problem(response, 400)["errors"]}


def stored_postbacks() -> int:
    return sum(1 for item in PostbackModel.scan() if item.postback_id.startswith("pb_"))


# --- public endpoints ---------------------------------------------------------------------------


def test_health_needs_no_token(client: Api) -> None:
    response = client.request("GET", "/health", {})
    assert response.status_code == 200
    assert body_of(response) == {"status": "ok"}


def test_parameters_lists_the_catalogue_and_statuses(client: Api) -> None:
    response = client.request("GET", "/parameters", AFF_A)
    assert response.status_code == 200
    document = body_of(response)
    names = {p["name"]: p for p in document["parameters"]}
    assert names["affS1"]["restricted"] is False and names["revenue"]["restricted"] is True
    assert set(names["cid"]) == {"name", "label", "description", "restricted"}
    assert "approved" in document["conversion_statuses"]


def test_parameters_require_a_token(client: Api) -> None:
    assert_problem(client.request("GET", "/parameters", {}), 401)


def test_openapi_document_is_3_1_and_lists_every_path(client: Api) -> None:
    response = client.request("GET", "/openapi.json", {})
    assert response.status_code == 200
    document = body_of(response)
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/health",
        "/parameters",
        "/postbacks",
        "/postbacks/{id}",
        "/postbacks/{id}/deliveries",
        "/postbacks/{id}/test",
        "/postbacks/{id}/signing-secret",
        "/openapi.json",
    }
    assert set(document["paths"]["/postbacks/{id}"]) >= {"get", "patch", "delete"}
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    schemas = document["components"]["schemas"]
    for path in document["paths"].values():
        for operation in (op for key, op in path.items() if key != "parameters"):
            for response_spec in operation["responses"].values():
                for media in response_spec.get("content", {}).values():
                    ref = media.get("schema", {}).get("$ref")
                    if ref:
                        assert ref.removeprefix("#/components/schemas/") in schemas
    assert schemas["PostbackCreate"]["additionalProperties"] is False
    assert "approved" in json.dumps(schemas["PostbackCreate"])


# --- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no token"),
        pytest.param({"Authorization": "Bearer not-a-jwt"}, id="bad token"),
        pytest.param({"Authorization": "Basic YWRtaW46YWRtaW4="}, id="wrong scheme"),
        pytest.param(auth(token("admin", expires_in=-3600)), id="expired"),
        pytest.param(auth(token("admin", secret="another-secret-of-at-least-32-bytes!!")), id="wrong secret"),
        pytest.param(auth(token("affiliate")), id="affiliate without affiliate_id"),
        pytest.param(auth(token("superuser")), id="unknown role"),
        pytest.param(auth(token("admin", nbf=9_999_999_999)), id="not yet valid"),
    ],
)
def test_requests_without_a_valid_token_get_401_problem(client: Api, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/postbacks"), ("POST", "/postbacks"), ("GET", "/postbacks/pb_x")):
        body = definition(affiliate_id="aff-a") if method == "POST" else None
        response = client.request(method, path, headers, body)
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert stored_postbacks() == 0


def test_token_signed_with_another_algorithm_is_refused(client: Api) -> None:
    unsigned = token("admin").rsplit(".", 1)[0] + "."
    assert_problem(client.request("GET", "/postbacks", {"Authorization": f"Bearer {unsigned}"}), 401)


# --- create -------------------------------------------------------------------------------------


def test_admin_creates_for_an_affiliate_with_location_and_etag(client: Api) -> None:
    response = client.request("POST", "/postbacks", ADMIN, definition(affiliate_id="aff-a"))
    assert response.status_code == 201
    created = body_of(response)
    assert set(created) == RESOURCE_FIELDS
    assert created["id"].startswith("pb_") and len(created["id"]) == 29
    assert created["affiliate_id"] == "aff-a"
    assert created["version"] == 1 and created["enabled"] is True
    assert created["created_at"] == created["updated_at"]
    assert response.headers["Location"] == f"/postbacks/{created['id']}"
    assert response.headers["ETag"] == '"1"'


def test_affiliate_creates_for_itself_by_default(client: Api) -> None:
    created = client.create(AFF_A)
    assert created["affiliate_id"] == "aff-a"


def test_affiliate_naming_itself_may_create(client: Api) -> None:
    assert client.create(AFF_A, affiliate_id="aff-a")["affiliate_id"] == "aff-a"


def test_affiliate_creating_for_another_affiliate_gets_403(client: Api) -> None:
    response = client.request("POST", "/postbacks", AFF_A, definition(affiliate_id="aff-b"))
    assert_problem(response, 403)
    assert stored_postbacks() == 0


def test_admin_must_name_the_affiliate(client: Api) -> None:
    assert error_fields(client.request("POST", "/postbacks", ADMIN, definition())) == {"affiliate_id"}


def test_invalid_create_names_every_bad_field_and_stores_nothing(client: Api) -> None:
    body = {
        "affiliate_id": "aff-a",
        "scope": "offer",
        "included_offer_ids": [],
        "excluded_offer_ids": ["offer-1"],
        "conversion_types": ["Sale!"],
        "conversion_statuses": ["approved", "approved", "paid"],
        "url": "http://169.254.169.254/latest?x={nope}",
        "enabled": "yes",
        "colour": "blue",
    }
    fields = error_fields(client.request("POST", "/postbacks", ADMIN, body))
    assert fields == {
        "included_offer_ids",
        "excluded_offer_ids",
        "conversion_types[0]",
        "conversion_statuses[1]",
        "conversion_statuses[2]",
        "url",
        "enabled",
        "colour",
    }
    assert stored_postbacks() == 0


def test_missing_required_fields_are_named(client: Api) -> None:
    fields = error_fields(client.request("POST", "/postbacks", AFF_A, {"scope": "global"}))
    assert fields == {"conversion_types", "conversion_statuses", "url"}


def test_malformed_json_gets_400_problem(client: Api) -> None:
    assert_problem(client.request("POST", "/postbacks", AFF_A, b"{not json"), 400)
    assert_problem(client.request("POST", "/postbacks", AFF_A, b""), 400)


def test_body_that_is_not_an_object_is_refused(client: Api) -> None:
    assert error_fields(client.request("POST", "/postbacks", AFF_A, [1, 2])) == {"body"}


def test_non_json_content_type_gets_415_problem(client: Api) -> None:
    headers = {**AFF_A, "Content-Type": "text/csv"}
    assert_problem(client.request("POST", "/postbacks", headers, b"a,b"), 415)


def test_restricted_placeholder_is_refused_for_affiliates_and_allowed_for_admins(client: Api) -> None:
    url = "https://tracker.example.com/cb?rev={revenue}"
    response = client.request("POST", "/postbacks", AFF_A, definition(url=url))
    assert error_fields(response) == {"url"}
    assert "revenue" in body_of(response)["errors"][0]["message"]
    assert client.create(ADMIN, affiliate_id="aff-a", url=url)["url"] == url


def test_restricted_placeholder_allowed_for_affiliates_by_configuration(
    client: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions import bootstrap

    monkeypatch.setenv("POSTBACKS_AFFILIATE_RESTRICTED_PLACEHOLDERS", "revenue")
    bootstrap.reset()
    assert client.create(AFF_A, url="https://tracker.example.com/cb?rev={revenue}")["affiliate_id"] == "aff-a"
    response = client.request("POST", "/postbacks", AFF_A, definition(url="https://t.example.com/?c={customerId}"))
    assert error_fields(response) == {"url"}


def test_the_limit_per_affiliate_gives_409(client: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import bootstrap

    monkeypatch.setenv("POSTBACKS_MAX_POSTBACKS_PER_AFFILIATE", "3")
    bootstrap.reset()
    first = client.create(AFF_A)
    for _ in range(2):
        client.create(AFF_A)
    response = client.request("POST", "/postbacks", AFF_A, definition())
    assert_problem(response, 409)
    client.create(AFF_B)  # another affiliate has its own quota
    assert client.request("DELETE", f"/postbacks/{first['id']}", AFF_A).status_code == 204
    client.create(AFF_A)  # a deleted postback frees its slot
    assert stored_postbacks() == 4


# --- get ----------------------------------------------------------------------------------------


def test_get_returns_the_postback_with_its_etag(client: Api) -> None:
    created = client.create(AFF_A)
    for headers in (AFF_A, ADMIN):
        response = client.request("GET", f"/postbacks/{created['id']}", headers)
        assert response.status_code == 200
        assert body_of(response) == created
        assert response.headers["ETag"] == '"1"'


def test_another_affiliates_postback_is_not_found(client: Api) -> None:
    created = client.create(AFF_A)
    path = f"/postbacks/{created['id']}"
    assert_problem(client.request("GET", path, AFF_B), 404)
    assert_problem(client.request("PATCH", path, AFF_B, {"enabled": False}), 404)
    assert_problem(client.request("DELETE", path, AFF_B), 404)
    unchanged = body_of(client.request("GET", path, AFF_A))
    assert unchanged == created


def test_unknown_postback_is_not_found(client: Api) -> None:
    assert_problem(client.request("GET", "/postbacks/pb_missing", ADMIN), 404)


def test_quota_items_are_never_served_as_postbacks(client: Api) -> None:
    client.create(AFF_A)
    assert_problem(client.request("GET", "/postbacks/quota%23aff-a", ADMIN), 404)


# --- list ---------------------------------------------------------------------------------------


def test_affiliate_lists_only_its_own_newest_first(client: Api) -> None:
    mine = [client.create(AFF_A)["id"] for _ in range(3)]
    client.create(AFF_B)
    listing = body_of(client.request("GET", "/postbacks", AFF_A))
    assert [item["id"] for item in listing["items"]] == list(reversed(mine))
    assert listing["next_cursor"] is None


def test_affiliate_listing_another_affiliate_gets_403(client: Api) -> None:
    client.create(AFF_B)
    assert_problem(client.request("GET", "/postbacks?affiliate_id=aff-b", AFF_A), 403)


def test_admin_lists_everyone_or_one_affiliate(client: Api) -> None:
    a = client.create(AFF_A)["id"]
    b = client.create(AFF_B)["id"]
    everyone = body_of(client.request("GET", "/postbacks", ADMIN))
    assert [item["id"] for item in everyone["items"]] == [b, a]
    only_b = body_of(client.request("GET", "/postbacks?affiliate_id=aff-b", ADMIN))
    assert [item["id"] for item in only_b["items"]] == [b]


@pytest.mark.parametrize("query", ["", "?affiliate_id=aff-a"])
def test_pages_cover_every_postback_exactly_once(client: Api, query: str) -> None:
    created = [client.create(AFF_A)["id"] for _ in range(7)]
    seen: list[str] = []
    path = "/postbacks" + (query + "&" if query else "?") + "limit=3"
    pages = 0
    while True:
        listing = body_of(client.request("GET", path, ADMIN))
        pages += 1
        seen.extend(item["id"] for item in listing["items"])
        if listing["next_cursor"] is None:
            break
        base = "/postbacks" + (query + "&" if query else "?")
        path = f"{base}limit=3&cursor={listing['next_cursor']}"
    assert seen == list(reversed(created))
    assert pages == 3


def test_offer_filter_returns_postbacks_covering_the_offer_across_pages(client: Api) -> None:
    covering = []
    for index in range(8):
        if index % 3 == 0:
            covering.append(
                client.create(AFF_A, scope="offer", included_offer_ids=["o-1"], excluded_offer_ids=[])["id"]
            )
        elif index % 3 == 1:
            client.create(AFF_A, scope="offer", included_offer_ids=["o-2"], excluded_offer_ids=[])
        else:
            covering.append(client.create(AFF_A, excluded_offer_ids=["o-9"])["id"])
    client.create(AFF_A, excluded_offer_ids=["o-1"])  # global, but excludes the offer
    seen: list[str] = []
    cursor = ""
    while True:
        listing = body_of(client.request("GET", f"/postbacks?offer_id=o-1&limit=2{cursor}", AFF_A))
        assert len(listing["items"]) <= 2
        seen.extend(item["id"] for item in listing["items"])
        if listing["next_cursor"] is None:
            break
        assert len(listing["items"]) == 2
        cursor = f"&cursor={listing['next_cursor']}"
    assert seen == list(reversed(covering))


@pytest.mark.parametrize("limit", ["0", "101", "abc", "-1"])
def test_limit_out_of_range_names_limit(client: Api, limit: str) -> None:
    assert error_fields(client.request("GET", f"/postbacks?limit={limit}", AFF_A)) == {"limit"}


def test_bad_or_foreign_cursor_names_cursor(client: Api) -> None:
    for _ in range(3):
        client.create(AFF_A)
    cursor = body_of(client.request("GET", "/postbacks?limit=1", AFF_A))["next_cursor"]
    assert cursor
    assert error_fields(client.request("GET", "/postbacks?cursor=%21%21garbage", AFF_A)) == {"cursor"}
    # A cursor of one query is refused for another (another affiliate, another filter).
    assert error_fields(client.request("GET", f"/postbacks?cursor={cursor}", AFF_B)) == {"cursor"}
    assert error_fields(client.request("GET", f"/postbacks?offer_id=o-1&cursor={cursor}", AFF_A)) == {"cursor"}
    assert client.request("GET", f"/postbacks?limit=1&cursor={cursor}", AFF_A).status_code == 200


# --- patch --------------------------------------------------------------------------------------


def test_patch_changes_only_the_given_fields(client: Api) -> None:
    created = client.create(AFF_A)
    response = client.request("PATCH", f"/postbacks/{created['id']}", AFF_A, {"conversion_statuses": ["pending"]})
    assert response.status_code == 200
    changed = body_of(response)
    assert changed["conversion_statuses"] == ["pending"]
    assert changed["version"] == 2 and response.headers["ETag"] == '"2"'
    assert changed["updated_at"] > created["updated_at"]
    untouched = {k for k in RESOURCE_FIELDS if k not in {"conversion_statuses", "version", "updated_at"}}
    assert {k: changed[k] for k in untouched} == {k: created[k] for k in untouched}
    assert body_of(client.request("GET", f"/postbacks/{created['id']}", AFF_A)) == changed


def test_patch_validates_the_merged_result(client: Api) -> None:
    created = client.create(AFF_A)
    path = f"/postbacks/{created['id']}"
    # Switching to offer scope needs included offers and no excluded ones.
    assert error_fields(client.request("PATCH", path, AFF_A, {"scope": "offer"})) == {
        "included_offer_ids",
        "excluded_offer_ids",
    }
    response = client.request(
        "PATCH", path, AFF_A, {"scope": "offer", "included_offer_ids": ["o-1"], "excluded_offer_ids": []}
    )
    assert response.status_code == 200
    assert body_of(response)["scope"] == "offer"


def test_patch_cannot_change_the_affiliate(client: Api) -> None:
    created = client.create(AFF_A)
    path = f"/postbacks/{created['id']}"
    assert error_fields(client.request("PATCH", path, ADMIN, {"affiliate_id": "aff-b"})) == {"affiliate_id"}
    same = client.request("PATCH", path, AFF_A, {"affiliate_id": "aff-a", "enabled": False})
    assert same.status_code == 200
    assert body_of(same)["affiliate_id"] == "aff-a" and body_of(same)["enabled"] is False


def test_patch_refuses_unknown_fields_and_nulls(client: Api) -> None:
    created = client.create(AFF_A)
    response = client.request("PATCH", f"/postbacks/{created['id']}", AFF_A, {"id": "pb_other", "url": None})
    assert error_fields(response) == {"id", "url"}
    assert body_of(client.request("GET", f"/postbacks/{created['id']}", AFF_A))["version"] == 1


@pytest.mark.parametrize("if_match", ['"1"', "1", 'W/"1", "1"', '"7", "1"', "*"])
def test_patch_with_current_if_match_succeeds(client: Api, if_match: str) -> None:
    created = client.create(AFF_A)
    response = client.request(
        "PATCH", f"/postbacks/{created['id']}", {**AFF_A, "If-Match": if_match}, {"enabled": False}
    )
    assert response.status_code == 200


def test_patch_with_stale_if_match_gets_412_and_changes_nothing(client: Api) -> None:
    created = client.create(AFF_A)
    path = f"/postbacks/{created['id']}"
    assert client.request("PATCH", path, AFF_A, {"enabled": False}).status_code == 200
    assert_problem(client.request("PATCH", path, {**AFF_A, "If-Match": '"1"'}, {"url": "https://x.example.com/"}), 412)
    assert body_of(client.request("GET", path, AFF_A))["url"] == created["url"]


def test_affiliate_may_only_disable_a_postback_whose_url_an_admin_gave_restricted_placeholders(client: Api) -> None:
    created = client.create(ADMIN, affiliate_id="aff-a", url="https://tracker.example.com/?r={revenue}")
    path = f"/postbacks/{created['id']}"
    assert client.request("PATCH", path, AFF_A, {"enabled": False}).status_code == 200
    response = client.request("PATCH", path, AFF_A, {"url": "https://tracker.example.com/?r={revenue}&x=1"})
    assert_problem(response, 403)


# --- delete -------------------------------------------------------------------------------------


def test_delete_then_get_is_not_found(client: Api) -> None:
    created = client.create(AFF_A)
    path = f"/postbacks/{created['id']}"
    response = client.request("DELETE", path, AFF_A)
    assert response.status_code == 204
    assert_problem(client.request("GET", path, AFF_A), 404)
    assert_problem(client.request("DELETE", path, AFF_A), 404)
    assert_problem(client.request("PATCH", path, AFF_A, {"enabled": True}), 404)
    assert body_of(client.request("GET", "/postbacks", AFF_A))["items"] == []


# --- errors of the framework ----------------------------------------------------------------------


def test_method_not_allowed_is_a_problem_with_allow(client: Api) -> None:
    response = client.request("PUT", "/postbacks", AFF_A, definition())
    assert_problem(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST", "OPTIONS"}


def test_an_unexpected_error_is_a_500_problem_without_internals(client: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import bootstrap
    from functions.api.service import PostbackService
    from functions.storage.postbacks import PostbackRepository

    class BrokenRepository(PostbackRepository):
        def get(self, postback_id: str) -> None:
            raise RuntimeError("secret internal detail")

    broken = PostbackService(BrokenRepository(), bootstrap.settings(), egress=bootstrap.egress_policy())
    monkeypatch.setattr(bootstrap, "postback_service", lambda: broken)
    response = client.request("GET", "/postbacks/pb_1", AFF_A)
    document = assert_problem(response, 500)
    assert "secret" not in response.body.decode() and "Traceback" not in response.body.decode()
    assert document["title"] == "Internal Server Error"


def test_routes_verify_the_token_even_when_the_api_gateway_authorizer_ran() -> None:
    from chalice.app import Request

    from functions.api.auth import AuthenticationError, TokenRules, authenticate
    from functions.settings import Settings

    event = {
        "multiValueQueryStringParameters": None,
        "headers": {},
        "pathParameters": None,
        "requestContext": {
            "httpMethod": "GET",
            "resourcePath": "/postbacks",
            "authorizer": {"principalId": "u-9", "role": "affiliate", "affiliate_id": "aff-9"},
        },
        "body": None,
        "isBase64Encoded": False,
        "stageVariables": None,
    }
    # A cached authorizer decision is no substitute for a valid token (its exp is checked here).
    with pytest.raises(AuthenticationError):
        authenticate(Request(event), TokenRules(secret=Settings().jwt_secret))
