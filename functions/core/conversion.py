"""Parsing of conversions-table stream records (docs/contract.md §3) into `ConversionChange`.

Input is one record of a Lambda DynamoDB-stream event: a dict with `eventName`, `dynamodb.NewImage` /
`OldImage` in DynamoDB's typed JSON (`{"S": ...}`, `{"N": ...}`, `{"L": [...]}`) and
`dynamodb.ApproximateCreationDateTime`. The result is either a change to evaluate, `None` for a
record that can fire nothing by its nature (REMOVE), or `MalformedRecordError` naming the reason.

Pure: no AWS, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from functions.core.model import CONVERSION_STATUSES, Conversion, ConversionChange

REQUIRED_ATTRIBUTES: tuple[str, ...] = ("conversion_id", "affiliate_id", "offer_id", "conversion_type", "status")
STRING_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "cid",
        "external_cid",
        "external_id",
        *(f"aff_s{i}" for i in range(1, 6)),
        *(f"adv_s{i}" for i in range(1, 6)),
        "currency",
        "customer_id",
        "created_at",
        "status_changed_at",
        "click_time",
    }
)
NUMBER_ATTRIBUTES: frozenset[str] = frozenset({"payout", "revenue", "sale_amount"})
STRING_LIST_ATTRIBUTES: frozenset[str] = frozenset({"coupon_codes"})
STATUS_PREFIX = "conversion_status_"

INSERT = "INSERT"
MODIFY = "MODIFY"
REMOVE = "REMOVE"

AttributeValue = str | Decimal | list[str]


class MalformedRecordError(ValueError):
    """The stream record cannot be evaluated; `reason` says why (kept with the record in the DLQ)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise_status(raw: str) -> str:
    """`APPROVED`, `Approved` and `CONVERSION_STATUS_APPROVED` all mean `approved` (not validated)."""
    status = raw.strip().lower()
    if status.startswith(STATUS_PREFIX):
        status = status[len(STATUS_PREFIX) :]
    return status


def parse_status(raw: str) -> str:
    """The normalised status; `MalformedRecordError` unless it is one of the statuses of docs/contract.md §1."""
    status = _STATUSES.get(raw)
    if status is not None:
        return status
    status = normalise_status(raw)
    if status not in CONVERSION_STATUSES:
        raise MalformedRecordError(f"unknown status {raw!r}")
    if len(_STATUSES) < _MAX_STATUS_SPELLINGS:
        _STATUSES[raw] = status
    return status


# Each spelling of a valid status seen, normalised (a stream repeats a few spellings: `approved`,
# `APPROVED`, `CONVERSION_STATUS_APPROVED`); bounded, so odd spellings cannot grow it for ever.
_STATUSES: dict[str, str] = {}
_MAX_STATUS_SPELLINGS = 256


def _is_null(value: Any) -> bool:
    # Stream images are plain dicts of plain dicts: test the exact type first, the ABC only after.
    if type(value) is dict:
        return value.get("NULL") is True
    return isinstance(value, Mapping) and value.get("NULL") is True


def _string(name: str, value: Any) -> str:
    if type(value) is dict:
        text = value.get("S")
        if type(text) is str:
            return text
    if not isinstance(value, Mapping) or not isinstance(value.get("S"), str):
        raise MalformedRecordError(f"attribute {name} must be a string (S)")
    return str(value["S"])


def _number(name: str, value: Any) -> Decimal:
    raw = value.get("N") if type(value) is dict or isinstance(value, Mapping) else None
    if type(raw) is str:
        try:
            number = Decimal(raw)
        except InvalidOperation as exc:
            raise MalformedRecordError(f"attribute {name} is not a valid number: {raw!r}") from exc
        if not number.is_finite():
            raise MalformedRecordError(f"attribute {name} is not a finite number: {raw!r}")
        return number
    if not isinstance(raw, str | int | float | Decimal) or isinstance(raw, bool):
        raise MalformedRecordError(f"attribute {name} must be a number (N)")
    try:
        number = Decimal(str(raw))
    except InvalidOperation as exc:
        raise MalformedRecordError(f"attribute {name} is not a valid number: {raw!r}") from exc
    if not number.is_finite():
        raise MalformedRecordError(f"attribute {name} is not a finite number: {raw!r}")
    return number


def _string_list(name: str, value: Any) -> list[str]:
    items = value.get("L") if isinstance(value, Mapping) else None
    if not isinstance(items, list):
        raise MalformedRecordError(f"attribute {name} must be a list of strings (L of S)")
    return [_string(f"{name}[{index}]", item) for index, item in enumerate(items)]


