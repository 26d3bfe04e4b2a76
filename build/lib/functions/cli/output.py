"""Output of the on-call tools: human tables on stdout by default, JSON with `--json`, and a
progress line on stderr (only on a terminal, or with `--progress`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, TextIO


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60) -> str:
    def cell(value: Any) -> str:
        text = "-" if value is None or value == "" else str(value)
        text = text.replace("\n", " ")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))
    lines = ["  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    lines += ["  ".join(text.ljust(widths[i]) for i, text in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)


def render_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str)


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


class Progress:
    """`label done/total` rewritten in place on stderr, at most ten times a second."""

    def __init__(self, label: str, stream: TextIO, enabled: bool, total: int | None = None) -> None:
        self._label = label
        self._stream = stream
        self._enabled = enabled
        self._total = total
        self._done = 0
        self._last = 0.0
        self._shown = False

    def advance(self, count: int = 1, note: str = "") -> None:
        self._done += count
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        total = f"/{self._total}" if self._total else ""
        self._stream.write(f"\r{self._label} {self._done}{total} {note}".ljust(60))
        self._stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._enabled and self._shown:
            self._stream.write("\r" + " " * 60 + "\r")
            self._stream.flush()
