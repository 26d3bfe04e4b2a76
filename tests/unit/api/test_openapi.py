"""The OpenAPI document (`functions.api.openapi`): valid 3.1, every operation named, every constraint stated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from functions.api.openapi import openapi_document
from tests.support.api_client import definition

ROOT = Path(__file__).resolve().parents[3]
METHODS = ("get", "post", "patch", "delete", "put")


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _validator(model: str) -> Draft202012Validator:
    document = openapi_document()
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{model}", "components": document["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def test_the_document_validates_as_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)
    assert document["servers"]


def test_every_operation_has_a_unique_operation_id_and_a_tag() -> None:
    operations = _operations(openapi_document())
    ids = [operation["operationId"] for _, _, operation in operations]
    assert len(ids) == len(set(ids)) == 12
    tags = {tag["name"] for tag in openapi_document()["tags"]}
    for _, _, operation in operations:
        assert operation["tags"] and set(operation["tags"]) <= tags


def test_every_status_the_api_answers_is_declared() -> None:
    document = openapi_document()
    by_id = {operation["operationId"]: operation for _, _, operation in _operations(document)}
    for operation in by_id.values():
        assert {"405", "500"} <= set(operation["responses"])
    for name in ("getParameters", "createPostback", "listPostbacks", "getPostback", "updatePostback"):
        assert "401" in by_id[name]["responses"]
    assert {"400", "403", "409", "413", "415", "503"} <= set(by_id["createPostback"]["responses"])
    assert {"400", "404", "412", "413", "503"} <= set(by_id["updatePostback"]["responses"])
    assert {"404", "429", "413"} <= set(by_id["testPostback"]["responses"])
    assert "Retry-After" in by_id["testPostback"]["responses"]["429"]["headers"]
    assert "Location" in by_id["createPostback"]["responses"]["201"]["headers"]


def test_no_schema_has_a_default_its_type_refuses() -> None:
    problem = openapi_document()["components"]["schemas"]["Problem"]
    assert "default" not in problem["properties"]["errors"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(definition(affiliate_id="aff-a"), id="global with an excluded offer"),
        pytest.param(
            definition(affiliate_id="aff-a", scope="offer", included_offer_ids=["o-1"], excluded_offer_ids=[]),
            id="offer scope",
        ),
        pytest.param(
            definition(
                affiliate_id="aff-a", url="https://t.example.co:8443/a/{affS1}?x={payout}&c={conversionId}#f={cid}"
            ),
            id="port",
        ),
    ],
)
def test_requests_the_api_accepts_are_schema_valid(body: dict[str, Any]) -> None:
    assert list(_validator("PostbackCreate").iter_errors(body)) == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        pytest.param({"scope": "offer", "included_offer_ids": []}, "offer scope without offers", id="offer-empty"),
        pytest.param({"scope": "offer", "included_offer_ids": ["o"]}, "excluded offers with offer scope", id="both"),
        pytest.param({"included_offer_ids": ["o"]}, "included offers with global scope", id="global-included"),
        pytest.param({"conversion_types": ["Sale"]}, "type pattern", id="type"),
        pytest.param({"conversion_types": []}, "no type", id="no-type"),
        pytest.param({"conversion_statuses": ["approved", "approved"]}, "duplicate", id="dup-status"),
        pytest.param({"conversion_statuses": ["paid"]}, "unknown status", id="status"),
        pytest.param({"excluded_offer_ids": ["  "]}, "blank offer", id="blank-offer"),
        pytest.param({"excluded_offer_ids": ["o" * 129]}, "long offer", id="long-offer"),
        pytest.param({"url": "ftp://t.example.com/"}, "scheme", id="scheme"),
        pytest.param({"url": "https://user:pw@t.example.com/"}, "userinfo", id="userinfo"),
        pytest.param({"url": "https://10.0.0.1/"}, "private literal", id="ip"),
        pytest.param({"url": "https://t.example.com:22/"}, "port", id="port"),
        pytest.param({"url": "https://{cid}.example.com/"}, "placeholder in host", id="host-placeholder"),
        pytest.param({"url": "https://t.example.com/{nope}"}, "unknown placeholder", id="unknown-placeholder"),
        pytest.param({"url": "https://t.example.com/" + "a" * 2048}, "too long", id="long-url"),
        pytest.param({"url": "https://localhost/"}, "not a public name", id="localhost"),
        pytest.param({"enabled": None}, "null", id="null"),
        pytest.param({"colour": "red"}, "unknown field", id="unknown-field"),
    ],
)
def test_requests_the_api_refuses_are_schema_invalid(change: dict[str, Any], path: str) -> None:
    body = {**definition(affiliate_id="aff-a"), **change}
    assert list(_validator("PostbackCreate").iter_errors(body)), path


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({}, True),
        ({"enabled": False}, True),
        ({"scope": "offer", "included_offer_ids": ["o"], "excluded_offer_ids": []}, True),
        ({"scope": "global", "included_offer_ids": [], "excluded_offer_ids": ["o"]}, True),
        ({"excluded_offer_ids": ["o"]}, False),
        ({"scope": "offer", "included_offer_ids": ["o"]}, False),
        ({"scope": "global"}, False),
        ({"affiliate_id": ""}, False),
    ],
)
def test_a_patch_states_its_offer_lists_with_the_scope(body: dict[str, Any], valid: bool) -> None:
    assert (list(_validator("PostbackPatch").iter_errors(body)) == []) is valid


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"aff_s1": "abc", "payout": 1.5, "status": "CONVERSION_STATUS_APPROVED"}, True),
        ({"status": "approved", "cid": None}, True),
        ({"status": "paid"}, False),
        ({"conversion_id": None}, False),
        ({"offer_id": " "}, False),
        ({"aff_s1": "x" * 1025}, False),
    ],
)
def test_the_test_fire_body_schema(body: dict[str, Any], valid: bool) -> None:
    assert (list(_validator("TestConversion").iter_errors(body)) == []) is valid


def test_the_page_s_copy_of_the_document_is_current() -> None:
    """web/openapi.json feeds the page's generated types (web/src/api/schema.d.ts); regenerate with `make web-types`."""
    committed = json.loads((ROOT / "web" / "openapi.json").read_text())
    assert committed == openapi_document(), "web/openapi.json is stale: run `make web-types`"
