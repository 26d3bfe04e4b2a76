"""The shape check of a request body against its pydantic model of `functions.api.schemas`.

JSON types, required fields and unknown fields, with pydantic's messages, as `FieldError`s. The
routes that read a body (create, patch, test fire) import this module on their first call, not
with the API: pydantic and the models are about half of what importing `app` would cost
(docs/performance.md), and the other routes never need them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from functions.api.schemas import PostbackCreate, PostbackPatch, TestConversion
from functions.core.validation import FieldError


def field_name(location: tuple[int | str, ...]) -> str:
    """A pydantic error location as the JSON field it names: `conversion_statuses[1]`."""
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _message(error: Mapping[str, Any]) -> str:
    return "unknown field" if error["type"] == "extra_forbidden" else str(error["msg"])


def _shape_errors(schema: type[BaseModel], body: Mapping[str, Any]) -> list[FieldError]:
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        return [FieldError(field_name(tuple(error["loc"])), _message(error)) for error in exc.errors()]
    return []


def create_errors(body: Mapping[str, Any]) -> list[FieldError]:
    """What is wrong with the shape of a POST /postbacks body (`PostbackCreate`)."""
    return _shape_errors(PostbackCreate, body)


def patch_errors(body: Mapping[str, Any]) -> list[FieldError]:
    """What is wrong with the shape of a PATCH /postbacks/{id} body (`PostbackPatch`)."""
    return _shape_errors(PostbackPatch, body)


def well_typed(body: Mapping[str, Any], errors: list[FieldError]) -> PostbackPatch:
    """The fields of `body` that passed the shape check (so their values can be checked too)."""
    bad = {error.field.split("[", 1)[0].split(".", 1)[0] for error in errors}
    return PostbackPatch.model_validate(
        {name: value for name, value in body.items() if name in PostbackPatch.model_fields and name not in bad}
    )


def overrides_shape(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """A test-fire body (`TestConversion`): the well-typed attributes it gives, and the shape errors."""
    errors: list[FieldError] = []
    try:
        return TestConversion.model_validate(body).model_dump(exclude_unset=True), errors
    except ValidationError as exc:
        for error in exc.errors():
            # Keep the attribute and list indexes; drop the union-member tags (`payout.int`).
            location = error["loc"]
            name = field_name((location[0], *(part for part in location[1:] if isinstance(part, int))))
            if name not in {known.field for known in errors}:
                errors.append(FieldError(name, _message(error)))
        # The fields pydantic did not report are well typed: their values are checked too.
        bad = {str(error["loc"][0]) for error in exc.errors()}
        values = {
            name: value for name, value in body.items() if name in TestConversion.model_fields and name not in bad
        }
        return values, errors
