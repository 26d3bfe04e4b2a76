"""The bodies the routes send are those their pydantic models document and used to write.

`functions.api.bodies` builds them as plain dicts (no pydantic at the API's import); each one must
be exactly what its model of `functions.api.schemas` gives for it — same fields, same order, same
values, same JSON text — so the OpenAPI document stays true and the bytes on the wire unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from functions.api import schemas
from functions.api.bodies import (
    delivery_list_body,
    dumps,
    fire_result_body,
    health_body,
    parameter_catalogue_body,
    postback_body,
    postback_list_body,
    problem_body,
    signing_secret_body,
)
from functions.core.model import CONVERSION_STATUSES, Attempt, Delivery, DeliveryState, Postback, Scope
from functions.core.placeholders import CATALOGUE
from functions.core.validation import FieldError

pytestmark = pytest.mark.unit

# Any text, with what JSON must escape (quotes, backslashes, control characters) and non-ASCII.
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
optional_text = st.none() | text
optional_int = st.none() | st.integers(min_value=-(2**63), max_value=2**63)
texts = st.lists(text, max_size=3).map(tuple)

postbacks = st.builds(
    Postback,
    id=text,
    affiliate_id=text,
    scope=st.sampled_from(Scope),
    included_offer_ids=texts,
    excluded_offer_ids=texts,
    conversion_types=texts,
    conversion_statuses=st.lists(st.sampled_from(CONVERSION_STATUSES), max_size=3).map(tuple),
    url=text,
    enabled=st.booleans(),
    created_at=text,
    updated_at=text,
    version=st.integers(min_value=0),
    last_success_at=optional_text,
    consecutive_failures=st.integers(min_value=0),
    last_failure_reason=optional_text,
    created_by=optional_text,
    updated_by=optional_text,
    delay_seconds=st.integers(min_value=0, max_value=900),
)
attempts = st.builds(
    Attempt,
    number=st.integers(min_value=1),
    at=text,
    outcome=text,
    duration_ms=optional_int,
    status_code=optional_int,
    error=optional_text,
    response_excerpt=optional_text,
    test=st.booleans(),
)
deliveries = st.builds(
    Delivery,
    delivery_id=text,
    postback_id=text,
    affiliate_id=text,
    conversion_id=text,
    conversion_status=st.sampled_from(CONVERSION_STATUSES),
    url=text,
    target_host=text,
    state=st.sampled_from(DeliveryState),
    created_at=text,
    updated_at=text,
    reason=optional_text,
    is_test=st.booleans(),
    attempts=st.lists(attempts, max_size=3).map(tuple),
    next_attempt_at=optional_text,
    host_paused_until=optional_text,
    host_pause_waits=st.integers(min_value=0),
)


def assert_documented(model: type[BaseModel], body: dict[str, Any], *, exclude_none: bool = False) -> None:
    """`body` is what `model` holds and writes for it: the same JSON text, field for field."""
    assert dumps(body) == model.model_validate(body).model_dump_json(exclude_none=exclude_none)


@given(postbacks, optional_text)
def test_a_postback_is_sent_as_its_model_writes_it(postback: Postback, host_paused_until: str | None) -> None:
    body = postback_body(postback, host_paused_until)
    assert_documented(schemas.PostbackOut, body)
    assert body["host_paused_until"] == host_paused_until
    assert body["scope"] == postback.scope.value


@given(st.lists(postbacks, max_size=3), optional_text)
def test_a_postback_page_is_sent_as_its_model_writes_it(page: list[Postback], cursor: str | None) -> None:
    assert_documented(schemas.PostbackList, postback_list_body([postback_body(p) for p in page], cursor))


@given(st.lists(deliveries, max_size=3), optional_text)
def test_a_delivery_log_page_is_sent_as_its_model_writes_it(records: list[Delivery], cursor: str | None) -> None:
    body = delivery_list_body(records, cursor)
    assert_documented(schemas.DeliveryList, body)
    assert [item["id"] for item in body["items"]] == [record.delivery_id for record in records]


@given(text, text, optional_int, optional_int, optional_text, text, st.booleans())
def test_a_test_fire_result_is_sent_as_its_model_writes_it(
    delivery_id: str,
    url: str,
    status_code: int | None,
    duration_ms: int | None,
    error: str | None,
    classification: str,
    delivered: bool,
) -> None:
    body = fire_result_body(
        delivery_id,
        url,
        status_code=status_code,
        duration_ms=duration_ms,
        error=error,
        classification=classification,
        delivered=delivered,
    )
    assert_documented(schemas.TestFireResult, body)


@given(text, text, st.integers(min_value=400, max_value=599), text, st.none() | st.lists(st.tuples(text, text)))
def test_a_problem_is_sent_as_its_model_writes_it_without_null_errors(
    kind: str, title: str, status: int, detail: str, errors: list[tuple[str, str]] | None
) -> None:
    field_errors = None if errors is None else [FieldError(field, message) for field, message in errors]
    body = problem_body(kind, title, status, detail, field_errors)
    assert_documented(schemas.Problem, body, exclude_none=True)
    assert ("errors" in body) is (errors is not None)


@given(text)
def test_the_small_bodies_are_sent_as_their_models_write_them(value: str) -> None:
    assert_documented(schemas.SigningSecretOut, signing_secret_body(value))
    assert_documented(schemas.Health, health_body(value))


def test_the_parameter_catalogue_is_sent_as_its_model_writes_it() -> None:
    body = parameter_catalogue_body(CATALOGUE, CONVERSION_STATUSES)
    assert_documented(schemas.ParameterCatalogue, body)
    assert [parameter["name"] for parameter in body["parameters"]] == [placeholder.name for placeholder in CATALOGUE]


def test_text_is_sent_unescaped_and_without_spaces() -> None:
    assert dumps(health_body('é "q" \\ \n')) == '{"status":"é \\"q\\" \\\\ \\n"}'
