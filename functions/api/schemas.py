"""Request and response bodies of the HTTP API (docs/contract.md §5), as pydantic models.

One source for two things: request parsing (JSON types, required fields, unknown fields;
`functions.api.body_shapes`) and the OpenAPI document (`functions.api.openapi`). The routes send
the response bodies as plain dicts (`functions.api.bodies`, held to these models by a test), so
only a request with a body loads pydantic. Value rules (formats, scope consistency, the URL and
its placeholders) live in `functions.core.validation`, so that a PATCH is checked on the merged
result; the JSON Schema of each field still documents them, built from the same constants.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from functions.api.schema_rules import (
    create_scope_rules,
    drop_default,
    patch_scope_rules,
    test_status_pattern,
    url_template_pattern,
)
from functions.core.model import CONVERSION_STATUSES, CONVERSION_TYPE_PATTERN, DeliveryState
from functions.core.signing import SECRET_PATTERN
from functions.core.validation import MAX_DELAY_SECONDS, MAX_OFFER_ID_LENGTH, SCOPES

MAX_OFFERS_DOCUMENTED = 500
MAX_URL_LENGTH_DOCUMENTED = 2048
MAX_AFFILIATE_ID_LENGTH_DOCUMENTED = 128
# JSON Schema patterns are searches, not full matches: this one says "not only white space".
NOT_BLANK = r"\S"

AffiliateId = Annotated[
    StrictStr,
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": MAX_AFFILIATE_ID_LENGTH_DOCUMENTED, "pattern": NOT_BLANK}
    ),
]
OfferId = Annotated[
    StrictStr,
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_OFFER_ID_LENGTH, "pattern": NOT_BLANK}),
]
ConversionType = Annotated[StrictStr, WithJsonSchema({"type": "string", "pattern": CONVERSION_TYPE_PATTERN.pattern})]
ConversionStatus = Annotated[StrictStr, WithJsonSchema({"type": "string", "enum": list(CONVERSION_STATUSES)})]
ScopeName = Annotated[StrictStr, WithJsonSchema({"type": "string", "enum": list(SCOPES)})]
TargetUrl = Annotated[
    StrictStr,
    WithJsonSchema(
        {
            "type": "string",
            "format": "uri-template",
            "minLength": 1,
            "maxLength": MAX_URL_LENGTH_DOCUMENTED,
            "pattern": url_template_pattern(),
            "description": (
                "Absolute http(s) URL of a public host, without user information, on an allowed port "
                "(80, 443, 8080 and 8443 unless configured otherwise), with `{placeholder}`s (GET /parameters) "
                "in path, query or fragment only. The pattern covers DNS names; the API also accepts IP "
                "literals of public addresses, and names or ranges the deployment allows as private targets. "
                "Restricted placeholders need an admin or the network's permission."
            ),
        }
    ),
]


def _whole_number(value: Any) -> Any:
    """JSON has one number type: `1.0` is the integer 1 (as JSON Schema's `integer` says); `1.5` is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


DelaySeconds = Annotated[
    StrictInt,
    BeforeValidator(_whole_number),
    WithJsonSchema(
        {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_DELAY_SECONDS,
            "description": "Seconds the first attempt waits after the match (0-900)",
        }
    ),
]
OfferList = Annotated[list[OfferId], Field(json_schema_extra={"maxItems": MAX_OFFERS_DOCUMENTED, "uniqueItems": True})]
TypeList = Annotated[list[ConversionType], Field(json_schema_extra={"minItems": 1, "uniqueItems": True})]
StatusList = Annotated[list[ConversionStatus], Field(json_schema_extra={"minItems": 1, "uniqueItems": True})]


def _without_null_branches(schema: dict[str, Any]) -> None:
    """Document optional fields without `null`: absent means unchanged, an explicit null is refused."""
    for name, field in schema.get("properties", {}).items():
        branches = field.get("anyOf")
        if isinstance(branches, list) and {"type": "null"} in branches:
            kept = [branch for branch in branches if branch != {"type": "null"}]
            extra = {key: value for key, value in field.items() if key not in ("anyOf", "default")}
            schema["properties"][name] = {**kept[0], **extra} if len(kept) == 1 else {"anyOf": kept, **extra}


class Schema(BaseModel):
    """The base of every body here: its validator and serializer are built on first use, not at import.

    Building them for every model at import was a large part of the API's cold start
    (docs/performance.md); a request builds only the request model it checks, and the
    OpenAPI document the rest.
    """

    model_config = ConfigDict(defer_build=True)


def _refuse_null(value: Any) -> Any:
    """Request fields may be left out, never given as null."""
    if value is None:
        raise ValueError("must not be null")
    return value


class PostbackCreate(Schema):
    """POST /postbacks. `affiliate_id` is required for admins and defaults to an affiliate's own."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=create_scope_rules(_without_null_branches))

    # Documented as required: admins must give it; for affiliates the API defaults it to their own
    # ID, and their own ID is the only value it accepts from them.
    affiliate_id: AffiliateId | None = Field(
        default=None, description="The affiliate it belongs to; an affiliate may give only its own ID"
    )
    scope: ScopeName = "global"
    included_offer_ids: OfferList = Field(default_factory=list)
    excluded_offer_ids: OfferList = Field(default_factory=list)
    conversion_types: TypeList
    conversion_statuses: StatusList
    url: TargetUrl
    enabled: StrictBool = True
    delay_seconds: DelaySeconds = 0

    _no_nulls = field_validator("*", mode="before")(_refuse_null)


class PostbackPatch(Schema):
    """PATCH /postbacks/{id}: any subset of the mutable fields. `affiliate_id` may only repeat its value.

    Also the type check of the fields a create request gives (see `service._well_typed`).
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=patch_scope_rules(_without_null_branches))

    affiliate_id: AffiliateId | None = Field(default=None, description="Accepted only with the postback's own value")
    scope: ScopeName | None = None
    included_offer_ids: OfferList | None = None
    excluded_offer_ids: OfferList | None = None
    conversion_types: TypeList | None = None
    conversion_statuses: StatusList | None = None
    url: TargetUrl | None = None
    enabled: StrictBool | None = None
    delay_seconds: DelaySeconds | None = None

    _no_nulls = field_validator("*", mode="before")(_refuse_null)


