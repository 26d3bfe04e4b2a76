"""The rules a postback definition must satisfy (docs/contract.md §5, Validation), as pure functions.

`validate_postback` checks the values of a definition and returns every problem it finds, each
naming the JSON field it concerns (`conversion_statuses[1]`, `url`, `included_offer_ids`), so a
caller can report all of them at once. Fields given as `None` are unknown (a create request that
left out a required field, or a field of the wrong JSON type already reported by the caller):
their own rules and the cross-field rules that involve them are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from functions.core.egress import EgressPolicy, url_problems
from functions.core.model import CONVERSION_STATUSES, CONVERSION_TYPE_PATTERN, Scope
from functions.core.placeholders import BY_NAME, placeholders_in
from functions.core.signing import signature_problems

MAX_OFFER_ID_LENGTH = 128
# `delay_seconds`: the first attempt waits this long after the match (SQS DelaySeconds allows 900).
MAX_DELAY_SECONDS = 900
SCOPES: tuple[str, ...] = tuple(scope.value for scope in Scope)


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request and what is wrong with it (`field` as JSON names it)."""

    field: str
    message: str


class ValidationFailed(Exception):
    """A request or definition broke one or more rules; `errors` names every bad field."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{error.field}: {error.message}" for error in errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class PostbackFields:
    """The mutable definition of a postback; `None` means unknown (see the module docstring)."""

    scope: str | None = None
    included_offer_ids: Sequence[str] | None = None
    excluded_offer_ids: Sequence[str] | None = None
    conversion_types: Sequence[str] | None = None
    conversion_statuses: Sequence[str] | None = None
    url: str | None = None
    delay_seconds: int | None = None


@dataclass(frozen=True)
class ValidationRules:
    """What the rules depend on besides the definition: configuration and the caller's rights."""

    egress: EgressPolicy
    allowed_placeholders: frozenset[str]
    max_offers: int = 500
    max_url_length: int = 2048


def _duplicates(field: str, values: Sequence[str]) -> list[FieldError]:
    seen: set[str] = set()
    errors: list[FieldError] = []
    for index, value in enumerate(values):
        if value in seen:
            errors.append(FieldError(f"{field}[{index}]", f"duplicate value {value!r}"))
        seen.add(value)
    return errors


def _offer_ids(field: str, values: Sequence[str], max_offers: int) -> list[FieldError]:
    errors: list[FieldError] = []
    if len(values) > max_offers:
        errors.append(FieldError(field, f"at most {max_offers} offers are allowed, got {len(values)}"))
    for index, value in enumerate(values):
        if not value.strip():
            errors.append(FieldError(f"{field}[{index}]", "must be a non-empty offer ID"))
        elif len(value) > MAX_OFFER_ID_LENGTH:
            errors.append(FieldError(f"{field}[{index}]", f"must be at most {MAX_OFFER_ID_LENGTH} characters"))
    errors.extend(_duplicates(field, values))
    return errors


def _scope_consistency(
    scope: str | None, included: Sequence[str] | None, excluded: Sequence[str] | None
) -> list[FieldError]:
    errors: list[FieldError] = []
    if scope == Scope.OFFER:
        if included is not None and not included:
            errors.append(FieldError("included_offer_ids", "an offer-scoped postback needs at least one offer"))
        if excluded:
            errors.append(FieldError("excluded_offer_ids", "must be empty when scope is 'offer'"))
    elif scope == Scope.GLOBAL and included:
        errors.append(FieldError("included_offer_ids", "must be empty when scope is 'global'"))
    return errors


def _conversion_types(values: Sequence[str]) -> list[FieldError]:
    if not values:
        return [FieldError("conversion_types", "at least one conversion type is required")]
    errors = [
        FieldError(f"conversion_types[{index}]", "must be 1-64 characters of a-z, 0-9, '_' or '-'")
        for index, value in enumerate(values)
        if not CONVERSION_TYPE_PATTERN.fullmatch(value)
    ]
    return errors + _duplicates("conversion_types", values)


def _conversion_statuses(values: Sequence[str]) -> list[FieldError]:
    if not values:
        return [FieldError("conversion_statuses", "at least one conversion status is required")]
    errors = [
        FieldError(
            f"conversion_statuses[{index}]", f"unknown status {value!r}; use one of {', '.join(CONVERSION_STATUSES)}"
        )
        for index, value in enumerate(values)
        if value not in CONVERSION_STATUSES
    ]
    return errors + _duplicates("conversion_statuses", values)


def placeholder_problems(url: str, allowed: frozenset[str]) -> list[str]:
    """Unknown placeholders, and known ones the caller may not use, each reported once."""
    problems: list[str] = []
    for name in dict.fromkeys(placeholders_in(url)):
        if name not in BY_NAME:
            problems.append(f"unknown placeholder {{{name}}}")
        elif name not in allowed:
            problems.append(f"placeholder {{{name}}} is restricted and not available to this caller")
    return problems


def url_field_problems(url: str, rules: ValidationRules) -> list[FieldError]:
    messages = url_problems(url, rules.egress, max_length=rules.max_url_length)
    messages.extend(placeholder_problems(url, rules.allowed_placeholders))
    messages.extend(signature_problems(url))
    return [FieldError("url", message) for message in messages]


def validate_postback(fields: PostbackFields, rules: ValidationRules) -> list[FieldError]:
    """Every problem of the definition; an empty list means it may be stored."""
    errors: list[FieldError] = []
    if fields.scope is not None and fields.scope not in SCOPES:
        errors.append(FieldError("scope", f"must be one of {', '.join(SCOPES)}"))
    if fields.included_offer_ids is not None:
        errors.extend(_offer_ids("included_offer_ids", fields.included_offer_ids, rules.max_offers))
    if fields.excluded_offer_ids is not None:
        errors.extend(_offer_ids("excluded_offer_ids", fields.excluded_offer_ids, rules.max_offers))
    errors.extend(_scope_consistency(fields.scope, fields.included_offer_ids, fields.excluded_offer_ids))
    if fields.conversion_types is not None:
        errors.extend(_conversion_types(fields.conversion_types))
    if fields.conversion_statuses is not None:
        errors.extend(_conversion_statuses(fields.conversion_statuses))
    if fields.url is not None:
        errors.extend(url_field_problems(fields.url, rules))
    if fields.delay_seconds is not None and not 0 <= fields.delay_seconds <= MAX_DELAY_SECONDS:
        errors.append(FieldError("delay_seconds", f"must be a whole number of seconds from 0 to {MAX_DELAY_SECONDS}"))
    return errors
