"""Rendering a postback URL template with the values of one conversion change (docs/contract.md §4).

Every value is percent-encoded as a whole (only RFC 3986 unreserved characters stay literal), so a
value can never add a query parameter, a path segment, a fragment or change the authority. After
rendering, the URL's scheme and authority are compared with the template's and a path segment a
value turned into `.` or `..` is refused: `render_change_url` raises `RenderError` rather than produce a
URL that points somewhere the saved template did not.

Templates are parsed and compiled once per distinct string (`lru_cache`): the evaluator renders many
URLs from few templates. The compiled form (`_Template.steps`) says how each placeholder takes its
value; rendering then reads only the values the template uses, tests once whether any of them needs
percent-encoding (most are IDs, statuses and amounts, which do not) and parses the result again
only when a placeholder is in the scheme, authority or path. `render_change` is the evaluator's
path (values read straight from the change); `render_change_url` takes them from `ChangeValues`.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import NamedTuple
from urllib.parse import quote, unquote, urlsplit

from functions.core.model import ConversionChange
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
    normal = value.normalize()
    # `str` is plain digits (as `format(normal, "f")`, at a third of the cost) unless it needs an
    # exponent: a power of ten such as 1E+2, or a fraction below 1E-6.
    text = str(normal)
    if "E" in text or "e" in text:
        text = format(normal, "f")
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


def _text(value: object) -> str:
    if type(value) is str:
        return value
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
    if type(value) is Decimal:
        return format_amount(value)
    if isinstance(value, str):
        try:
            return format_amount(Decimal(value.strip()))
        except InvalidOperation:
            return ""
    return _text(value)


def _attribute_getter(attribute: str) -> Callable[[ConversionChange], object]:
    """The raw value of `attribute` of the change's conversion (a field, or from `attributes`)."""
    if attribute in _CONVERSION_FIELDS:
        field = operator.attrgetter(attribute)
        return lambda change: field(change.conversion)
    return lambda change: change.conversion.attributes.get(attribute)


def _value_getter(placeholder: Placeholder) -> Callable[[ConversionChange], str]:
    raw = _attribute_getter(placeholder.attribute or "")
    source = placeholder.source
    if source is Source.ATTRIBUTE or source is Source.FIRST_OF_LIST:
        return lambda change: _text(raw(change))
    if source is Source.AMOUNT:
        return lambda change: _amount(raw(change))
    if source is Source.STATUS:
        return lambda change: change.conversion.status.lower()
    if source is Source.PREVIOUS_STATUS:
        return lambda change: (change.previous_status or "").lower()
    if source is Source.UNIX_SECONDS:
        return lambda change: unix_seconds(_text(raw(change)))
    raise ValueError(f"placeholder {placeholder.name} has no conversion value")


_ATTEMPT_SOURCES = (Source.ATTEMPT_TIMESTAMP, Source.SIGNATURE)
# The value of every placeholder that depends on the change alone; the postback's and the
# delivery's IDs are given per postback when rendering.
_GETTERS_BY_NAME: dict[str, Callable[[ConversionChange], str]] = {
    placeholder.name: _value_getter(placeholder)
    for placeholder in CATALOGUE
    if placeholder.source not in (Source.POSTBACK_ID, Source.DELIVERY_ID, *_ATTEMPT_SOURCES)
}
# The placeholders whose value is an entry of `Conversion.attributes` as text (the most common
# kind), with the entry's name: `ChangeValues` reads them inline, as their getters do.
_TEXT_ATTRIBUTES: dict[str, str] = {
    placeholder.name: placeholder.attribute
    for placeholder in CATALOGUE
    if placeholder.source in (Source.ATTRIBUTE, Source.FIRST_OF_LIST)
    and placeholder.attribute is not None
    and placeholder.attribute not in _CONVERSION_FIELDS
}
_POSTBACK_ID_NAMES = frozenset(p.name for p in CATALOGUE if p.source is Source.POSTBACK_ID)
_DELIVERY_ID_NAMES = frozenset(p.name for p in CATALOGUE if p.source is Source.DELIVERY_ID)
# `{timestamp}` and `{signature}` stay in the rendered URL as written: the sender fills them at
# each attempt (functions.core.signing.attempt_url), so every retry is signed afresh.
_ATTEMPT_NAMES = frozenset(p.name for p in CATALOGUE if p.source in _ATTEMPT_SOURCES)


class ChangeValues(dict[str, str]):
    """The values of a change's placeholders (all but the IDs), each computed on first use.

    Computing each value only when a template asks for it, once per change, saves computing the
    whole catalogue. Read it with `[name]`: a name outside the catalogue (or an ID placeholder)
    reads as "" (a missing value renders empty).
    """

    __slots__ = ("_change",)

    def __init__(self, change: ConversionChange) -> None:
        # Empty as made (`dict.__init__` would add nothing): one per change, so kept short.
        self._change = change

    def __missing__(self, name: str) -> str:
        attribute = _TEXT_ATTRIBUTES.get(name)
        if attribute is not None:
            value = self._change.conversion.attributes.get(attribute)
            text = value if type(value) is str else _text(value)
        else:
            getter = _GETTERS_BY_NAME.get(name)
            text = getter(self._change) if getter is not None else ""
        self[name] = text
        return text


