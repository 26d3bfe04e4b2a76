"""Signing secrets and fire delay in the API and the postbacks table (docs/contract.md §5, §6; docs/security.md)."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest

from functions.core.signing import SECRET_PATTERN
from functions.storage.models import PostbackModel
from functions.storage.postbacks import PostbackRepository, secret_key
from tests.integration.api.conftest import ADMIN, AFF_A, AFF_B, Api, body_of

pytestmark = pytest.mark.integration

SIGNED_URL = "https://tracker.example.com/cb?click={affS1}&ts={timestamp}&sig={signature}"


def secret_of(client: Api, postback_id: str, headers: dict[str, str] = AFF_A) -> Any:
    return client.request("GET", f"/postbacks/{postback_id}/signing-secret", headers)


def raw_items() -> list[dict[str, Any]]:
    table = boto3.client("dynamodb", region_name="us-east-1")
    return list(table.scan(TableName=PostbackModel.Meta.table_name)["Items"])


def test_a_new_postback_has_a_secret_its_owner_and_an_admin_read(client: Api) -> None:
    created = client.create(AFF_A, url=SIGNED_URL)
    response = secret_of(client, created["id"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    secret = body_of(response)["secret"]
    assert SECRET_PATTERN.fullmatch(secret)
    assert body_of(secret_of(client, created["id"], ADMIN))["secret"] == secret
    assert body_of(secret_of(client, created["id"]))["secret"] == secret  # reading does not change it
    other = client.create(AFF_A)
    assert body_of(secret_of(client, other["id"]))["secret"] != secret


def test_another_affiliate_cannot_read_or_rotate_the_secret(client: Api) -> None:
    created = client.create(AFF_A)
    for method in ("GET", "POST"):
        response = client.request(method, f"/postbacks/{created['id']}/signing-secret", AFF_B)
        assert response.status_code == 404
        assert "pbsec_" not in response.body.decode()
    assert client.request("GET", "/postbacks/pb_missing/signing-secret", ADMIN).status_code == 404
    assert client.request("GET", f"/postbacks/{created['id']}/signing-secret", {}).status_code == 401


def test_rotation_returns_a_new_secret_that_reads_back(client: Api) -> None:
    created = client.create(AFF_A)
    before = body_of(secret_of(client, created["id"]))["secret"]
    rotated = client.request("POST", f"/postbacks/{created['id']}/signing-secret", AFF_A)
    assert rotated.status_code == 200
    after = body_of(rotated)["secret"]
    assert after != before and SECRET_PATTERN.fullmatch(after)
    assert body_of(secret_of(client, created["id"]))["secret"] == after
    # Rotation is not an edit: the version (ETag) of the postback is unchanged.
    assert body_of(client.request("GET", f"/postbacks/{created['id']}", AFF_A))["version"] == created["version"]


def test_no_other_read_returns_the_secret(client: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # the level the functions log at (botocore DEBUG logs every body)
    created = client.create(AFF_A, url=SIGNED_URL)
    secret = body_of(secret_of(client, created["id"]))["secret"]
    rotated = body_of(client.request("POST", f"/postbacks/{created['id']}/signing-secret", AFF_A))["secret"]
    reads = [
        client.request("GET", f"/postbacks/{created['id']}", AFF_A),
        client.request("GET", "/postbacks", AFF_A),
        client.request("GET", "/postbacks", ADMIN),
        client.request("GET", f"/postbacks/{created['id']}/deliveries", AFF_A),
        client.request("PATCH", f"/postbacks/{created['id']}", AFF_A, {"enabled": False}),
        client.request("GET", "/postbacks/" + secret_key(created["id"]).replace("#", "%23"), ADMIN),
    ]
    for response in reads:
        assert secret not in response.body.decode() and rotated not in response.body.decode()
    assert "signing_secret" not in json.dumps([body_of(r) for r in reads[:5]])
    assert secret not in caplog.text and rotated not in caplog.text
    # The secret item is in no index: the listings (and the evaluator) query only the indexes.
    repository = PostbackRepository()
    assert [p.id for p in repository.list_for_affiliate("aff-a")] == [created["id"]]
    assert repository.get(secret_key(created["id"])) is None
    [item] = [item for item in raw_items() if item["postback_id"]["S"] == secret_key(created["id"])]
    assert "affiliate_id" not in item and "listing" not in item


def test_the_senders_batch_read_carries_the_secret_and_a_delete_removes_it(client: Api) -> None:
    created = client.create(AFF_A, url=SIGNED_URL)
    secret = body_of(secret_of(client, created["id"]))["secret"]
    repository = PostbackRepository()
    read = repository.get_many([created["id"], "pb_missing"])
    assert list(read) == [created["id"]]
    signing = read[created["id"]].signing_secret
    assert signing is not None and signing.reveal() == secret
    assert secret not in repr(read[created["id"]])
    assert repository.get(created["id"]).signing_secret is None  # type: ignore[union-attr]
    assert client.request("DELETE", f"/postbacks/{created['id']}", AFF_A).status_code == 204
    assert not [item for item in raw_items() if item["postback_id"]["S"] == secret_key(created["id"])]
    assert client.request("POST", f"/postbacks/{created['id']}/signing-secret", ADMIN).status_code == 404


def test_a_postback_older_than_signing_gets_its_secret_on_first_read_or_edit(client: Api) -> None:
    first, second = client.create(AFF_A), client.create(AFF_A)
    table = boto3.client("dynamodb", region_name="us-east-1")
    for postback_id in (first["id"], second["id"]):
        table.delete_item(TableName=PostbackModel.Meta.table_name, Key={"postback_id": {"S": secret_key(postback_id)}})
    assert PostbackRepository().get_many([first["id"]])[first["id"]].signing_secret is None
    # First read creates it, and it stays.
    secret = body_of(secret_of(client, first["id"]))["secret"]
    assert SECRET_PATTERN.fullmatch(secret)
    assert body_of(secret_of(client, first["id"]))["secret"] == secret
    # An edit creates it too (so a URL given {signature} by the edit can be signed); an existing one is kept.
    patched = client.request("PATCH", f"/postbacks/{second['id']}", AFF_A, {"url": SIGNED_URL})
    assert patched.status_code == 200
    signing = PostbackRepository().get_many([second["id"]])[second["id"]].signing_secret
    assert signing is not None and SECRET_PATTERN.fullmatch(signing.reveal())
    client.request("PATCH", f"/postbacks/{first['id']}", AFF_A, {"enabled": False})
    assert body_of(secret_of(client, first["id"]))["secret"] == secret


@pytest.mark.parametrize(
    "url",
    [
        "https://tracker.example.com/cb?sig={signature}&click={affS1}",
        "https://tracker.example.com/{signature}",
        "https://tracker.example.com/cb?sig={signature}#top",
    ],
)
def test_a_signature_that_is_not_the_final_query_value_is_refused(client: Api, url: str) -> None:
    response = client.request("POST", "/postbacks", AFF_A, {**_definition(), "url": url})
    assert response.status_code == 400
    assert [error["field"] for error in body_of(response)["errors"]] == ["url"]
    created = client.create(AFF_A)
    patched = client.request("PATCH", f"/postbacks/{created['id']}", AFF_A, {"url": url})
    assert patched.status_code == 400


def test_delay_seconds_defaults_to_zero_and_is_bounded(client: Api) -> None:
    created = client.create(AFF_A)
    assert created["delay_seconds"] == 0
    delayed = client.create(AFF_A, delay_seconds=900)
    assert delayed["delay_seconds"] == 900
    patched = client.request("PATCH", f"/postbacks/{created['id']}", AFF_A, {"delay_seconds": 30})
    assert patched.status_code == 200 and body_of(patched)["delay_seconds"] == 30
    assert body_of(client.request("GET", f"/postbacks/{created['id']}", AFF_A))["delay_seconds"] == 30
    for bad in (-1, 901, 1.5, "10", True, None):
        response = client.request("PATCH", f"/postbacks/{created['id']}", AFF_A, {"delay_seconds": bad})
        assert response.status_code == 400, bad
        assert [error["field"] for error in body_of(response)["errors"]] == ["delay_seconds"]
    assert client.request("POST", "/postbacks", AFF_A, {**_definition(), "delay_seconds": 901}).status_code == 400


def test_the_openapi_document_describes_the_secret_routes_and_the_delay(client: Api) -> None:
    document = body_of(client.request("GET", "/openapi.json", {}))
    path = document["paths"]["/postbacks/{id}/signing-secret"]
    assert (path["get"]["operationId"], path["post"]["operationId"]) == ("getSigningSecret", "rotateSigningSecret")
    schemas = document["components"]["schemas"]
    assert schemas["SigningSecretOut"]["properties"]["secret"]["pattern"] == SECRET_PATTERN.pattern
    delay = schemas["PostbackPatch"]["properties"]["delay_seconds"]
    assert (delay["minimum"], delay["maximum"]) == (0, 900)
    names = [parameter["name"] for parameter in body_of(client.request("GET", "/parameters", AFF_A))["parameters"]]
    assert {"timestamp", "signature"} <= set(names)


def _definition() -> dict[str, Any]:
    from tests.support.api_client import definition

    return definition()
