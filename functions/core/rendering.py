"""Rendering a postback URL template with the values of one conversion change (docs/contract.md §4).

Every value is percent-encoded as a whole (only RFC 3986 unreserved characters stay literal), so a
value can never add a query parameter, a path segment, a fragment or change the authority. After
rendering, the URL's scheme and authority are compared with the template's and a path segment a
value turned into `.` or `..` is refused: `render_change_url` raises `RenderError` rather than produce a
URL that points somewhere the saved template did not.

Templates are parsed once per distinct string (`lru_cache`): the evaluator renders many URLs
from few templates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from urllib.parse import quote, unquote, urlsplit

from functions.core.model import Conversion, ConversionChange
from functions.core.placeholders import CATALOGUE, PLACEHOLDER_PATTERN, Placeholder, Source


class RenderError(Exception):
    """The rendered URL would not point where the template does."""


class Component(Enum):
    AUTHORITY = "authority"
    PATH = "path"
    QUERY = "query"
    FRAGMENT = "fragment"


# Fields of `Conversion` itself; every other attribute lives in `Conversion.attributes`.
_CONVERSION_FIELDS = frozenset({"conversion_id", "affiliate_id", "offer_id", "conversion_type", "status"})
_DOT_SEGMENTS = frozenset({".", ".."})


def format_amount(value: Decimal) -> str:
    """A plain decimal with a dot: no exponent, no needless trailing zeros (`12.5`, `100`, `0.01`)."""
    if not value.is_finite():
        return ""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def unix_seconds(timestamp: str) -> str:
    """An ISO 8601 timestamp as integer Unix seconds (naive means UTC); "" if it cannot be parsed."""
    try:
        moment = datetime.fromisoformat(timestamp.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str(int(moment.timestamp() // 1))


def _attribute(conversion: Conversion, name: str) -> object:
    if name in _CONVERSION_FIELDS:
        return getattr(conversion, name)
    return conversion.attributes.get(name)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return format_amount(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format_amount(Decimal(str(value)))
    if isinstance(value, list | tuple):
        return _text(value[0]) if value else ""
    return ""


def _amount(value: object) -> str:
    if isinstance(value, str):
        try:
            return format_amount(Decimal(value.strip()))
        except InvalidOperation:
            return ""
    return _text(value)


def _value_getter(placeholder: Placeholder) -> Callable[[ConversionChange], str]:
    attribute = placeholder.attribute or ""
    source = placeholder.source
    if source is Source.ATTRIBUTE or source is Source.FIRST_OF_LIST:
        return lambda change: _text(_attribute(change.conversion, attribute))
    if source is Source.AMOUNT:
        return lambda change: _amount(_attribute(change.conversion, attribute))
    if source is Source.STATUS:
        return lambda change: change.conversion.status.lower()
    if source is Source.PREVIOUS_STATUS:
        return lambda change: (change.previous_status or "").lower()
    if source is Source.UNIX_SECONDS:
        return lambda change: unix_seconds(_text(_attribute(change.conversion, attribute)))
    raise ValueError(f"placeholder {placeholder.name} has no conversion value")


_ATTEMPT_SOURCES = (Source.ATTEMPT_TIMESTAMP, Source.SIGNATURE)
# The value of every placeholder that depends on the change alone; the postback's and the
# delivery's IDs are given per postback when rendering.
_GETTERS_BY_NAME: dict[str, Callable[[ConversionChange], str]] = {
    placeholder.name: _value_getter(placeholder)
    for placeholder in CATALOGUE
    if placeholder.source not in (Source.POSTBACK_ID, Source.DELIVERY_ID, *_ATTEMPT_SOURCES)
}
_POSTBACK_ID_NAMES = frozenset(p.name for p in CATALOGUE if p.source is Source.POSTBACK_ID)
_DELIVERY_ID_NAMES = frozenset(p.name for p in CATALOGUE if p.source is Source.DELIVERY_ID)
# `{timestamp}` and `{signature}` stay in the rendered URL as written: the sender fills them at
# each attempt (functions.core.signing.attempt_url), so every retry is signed afresh.
_ATTEMPT_NAMES = frozenset(p.name for p in CATALOGUE if p.source in _ATTEMPT_SOURCES)


class ChangeValues(dict[str, str]):
    """The values of a change's placeholders (all but the IDs), each computed on first use.

    The evaluator renders a few placeholders of a few postbacks per change: computing each value
    only when a template asks for it, once per change, saves computing the whole catalogue. Read
    it with `[name]`: a name outside the catalogue (or an ID placeholder) reads as "" (a missing
    value renders empty).
    """

    __slots__ = ("_change",)

    def __init__(self, change: ConversionChange) -> None:
        super().__init__()
        self._change = change

    def __missing__(self, name: str) -> str:
        getter = _GETTERS_BY_NAME.get(name)
        value = getter(self._change) if getter is not None else ""
        self[name] = value
        return value


@dataclass(frozen=True)
class _Template:
    """A URL template split once around its placeholders (cached per template)."""

    literals: tuple[str, ...]  # len(names) + 1 pieces of literal text around the placeholders
    names: tuple[str, ...]
    components: tuple[Component, ...]
    # What rendering must preserve, taken from the template rendered with every value empty.
    scheme: str
    netloc: str
    empty_path_segments: tuple[str, ...]
    has_path_placeholder: bool
    hostname: str | None
    # Every placeholder is in the query or the fragment: the scheme, authority and path are literal
    # text, the values are percent-encoded (no delimiter survives), so the rendered URL points
    # where the template does and needs no second parse.
    target_fixed: bool = False


def _component_at(template: str, index: int, authority_start: int) -> Component:
    if authority_start == -1:
        return Component.PATH
    fragment = template.find("#", authority_start)
    if fragment != -1 and index > fragment:
        return Component.FRAGMENT
    query = template.find("?", authority_start)
    if query != -1 and index > query and (fragment == -1 or query < fragment):
        return Component.QUERY
    path_start = len(template)
    for delimiter in "/?#":
        position = template.find(delimiter, authority_start)
        if position != -1:
            path_start = min(path_start, position)
    return Component.AUTHORITY if index < path_start else Component.PATH


def _dot_segment(segment: str) -> bool:
    return unquote(segment) in _DOT_SEGMENTS


@functools.lru_cache(maxsize=16384)
def _parse_template(template: str) -> _Template:
    literals: list[str] = []
    names: list[str] = []
    components: list[Component] = []
    scheme_end = template.find("://")
    authority_start = -1 if scheme_end == -1 else scheme_end + 3
    position = 0
    for match in PLACEHOLDER_PATTERN.finditer(template):
        literals.append(template[position : match.start()])
        names.append(match.group(1))
        components.append(_component_at(template, match.start(), authority_start))
        position = match.end()
    literals.append(template[position:])
    empty = "".join(literals)
    try:
        parts = urlsplit(empty)
    except ValueError as exc:
        raise RenderError("the URL template cannot be parsed") from exc
    return _Template(
        literals=tuple(literals),
        names=tuple(names),
        components=tuple(components),
        scheme=parts.scheme,
        netloc=parts.netloc,
        empty_path_segments=tuple(parts.path.split("/")),
        has_path_placeholder=Component.PATH in components,
        hostname=parts.hostname,
        target_fixed=all(component in (Component.QUERY, Component.FRAGMENT) for component in components),
    )


def _encode(value: str) -> str:
    # Everything but unreserved characters; text that is not valid Unicode cannot reach here from
    # DynamoDB, and is replaced rather than allowed to fail the whole batch.
    return quote(value, safe="", errors="replace")


def render_change_url(template: str, values: ChangeValues, postback_id: str, delivery_id: str) -> str:
    """The template with each `{name}` replaced by its percent-encoded value for this change, postback
    and delivery; `RenderError` if the result would not point where the template does.

    `values` is the change's `ChangeValues`, shared by every postback the change fires: only the
    values the template uses are computed. Unknown names render as "".
    """
    parsed = _parse_template(template)
    if not parsed.names:
        return template
    pieces = [parsed.literals[0]]
    for name, literal in zip(parsed.names, parsed.literals[1:], strict=True):
        if name in _DELIVERY_ID_NAMES:
            value = delivery_id
        elif name in _POSTBACK_ID_NAMES:
            value = postback_id
        elif name in _ATTEMPT_NAMES:
            pieces.extend(("{", name, "}", literal))
            continue
        else:
            value = values[name]
        if value:
            pieces.append(_encode(value))
        pieces.append(literal)
    rendered = "".join(pieces)
    if not parsed.target_fixed:
        _check_target(parsed, rendered)
    return rendered


def template_host(template: str) -> str | None:
    """The host of the template's URL, which is the host of every URL rendered from it."""
    return _parse_template(template).hostname


def _check_target(parsed: _Template, rendered: str) -> None:
    try:
        parts = urlsplit(rendered)
    except ValueError as exc:
        raise RenderError("the rendered URL cannot be parsed") from exc
    if parts.scheme != parsed.scheme or parts.netloc != parsed.netloc:
        raise RenderError("a placeholder value would change the URL's scheme, host or port")
    if parsed.has_path_placeholder:
        segments = parts.path.split("/")
        if len(segments) != len(parsed.empty_path_segments):
            raise RenderError("a placeholder value would change the URL's path structure")
        for segment, empty_segment in zip(segments, parsed.empty_path_segments, strict=True):
            if segment != empty_segment and _dot_segment(segment) and not _dot_segment(empty_segment):
                raise RenderError("a placeholder value would add a '.' or '..' segment to the path")
