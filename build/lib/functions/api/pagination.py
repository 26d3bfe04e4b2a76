"""Cursor pagination shared by the list endpoints (`/postbacks`, `/postbacks/{id}/deliveries`).

A cursor is opaque to clients: base64url of JSON `{"q": <query>, "k": <key>}`, where `q` names the
query it continues (index and filters) and `k` is the DynamoDB start key. A cursor is accepted
only for the query it was issued for and only with the key attributes that query's index uses,
with the partition value of that query, so it can never start a read in another partition.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from functions.core.validation import FieldError, ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 4096

QueryId = Mapping[str, str | None]
StartKey = dict[str, str]


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ValidationFailed([FieldError("limit", f"must be an integer from 1 to {maximum}")])
    return int(raw)


def encode_cursor(query: QueryId, key: Mapping[str, str]) -> str:
    payload = json.dumps({"q": dict(query), "k": dict(key)}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(payload.encode()).decode("ascii").rstrip("=")


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed([FieldError("cursor", message)])


def decode_cursor(
    cursor: str | None, query: QueryId, key_attributes: frozenset[str], fixed: Mapping[str, str]
) -> StartKey | None:
    """The start key a cursor carries, checked against the query it must belong to.

    `key_attributes` are the attributes of the index's start key; `fixed` are those whose value the
    query determines (the partition key), which the cursor must repeat.
    """
    if cursor is None or cursor == "":
        return None
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise _invalid("is not a cursor issued by this API")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _invalid("is not a cursor issued by this API") from exc
    if not isinstance(payload, dict) or payload.get("q") != dict(query):
        raise _invalid("belongs to a different query; start again without a cursor")
    key = payload.get("k")
    if (
        not isinstance(key, dict)
        or set(key) != key_attributes
        or not all(isinstance(value, str) and value for value in key.values())
        or any(key[name] != value for name, value in fixed.items())
    ):
        raise _invalid("is not a cursor issued by this API")
    return {str(name): str(value) for name, value in key.items()}