# How each optional attribute is parsed; attributes not named here are ignored.
_OPTIONAL_PARSERS: dict[str, Callable[[str, Any], AttributeValue]] = {
    **{name: _string for name in STRING_ATTRIBUTES},
    **{name: _number for name in NUMBER_ATTRIBUTES},
    **{name: _string_list for name in STRING_LIST_ATTRIBUTES},
}
# The attributes read, by type (the required ones are strings).
_STRINGS = frozenset({*REQUIRED_ATTRIBUTES, *STRING_ATTRIBUTES})
_ABSENT = object()


def parse_image(image: Any) -> Conversion:
    """A conversion from a stream image; `MalformedRecordError` on a missing or mistyped attribute.

    Stream images are plain dicts of plain dicts, every value in its type's one key: those are read
    in one pass (`_parse_plain_image`); anything else — a null, another mapping type, a value that
    is not valid — goes through the general checks (`_parse_image`), which give the same results
    and the errors.
    """
    if type(image) is dict:
        conversion = _parse_plain_image(image)
        if conversion is not None:
            return conversion
    return _parse_image(image)


def _parse_plain_image(image: dict[str, Any]) -> Conversion | None:
    """The conversion, if every attribute read is a plain dict holding exactly its type's key with a
    valid value (a string, a finite number, a list of strings), the required ones present and not
    blank, the status a spelling seen before; None otherwise, for `_parse_image` to decide.

    Written for speed (it reads every attribute of every record): membership and subscripts
    rather than method calls, a missing key caught once for the whole pass, and the attributes
    written over a copy of the image (sized for them at once) rather than inserted one by one.
    """
    attributes: dict[str, Any] = image.copy()  # every value replaced below, or removed
    strings = _STRINGS
    try:
        for name, raw in image.items():
            if name in strings:
                if type(raw) is not dict or len(raw) != 1:
                    return None
                value = raw["S"]
                if type(value) is not str:
                    return None
                attributes[name] = value
            elif name in NUMBER_ATTRIBUTES:
                if type(raw) is not dict or len(raw) != 1:
                    return None
                value = raw["N"]
                # Every spelling of a number that is not finite (Infinity, Inf, NaN, sNaN, any case)
                # has an "n", no finite one has: those go to the general checks, which refuse them.
                if type(value) is not str or "n" in value or "N" in value:
                    return None
                attributes[name] = Decimal(value)
            elif name in STRING_LIST_ATTRIBUTES:
                if type(raw) is not dict or len(raw) != 1 or type(raw["L"]) is not list:
                    return None
                attributes[name] = _string_list(name, raw)
            else:
                del attributes[name]  # not an attribute of docs/contract.md §3
        conversion_id = attributes["conversion_id"]
        affiliate_id = attributes["affiliate_id"]
        offer_id = attributes["offer_id"]
        conversion_type = attributes["conversion_type"]
        status = _STATUSES[attributes["status"]]  # a spelling seen before
    except (KeyError, InvalidOperation, MalformedRecordError):
        return None
    if (
        not conversion_id
        or conversion_id.isspace()
        or not affiliate_id
        or affiliate_id.isspace()
        or not offer_id
        or offer_id.isspace()
        or not conversion_type
        or conversion_type.isspace()
    ):
        return None
    attributes["status"] = status
    return Conversion(conversion_id, affiliate_id, offer_id, conversion_type, status, attributes)


def _blank(value: str) -> bool:
    return not value or value.isspace()


def _required(image: Mapping[str, Any], name: str) -> str:
    """A required attribute: a non-blank string; `MalformedRecordError` naming it otherwise."""
    raw = image.get(name, _ABSENT)
    value: str
    if raw is _ABSENT or _is_null(raw):
        raise MalformedRecordError(f"missing required attribute {name}")
    value = _string(name, raw)
    if _blank(value):
        raise MalformedRecordError(f"required attribute {name} is empty")
    return value