class PostbackOut(Schema):
    """The postback resource: the definition, its bookkeeping and its delivery health."""

    id: str
    affiliate_id: str
    scope: ScopeName
    included_offer_ids: list[str]
    excluded_offer_ids: list[str]
    conversion_types: list[str]
    conversion_statuses: list[ConversionStatus]
    url: str
    enabled: bool
    delay_seconds: int = Field(description="Seconds the first attempt waits after the match (0-900)")
    created_at: str = Field(description="ISO 8601 UTC")
    updated_at: str = Field(description="ISO 8601 UTC")
    version: int = Field(description="Increments on every change; the ETag of the resource")
    created_by: str | None = Field(description="The `sub` of the caller that created it (read-only)")
    updated_by: str | None = Field(description="The `sub` of the caller that last changed it (read-only)")
    last_success_at: str | None = Field(description="When a delivery last succeeded")
    consecutive_failures: int = Field(description="Dead-lettered deliveries since the last success")
    last_failure_reason: str | None
    host_paused_until: str | None = Field(
        default=None,
        description="Until when the postback's host is paused after repeated failures (ISO 8601 UTC); null if not",
    )


class SigningSecretOut(Schema):
    """GET and POST /postbacks/{id}/signing-secret: the postback's signing secret (docs/receiving.md)."""

    secret: str = Field(
        description="HMAC-SHA256 key of the postback's `{signature}`: `pbsec_` and 32 random bytes, base64url",
        json_schema_extra={"pattern": SECRET_PATTERN.pattern},
    )