# How a placeholder of a compiled template gets its value: from the change (an entry of
# `Conversion.attributes` as text, or as an amount, the new status, or its getter — "" for a name
# outside the catalogue), or the IDs. `render_change` computes the first three inline.
_TEXT = 0
_AMOUNT = 1
_STATUS = 2
_VALUE = 3
_POSTBACK_ID = 4
_DELIVERY_ID = 5
# The amount placeholders read from `Conversion.attributes`, with the entry's name.
_AMOUNT_ATTRIBUTES: dict[str, str] = {
    placeholder.name: placeholder.attribute
    for placeholder in CATALOGUE
    if placeholder.source is Source.AMOUNT
    and placeholder.attribute is not None
    and placeholder.attribute not in _CONVERSION_FIELDS
}
_STATUS_NAMES = frozenset(p.name for p in CATALOGUE if p.source is Source.STATUS)


def _no_value(change: ConversionChange) -> str:
    return ""


class _Step(NamedTuple):
    """One placeholder of a compiled template that takes a value, and the literal text after it."""

    kind: int
    name: str
    attribute: str  # _TEXT, _AMOUNT: the entry of `Conversion.attributes` it shows
    getter: Callable[[ConversionChange], str]  # computes it (_TEXT, _AMOUNT and _STATUS: as inline)
    literal: str


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
    # The template compiled for rendering: the text before the first placeholder that takes a value,
    # then a step for each. `{timestamp}` and `{signature}` are part of the literal text, as written.
    head: str = ""
    steps: tuple[_Step, ...] = ()
    # The same as a `%` format: the literal text (each `%` doubled) with a `%s` for each step's value.
    format: str = ""


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
    head, steps = _compile(literals, names)
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
        head=head,
        steps=steps,
        format=head.replace("%", "%%") + "".join("%s" + step.literal.replace("%", "%%") for step in steps),
    )


def _compile(literals: list[str], names: list[str]) -> tuple[str, tuple[_Step, ...]]:
    """The head and steps of `_Template`: how each placeholder takes its value decided once, attempt
    placeholders folded into the literal text around them."""
    texts = [literals[0]]  # the literal text before the first step, then after each step
    kinds: list[tuple[int, str]] = []
    for name, literal in zip(names, literals[1:], strict=True):
        if name in _ATTEMPT_NAMES:
            texts[-1] += "{" + name + "}" + literal
            continue
        if name in _DELIVERY_ID_NAMES:
            kinds.append((_DELIVERY_ID, name))
        elif name in _POSTBACK_ID_NAMES:
            kinds.append((_POSTBACK_ID, name))
        elif name in _TEXT_ATTRIBUTES:
            kinds.append((_TEXT, name))
        elif name in _AMOUNT_ATTRIBUTES:
            kinds.append((_AMOUNT, name))
        else:
            kinds.append((_STATUS if name in _STATUS_NAMES else _VALUE, name))
        texts.append(literal)
    steps = tuple(
        _Step(
            kind,
            name,
            _TEXT_ATTRIBUTES.get(name) or _AMOUNT_ATTRIBUTES.get(name, ""),
            _GETTERS_BY_NAME.get(name, _no_value),
            literal,
        )
        for (kind, name), literal in zip(kinds, texts[1:], strict=True)
    )
    return texts[0], steps


# RFC 3986 unreserved characters: the only ones a value keeps literal (as `quote(value, safe="")`).
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"


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
    texts = [
        values[name] if kind < _POSTBACK_ID else delivery_id if kind == _DELIVERY_ID else postback_id
        for kind, name, _, _, _ in parsed.steps
    ]
    return _finish(parsed, texts)


def render_change(
    template: str, change: ConversionChange, postback_id: str, delivery_id: str
) -> tuple[str, str | None]:
    """`render_change_url(template, ChangeValues(change), postback_id, delivery_id)` and the host of the
    rendered URL (`template_host`), for one postback: each value is read from the change as the
    template needs it, without keeping it (the evaluator's path: a change fires one postback, most often)."""
    parsed = _parse_template(template)
    if not parsed.names:
        return template, parsed.hostname
    conversion = change.conversion
    attributes = conversion.attributes
    values: list[str] = []
    append = values.append
    for kind, _, attribute, getter, _ in parsed.steps:
        if kind == _TEXT:
            value = attributes.get(attribute)
            append(value if type(value) is str else _text(value))
        elif kind == _AMOUNT:
            value = attributes.get(attribute)
            append(format_amount(value) if type(value) is Decimal else _amount(value))
        elif kind == _STATUS:
            append(conversion.status.lower())
        elif kind == _VALUE:
            append(getter(change))
        else:
            append(delivery_id if kind == _DELIVERY_ID else postback_id)
    return _finish(parsed, values), parsed.hostname


def _finish(parsed: _Template, values: list[str]) -> str:
    """The rendered URL from the template's format and the values of its steps, encoded."""
    # Most values (IDs, statuses, amounts) need no encoding: one test over all of them together
    # (every character unreserved), and each is encoded only if some need it.
    joined = "".join(values)
    if not joined.isascii() or joined.encode("ascii").translate(None, _UNRESERVED):
        values = [_encode(value) for value in values]
    rendered = parsed.format % tuple(values)
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