def _parse_image(image: Any) -> Conversion:
    """`parse_image` with every check: the attribute's type tested as any mapping, nulls, the errors."""
    if not isinstance(image, Mapping):
        raise MalformedRecordError("image is not a map of attributes")
    conversion_id = _required(image, "conversion_id")
    affiliate_id = _required(image, "affiliate_id")
    offer_id = _required(image, "offer_id")
    conversion_type = _required(image, "conversion_type")
    status = parse_status(_required(image, "status"))
    attributes: dict[str, AttributeValue] = {
        "conversion_id": conversion_id,
        "affiliate_id": affiliate_id,
        "offer_id": offer_id,
        "conversion_type": conversion_type,
        "status": status,
    }
    for name, raw in image.items():
        parser = _OPTIONAL_PARSERS.get(name)
        if parser is not None and not _is_null(raw):
            attributes[name] = parser(name, raw)
    return Conversion(
        conversion_id=conversion_id,
        affiliate_id=affiliate_id,
        offer_id=offer_id,
        conversion_type=conversion_type,
        status=status,
        attributes=attributes,
    )


# Each spelling of a previous status seen, normalised (bounded, like `_STATUSES`).
_PREVIOUS_STATUSES: dict[str, str | None] = {}


def _previous_status(old_image: Any) -> str | None:
    """The status before the change, normalised; None when the old image has none.

    Only the status is read from the old image: it was validated when it was the new image, and a
    correction of a once-malformed record must still be evaluated on its own new image.
    """
    if type(old_image) is not dict and not isinstance(old_image, Mapping):
        raise MalformedRecordError("OldImage is not a map of attributes")
    value = old_image.get("status")
    if type(value) is dict and len(value) == 1:
        raw = value.get("S")
        if type(raw) is str and raw in _PREVIOUS_STATUSES:
            return _PREVIOUS_STATUSES[raw]
    if value is None or _is_null(value):
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("S"), str):
        return None
    raw = str(value["S"])
    status = normalise_status(raw) or None
    if len(_PREVIOUS_STATUSES) < _MAX_STATUS_SPELLINGS:
        _PREVIOUS_STATUSES[raw] = status
    return status


def change_time(raw: Any) -> float:
    """Stream `ApproximateCreationDateTime` as epoch seconds.

    Lambda events carry a number of epoch seconds; boto3's GetRecords gives a `datetime`; an ISO
    8601 string is accepted from replay tools.
    """
    if isinstance(raw, bool):
        raise MalformedRecordError("ApproximateCreationDateTime is not a time")
    if isinstance(raw, int | float | Decimal):
        return float(raw)
    if isinstance(raw, datetime):
        moment = raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise MalformedRecordError(f"ApproximateCreationDateTime {raw!r} is not a time") from exc
        return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()
    raise MalformedRecordError("missing ApproximateCreationDateTime")


def parse_change(record: Mapping[str, Any]) -> ConversionChange | None:
    """The change a stream record describes; None for a REMOVE (which fires nothing).

    Raises `MalformedRecordError` for a record that cannot be evaluated: an unknown event name, a
    missing NewImage on INSERT/MODIFY, a missing OldImage on MODIFY (the stream must be
    NEW_AND_OLD_IMAGES, or a status change cannot be told from any other update), a missing or
    mistyped required attribute, a mistyped optional attribute, an unknown status or no change time.
    """
    event_name = record.get("eventName")
    if event_name == REMOVE:
        return None
    if event_name not in (INSERT, MODIFY):
        raise MalformedRecordError(f"unknown eventName {event_name!r}")
    stream = record.get("dynamodb")
    if type(stream) is not dict and not isinstance(stream, Mapping):
        raise MalformedRecordError("missing dynamodb section")
    if "NewImage" not in stream:
        raise MalformedRecordError(f"missing NewImage on {event_name}")
    # `parse_image` and `_previous_status`, their common cases inline (this runs for every record).
    new_image = stream["NewImage"]
    conversion = _parse_plain_image(new_image) if type(new_image) is dict else None
    if conversion is None:
        conversion = _parse_image(new_image)
    previous: str | None = None
    if event_name == MODIFY:
        if "OldImage" not in stream:
            raise MalformedRecordError("missing OldImage on MODIFY (stream view type must be NEW_AND_OLD_IMAGES)")
        old_image = stream["OldImage"]
        value = old_image.get("status") if type(old_image) is dict else None
        raw = value.get("S") if type(value) is dict and len(value) == 1 else None
        if type(raw) is str and raw in _PREVIOUS_STATUSES:
            previous = _PREVIOUS_STATUSES[raw]
        else:
            previous = _previous_status(old_image)
    raw_time = stream.get("ApproximateCreationDateTime")
    changed_at = float(raw_time) if type(raw_time) is float or type(raw_time) is int else change_time(raw_time)
    return ConversionChange(conversion, previous, changed_at)


def is_status_change(change: ConversionChange) -> bool:
    """Only a change of status can fire (an insert is a change from no status)."""
    return change.conversion.status != change.previous_status
