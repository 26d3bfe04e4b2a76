"""Time arguments of the on-call tools: ISO 8601 (`2026-11-24T10:00:00Z`, `2026-11-24`) or a
duration before now (`90s`, `30m`, `2h`, `1d`, `1w`). Times without a zone are UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TimeArgumentError(ValueError):
    """A time argument is neither ISO 8601 nor a relative duration."""


def parse_time(text: str, now: datetime) -> datetime:
    """The moment `text` names, as an aware UTC datetime; relative forms count back from `now`."""
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
        return now.astimezone(UTC) - timedelta(seconds=seconds)
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError as exc:
        raise TimeArgumentError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-24T10:00:00Z) or a duration ago (30m, 2h, 1d)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
