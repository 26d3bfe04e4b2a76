"""The postbacks API's application logic: who may do what, and what a valid postback is.

No HTTP here: the routes hand in the caller and the parsed request, this module returns domain
objects or raises the typed errors below (mapped to HTTP in `functions.api.errors`).

Authorization: an admin acts for any affiliate; an affiliate only for itself. Another affiliate's
postback is reported as not found (its existence is never revealed); creating or listing for
another affiliate is forbidden. Restricted placeholders stay the network's decision: an affiliate
not allowed the ones a postback's URL uses (an admin put them there) may only disable or delete
it (`restricted_in_use`). Every change is written to the audit log (`functions.audit`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from functions.api.pagination import decode_cursor, encode_cursor, parse_limit
from functions.audit import log_postback_action
from functions.core.classification import REASON_POSTBACK_DELETED, REASON_POSTBACK_DISABLED
from functions.core.egress import EgressPolicy
from functions.core.model import Postback, Scope, format_timestamp, new_postback_id, utc_now
from functions.core.placeholders import BY_NAME, RESTRICTED_NAMES, allowed_for, placeholders_in
from functions.core.validation import FieldError, PostbackFields, ValidationFailed, ValidationRules, validate_postback
from functions.settings import Settings
from functions.storage.postback_types import (
    BY_AFFILIATE_KEY,
    BY_CREATED_KEY,
    PostbackGone,
    PostbackPage,
    Predicate,
    QuotaExceeded,
    VersionConflict,
)

MAX_AFFILIATE_ID_LENGTH = 128
UPDATE_ATTEMPTS = 5
DEFINITION_FIELDS = (
    "scope",
    "included_offer_ids",
    "excluded_offer_ids",
    "conversion_types",
    "conversion_statuses",
    "url",
    "enabled",
    "delay_seconds",
)


class Role(StrEnum):
    ADMIN = "admin"
    AFFILIATE = "affiliate"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    subject: str
    role: Role
    affiliate_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_access(self, affiliate_id: str) -> bool:
        return self.is_admin or self.affiliate_id == affiliate_id


class PostbackNotFound(Exception):
    """No such postback, or one the caller may not see."""


class Forbidden(Exception):
    """The caller may not act for the affiliate it named."""


class LimitReached(Exception):
    """The affiliate has the maximum number of postbacks."""


class PreconditionFailed(Exception):
    """`If-Match` names a version other than the current one."""


class PostbackStore(Protocol):
    def get(self, postback_id: str) -> Postback | None: ...

    def create(self, postback: Postback, limit: int) -> Postback: ...

    def update(self, postback: Postback, expected_version: int) -> Postback: ...

    def delete(self, postback: Postback) -> None: ...

    def page_for_affiliate(
        self, affiliate_id: str, limit: int, start_key: dict[str, str] | None, predicate: Predicate | None = None
    ) -> PostbackPage: ...

    def page_all(
        self, limit: int, start_key: dict[str, str] | None, predicate: Predicate | None = None
    ) -> PostbackPage: ...

    def ensure_signing_secret(self, postback_id: str, now: str) -> str | None: ...

    def rotate_signing_secret(self, postback_id: str, now: str) -> str | None: ...


class WaitingDeliveries(Protocol):
    """The deliveries of a postback that still wait for a send (cancelled when it stops)."""

    def cancel_waiting_for_postback(self, postback_id: str, reason: str, now: datetime, since: datetime) -> int: ...


@dataclass(frozen=True)
class ListResult:
    """One page of postbacks and the cursor of the next (None: the last)."""

    items: list[Postback]
    next_cursor: str | None


def parse_if_match(header: str | None) -> list[int | None] | None:
    """The versions an `If-Match` header accepts (None: `*`); quoted or unquoted strong tags.

    `If-Match` uses the strong comparison (RFC 9110 §13.1.1): a weak tag (`W/"1"`) never matches.
    """
    if header is None or not header.strip():
        return None
    versions: list[int | None] = []
    for raw in header.split(","):
        tag = raw.strip()
        if tag == "*":
            versions.append(None)
            continue
        if tag[:2].upper() == "W/":
            continue
        tag = tag.strip('"')
        if tag.isdigit():
            versions.append(int(tag))
    return versions


def restricted_in_use(caller: Principal, url: str, affiliate_allowed: frozenset[str]) -> list[str]:
    """The restricted placeholders `url` uses that `caller` may not use (none for an admin)."""
    allowed = allowed_for(caller.is_admin, affiliate_allowed)
    return [name for name in dict.fromkeys(placeholders_in(url)) if name in RESTRICTED_NAMES and name not in allowed]


def only_disables(body: Mapping[str, Any]) -> bool:
    """True for a PATCH body that changes nothing or only sets `enabled` to false."""
    return set(body) <= {"enabled"} and body.get("enabled", False) is False


class PostbackService:
    def __init__(
        self,
        repository: PostbackStore,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = new_postback_id,
        waiting_deliveries: WaitingDeliveries | None = None,
        *,
        egress: EgressPolicy,
    ) -> None:
        """`egress`: the guard a postback URL must pass (`functions.bootstrap.egress_policy`)."""
        self._repository = repository
        self._settings = settings
        self._waiting_deliveries = waiting_deliveries
        self._clock = clock
        self._new_id = new_id
        self._egress = egress

    def _rules(self, caller: Principal, url_changed: bool = True) -> ValidationRules:
        # An unchanged URL keeps the placeholders it was saved with (e.g. restricted ones an
        # admin chose), so an affiliate can still edit the rest of such a postback.
        allowed = (
            allowed_for(caller.is_admin, self._settings.affiliate_restricted_placeholders)
            if url_changed
            else frozenset(BY_NAME)
        )
        return ValidationRules(
            egress=self._egress,
            allowed_placeholders=allowed,
            max_offers=self._settings.max_offers_per_postback,
            max_url_length=self._settings.max_url_length,
        )

    def _visible(self, caller: Principal, postback_id: str) -> Postback:
        postback = self._repository.get(postback_id)
        if postback is None or not caller.may_access(postback.affiliate_id):
            raise PostbackNotFound(postback_id)
        return postback

    def create(self, caller: Principal, body: Any) -> Postback:
        if not isinstance(body, dict):
            raise ValidationFailed([FieldError("body", "must be a JSON object")])
        # pydantic and the request models load with the first request that has a body (docs/performance.md).
        from functions.api.body_shapes import create_errors, well_typed

        errors = create_errors(body)
        affiliate_id = self._owner_for_create(caller, body.get("affiliate_id"), errors)
        fields = well_typed(body, errors)
        given = fields.model_fields_set
        bad = {error.field.split("[", 1)[0] for error in errors}

        def with_default(name: str, default: Any) -> Any:
            if name in given:
                return getattr(fields, name)
            return None if name in bad else default

        definition = PostbackFields(
            scope=with_default("scope", Scope.GLOBAL.value),
            included_offer_ids=with_default("included_offer_ids", []),
            excluded_offer_ids=with_default("excluded_offer_ids", []),
            conversion_types=fields.conversion_types,
            conversion_statuses=fields.conversion_statuses,
            url=fields.url,
            delay_seconds=with_default("delay_seconds", 0),
        )
        errors.extend(validate_postback(definition, self._rules(caller)))
        if errors or affiliate_id is None:
            raise ValidationFailed(errors)
        now = format_timestamp(self._clock())
        postback = Postback(
            id=self._new_id(),
            affiliate_id=affiliate_id,
            scope=Scope(definition.scope or Scope.GLOBAL.value),
            included_offer_ids=tuple(definition.included_offer_ids or ()),
            excluded_offer_ids=tuple(definition.excluded_offer_ids or ()),
            conversion_types=tuple(definition.conversion_types or ()),
            conversion_statuses=tuple(definition.conversion_statuses or ()),
            url=definition.url or "",
            enabled=fields.enabled if fields.enabled is not None else True,
            created_at=now,
            updated_at=now,
            version=1,
            created_by=caller.subject,
            updated_by=caller.subject,
            delay_seconds=definition.delay_seconds or 0,
        )
        try:
            created = self._repository.create(postback, self._settings.max_postbacks_per_affiliate)
        except QuotaExceeded as exc:
            raise LimitReached(
                f"affiliate {affiliate_id} already has the maximum of {exc.limit} postbacks; delete one first"
            ) from exc
        _audit("create", caller, created)
        return created

    def _owner_for_create(self, caller: Principal, requested: Any, errors: list[FieldError]) -> str | None:
        """The affiliate a new postback belongs to; adds to `errors` when it cannot be determined."""
        if isinstance(requested, str):
            if not requested.strip() or len(requested) > MAX_AFFILIATE_ID_LENGTH:
                errors.append(FieldError("affiliate_id", f"must be 1-{MAX_AFFILIATE_ID_LENGTH} characters"))
                return None
            if not caller.may_access(requested):
                raise Forbidden("an affiliate may create postbacks only for itself")
            return requested
        if requested is None and "affiliate_id" not in {error.field for error in errors}:
            if not caller.is_admin:
                return caller.affiliate_id
            errors.append(FieldError("affiliate_id", "is required when an admin creates a postback"))
        return None

    def get(self, caller: Principal, postback_id: str) -> Postback:
        return self._visible(caller, postback_id)

    def list(
        self,
        caller: Principal,
        *,
        affiliate_id: str | None,
        offer_id: str | None,
        limit: str | None,
        cursor: str | None,
    ) -> ListResult:
        if affiliate_id and not caller.may_access(affiliate_id):
            raise Forbidden("an affiliate may list only its own postbacks")
        owner = affiliate_id or (None if caller.is_admin else caller.affiliate_id)
        errors: list[FieldError] = []
        page_size = 0
        try:
            page_size = parse_limit(limit)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
        query: dict[str, str | None] = {
            "index": "by_created" if owner is None else "by_affiliate",
            "affiliate_id": owner,
            "offer_id": offer_id or None,
        }
        start_key = None
        try:
            if owner is None:
                start_key = decode_cursor(cursor, query, BY_CREATED_KEY, {"listing": "postbacks"})
            else:
                start_key = decode_cursor(cursor, query, BY_AFFILIATE_KEY, {"affiliate_id": owner})
        except ValidationFailed as exc:
            errors.extend(exc.errors)
        if errors:
            raise ValidationFailed(errors)
        predicate: Predicate | None = None
        if offer_id:
            from functions.core.matching import offer_in_scope  # the firing rules, for this filter only

            wanted = offer_id

            def predicate(postback: Postback) -> bool:
                return offer_in_scope(postback, wanted)

        if owner is None:
            page = self._repository.page_all(page_size, start_key, predicate)
        else:
            page = self._repository.page_for_affiliate(owner, page_size, start_key, predicate)
        next_cursor = encode_cursor(query, page.next_key) if page.next_key else None
        return ListResult(page.items, next_cursor)

    def update(self, caller: Principal, postback_id: str, body: Any, if_match: str | None) -> Postback:
        if not isinstance(body, dict):
            raise ValidationFailed([FieldError("body", "must be a JSON object")])
        accepted_versions = parse_if_match(if_match)
        for _ in range(UPDATE_ATTEMPTS):
            current = self._visible(caller, postback_id)
            locked = restricted_in_use(caller, current.url, self._settings.affiliate_restricted_placeholders)
            if locked and not only_disables(body):
                names = ", ".join(f"{{{name}}}" for name in locked)
                raise Forbidden(
                    f"this postback's URL uses restricted placeholders ({names}) the network chose; "
                    "an affiliate may only disable it (enabled: false) or delete it"
                )
            if accepted_versions is not None and not any(
                version is None or version == current.version for version in accepted_versions
            ):
                raise PreconditionFailed(f"the current version is {current.version}")
            merged = self._merge(caller, current, body)
            try:
                updated = self._repository.update(merged, expected_version=current.version)
            except PostbackGone as exc:
                raise PostbackNotFound(postback_id) from exc
            except VersionConflict as exc:
                # With If-Match the client asked to change exactly the version it named.
                if accepted_versions is not None:
                    raise PreconditionFailed("the postback was changed by another request") from exc
                continue
            _audit("update", caller, updated)
            if current.enabled and not updated.enabled:
                self._cancel_waiting(updated, REASON_POSTBACK_DISABLED)
            return updated
        raise PreconditionFailed("the postback is being changed concurrently; retry")

    def _merge(self, caller: Principal, current: Postback, body: Mapping[str, Any]) -> Postback:
        from functions.api.body_shapes import patch_errors, well_typed

        errors = patch_errors(body)
        requested_owner = body.get("affiliate_id")
        if isinstance(requested_owner, str) and requested_owner != current.affiliate_id:
            errors.append(FieldError("affiliate_id", "cannot be changed"))
        patch = well_typed(body, errors)
        given = patch.model_fields_set
        values: dict[str, Any] = {name: getattr(current, name) for name in DEFINITION_FIELDS}
        values.update({name: getattr(patch, name) for name in DEFINITION_FIELDS if name in given})
        definition = PostbackFields(
            scope=str(values["scope"]),
            included_offer_ids=list(values["included_offer_ids"]),
            excluded_offer_ids=list(values["excluded_offer_ids"]),
            conversion_types=list(values["conversion_types"]),
            conversion_statuses=list(values["conversion_statuses"]),
            url=str(values["url"]),
            delay_seconds=int(values["delay_seconds"]),
        )
        errors.extend(validate_postback(definition, self._rules(caller, url_changed=values["url"] != current.url)))
        if errors:
            raise ValidationFailed(errors)
        return replace(
            current,
            scope=Scope(str(values["scope"])),
            included_offer_ids=tuple(values["included_offer_ids"]),
            excluded_offer_ids=tuple(values["excluded_offer_ids"]),
            conversion_types=tuple(values["conversion_types"]),
            conversion_statuses=tuple(values["conversion_statuses"]),
            url=str(values["url"]),
            enabled=bool(values["enabled"]),
            delay_seconds=int(values["delay_seconds"]),
            updated_at=format_timestamp(self._clock()),
            updated_by=caller.subject,
        )

    def signing_secret(self, caller: Principal, postback_id: str) -> str:
        """The postback's signing secret (created now if it predates signing); audited, never logged."""
        postback = self._visible(caller, postback_id)
        secret = self._repository.ensure_signing_secret(postback.id, format_timestamp(self._clock()))
        if secret is None:
            raise PostbackNotFound(postback_id)
        _audit("read_signing_secret", caller, postback)
        return secret

    def rotate_signing_secret(self, caller: Principal, postback_id: str) -> str:
        """A new signing secret for the postback: GETs sent from now on are signed with it."""
        postback = self._visible(caller, postback_id)
        secret = self._repository.rotate_signing_secret(postback.id, format_timestamp(self._clock()))
        if secret is None:
            raise PostbackNotFound(postback_id)
        _audit("rotate_signing_secret", caller, postback)
        return secret

    def delete(self, caller: Principal, postback_id: str) -> None:
        postback = self._visible(caller, postback_id)
        try:
            self._repository.delete(postback)
        except PostbackGone as exc:
            raise PostbackNotFound(postback_id) from exc
        _audit("delete", caller, postback)
        self._cancel_waiting(postback, REASON_POSTBACK_DELETED)

    def _cancel_waiting(self, postback: Postback, reason: str) -> None:
        """docs/contract.md §2: a delete or disable cancels the postback's pending deliveries at once.

        The sender checks the postback again before every GET, so this only makes the
        cancellation visible immediately; deliveries older than the retry window plus a day are
        not read (none of them can still be waiting).
        """
        if self._waiting_deliveries is None:
            return
        now = self._clock()
        since = now - timedelta(seconds=self._settings.retry_deadline_seconds) - timedelta(days=1)
        self._waiting_deliveries.cancel_waiting_for_postback(postback.id, reason, now, since)


def _audit(action: str, caller: Principal, postback: Postback) -> None:
    log_postback_action(
        action=action,
        subject=caller.subject,
        role=caller.role.value,
        postback_id=postback.id,
        affiliate_id=postback.affiliate_id,
    )