class PostbackList(Schema):
    items: list[PostbackOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class Parameter(Schema):
    name: str
    label: str
    description: str
    restricted: bool = Field(description="Usable by admins always, by affiliates only where configured")


class ParameterCatalogue(Schema):
    parameters: list[Parameter]
    conversion_statuses: list[ConversionStatus]


class Health(Schema):
    status: str


class FieldProblem(Schema):
    field: str = Field(description="The JSON field, e.g. `url` or `conversion_statuses[1]`")
    message: str


class Problem(Schema):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | SkipJsonSchema[None] = Field(
        default=None, description="Validation errors (400 only): every bad field", json_schema_extra=drop_default
    )


# The delivery log and test fire (`functions.api.delivery_routes`) use these.

DeliveryStateName = Annotated[
    str,
    # `failed` appears only on test fires that did not succeed (they are never retried).
    WithJsonSchema({"type": "string", "enum": [state.value for state in DeliveryState]}),
]


class DeliveryAttemptOut(Schema):
    number: int
    at: str
    outcome: str = Field(description="delivered, retryable, terminal, blocked or cancelled")
    status_code: int | None
    duration_ms: int | None
    error: str | None
    response_excerpt: str | None


class DeliveryOut(Schema):
    id: str
    conversion_id: str
    status: ConversionStatus = Field(description="The conversion status that fired it")
    url: str = Field(description="The URL as rendered and sent")
    state: DeliveryStateName
    reason: str | None = Field(description="Why it was dead-lettered or cancelled")
    attempts: list[DeliveryAttemptOut]
    next_attempt_at: str | None
    created_at: str
    test: bool = Field(default=False, description="Fired by POST /postbacks/{id}/test")
    host_paused_until: str | None = Field(
        default=None, description="The last host pause this delivery waited for (no GET, no attempt spent)"
    )
    host_pause_waits: int = Field(default=0, description="How many times it waited for its host's pause")


class DeliveryList(Schema):
    items: list[DeliveryOut]
    next_cursor: str | None


Amount = StrictInt | StrictFloat
MAX_TEST_ATTRIBUTE_LENGTH = 1024
Attribute = Annotated[StrictStr, WithJsonSchema({"type": "string", "maxLength": MAX_TEST_ATTRIBUTE_LENGTH})]
RequiredAttribute = Annotated[
    StrictStr,
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_TEST_ATTRIBUTE_LENGTH, "pattern": NOT_BLANK}),
]
TestConversionType = Annotated[
    StrictStr, WithJsonSchema({"type": "string", "pattern": CONVERSION_TYPE_PATTERN.pattern})
]
TestStatus = Annotated[StrictStr, WithJsonSchema({"type": "string", "pattern": test_status_pattern()})]
Timestamp = Annotated[
    StrictStr,
    WithJsonSchema({"type": "string", "format": "date-time", "maxLength": MAX_TEST_ATTRIBUTE_LENGTH}),
]


class TestConversion(Schema):
    """POST /postbacks/{id}/test: attributes of the conversion record (docs/contract.md §3) instead of the sample's."""

    model_config = ConfigDict(extra="forbid")

    # Null removes an optional attribute from the sample; the four a conversion needs cannot be removed.
    conversion_id: RequiredAttribute | SkipJsonSchema[None] = Field(default=None, json_schema_extra=drop_default)
    offer_id: RequiredAttribute | SkipJsonSchema[None] = Field(default=None, json_schema_extra=drop_default)
    conversion_type: TestConversionType | SkipJsonSchema[None] = Field(default=None, json_schema_extra=drop_default)
    status: TestStatus | SkipJsonSchema[None] = Field(default=None, json_schema_extra=drop_default)
    cid: Attribute | None = None
    external_cid: Attribute | None = None
    external_id: Attribute | None = None
    aff_s1: Attribute | None = None
    aff_s2: Attribute | None = None
    aff_s3: Attribute | None = None
    aff_s4: Attribute | None = None
    aff_s5: Attribute | None = None
    adv_s1: Attribute | None = None
    adv_s2: Attribute | None = None
    adv_s3: Attribute | None = None
    adv_s4: Attribute | None = None
    adv_s5: Attribute | None = None
    payout: Amount | None = None
    revenue: Amount | None = None
    sale_amount: Amount | None = None
    currency: Attribute | None = None
    customer_id: Attribute | None = None
    coupon_codes: list[Attribute] | None = None
    created_at: Timestamp | None = None
    status_changed_at: Timestamp | None = None
    click_time: Timestamp | None = None


class TestOutcome(Schema):
    status_code: int | None
    duration_ms: int | None
    error: str | None = Field(description="Why no 2xx answer was obtained (timeout, blocked_destination, ...)")
    classification: str = Field(description="delivered, retryable, terminal or blocked, as for a real delivery")
    delivered: bool = Field(description="True on a 2xx answer")


class TestFireResult(Schema):
    """POST /postbacks/{id}/test: the rendered URL and what the tracker answered."""

    delivery_id: str
    url: str = Field(description="The rendered URL")
    outcome: TestOutcome
