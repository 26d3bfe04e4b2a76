"""JSON Schema for the rules the request models cannot state field by field (used by `schemas`).

The OpenAPI document must state every constraint the API enforces, so that a request valid
against it is never refused as malformed (docs/contract.md §5). Three need more than a type:

- the URL: a pattern built from the placeholder catalogue and the egress rules that a pattern can
  express (http/https, a DNS name with a letter top-level label, an allowed port, placeholders only
  after the host and only known ones);
- scope consistency: on create, `scope: offer` needs included offers and no excluded ones, and the
  global scope has no included offers; a PATCH is checked on the merged result, so the schema asks
  for the offer lists together with `scope` (and `scope` with both lists it constrains);
- a test fire's `status`: a status code, upper or lower case, with or without `CONVERSION_STATUS_`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from functions.core.model import CONVERSION_STATUSES
from functions.core.placeholders import CATALOGUE

JsonSchema = dict[str, Any]
SchemaHook = Callable[[JsonSchema], None]

DEFAULT_ALLOWED_PORTS = (80, 443, 8080, 8443)
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TOP_LABEL = r"[a-z]{2,63}"
# RFC 3986 unreserved + sub-delims + ':' '@', and percent-escapes; braces only around a placeholder.
_PATH_CHAR = r"[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2}"


def url_template_pattern(ports: tuple[int, ...] = DEFAULT_ALLOWED_PORTS) -> str:
    # `{signature}` only as the value of the final query parameter, with no fragment after it.
    names = "|".join(re.escape(placeholder.name) for placeholder in CATALOGUE if placeholder.name != "signature")
    token = rf"(?:{_PATH_CHAR}|\{{(?:{names})\}})"
    port = "|".join(str(number) for number in ports)
    unsigned = rf"(?:\?(?:{token}|[/?])*)?(?:#(?:{token}|[/?])*)?"
    signed = rf"\?(?:(?:{token}|[/?])*&)?[A-Za-z0-9._~-]+=\{{signature\}}"
    return (
        rf"^https?://(?:{_DNS_LABEL}\.)+{_TOP_LABEL}(?::(?:{port}))?"
        rf"(?:/(?:{token}|/)*)?(?:{unsigned}|{signed})$"
    )


def test_status_pattern() -> str:
    codes = "|".join([*CONVERSION_STATUSES, *(status.upper() for status in CONVERSION_STATUSES)])
    return rf"^(?:CONVERSION_STATUS_|conversion_status_)?(?:{codes})$"


def _scope_is(scope: str) -> JsonSchema:
    return {"properties": {"scope": {"const": scope}}, "required": ["scope"]}


def _needs(field: str, *others: str) -> JsonSchema:
    return {"if": {"required": [field]}, "then": {"required": list(others)}}


def create_scope_rules(base: SchemaHook) -> SchemaHook:
    def hook(schema: JsonSchema) -> None:
        base(schema)
        # Required for admins; an affiliate may leave it out only because the API fills in its own ID,
        # so the document asks every client for it.
        schema["required"] = sorted({*schema.get("required", []), "affiliate_id"})
        schema["allOf"] = [
            {
                "if": _scope_is("offer"),
                "then": {
                    "required": ["included_offer_ids"],
                    "properties": {"included_offer_ids": {"minItems": 1}, "excluded_offer_ids": {"maxItems": 0}},
                },
                "else": {"properties": {"included_offer_ids": {"maxItems": 0}}},
            }
        ]

    return hook


def patch_scope_rules(base: SchemaHook) -> SchemaHook:
    def hook(schema: JsonSchema) -> None:
        base(schema)
        schema["allOf"] = [
            _needs("included_offer_ids", "scope"),
            _needs("excluded_offer_ids", "scope"),
            {
                "if": _scope_is("offer"),
                "then": {
                    "required": ["included_offer_ids", "excluded_offer_ids"],
                    "properties": {"included_offer_ids": {"minItems": 1}, "excluded_offer_ids": {"maxItems": 0}},
                },
            },
            {
                "if": _scope_is("global"),
                "then": {"required": ["included_offer_ids"], "properties": {"included_offer_ids": {"maxItems": 0}}},
            },
        ]

    return hook


def drop_default(schema: JsonSchema) -> None:
    """For an optional field whose absence is its default: `default: null` would not match its type."""
    schema.pop("default", None)
