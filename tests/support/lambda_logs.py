"""What CloudWatch gets from a handler: its log records as Lambda's JSON log format writes them, and its
EMF lines on stdout.

`LambdaJsonFormatter` writes a record as the Python runtime does with `LoggingConfig.LogFormat:
JSON`: `timestamp`, `level`, `message`, `logger`, `requestId`, every `extra=` key at the top level,
and `errorType` / `errorMessage` / `stackTrace` for an exception.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from functions.core.metrics import NAMESPACE
from functions.logs import event_fields


class LambdaJsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": "req-test",
            **event_fields(record),
        }
        if record.exc_info and record.exc_info[0] is not None:
            kind, error, trace = record.exc_info
            document["errorType"] = kind.__name__
            document["errorMessage"] = str(error)
            document["stackTrace"] = traceback.format_tb(trace)
        return json.dumps(document, default=str)


class JsonLines(logging.Handler):
    """Every record of the functions' loggers, as the JSON line Lambda would write."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(LambdaJsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def events(self, message: str) -> list[dict[str, Any]]:
        return [document for document in self.documents() if document["message"] == message]


@contextmanager
def lambda_json_logs(level: int = logging.INFO) -> Iterator[JsonLines]:
    """Capture the `functions` loggers' records at `level` (the template's `LogLevel` is INFO)."""
    handler = JsonLines()
    functions_logger = logging.getLogger("functions")
    previous = functions_logger.level
    functions_logger.setLevel(level)
    functions_logger.addHandler(handler)
    try:
        yield handler
    finally:
        functions_logger.removeHandler(handler)
        functions_logger.setLevel(previous)


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    """The EMF documents among the lines a handler printed to stdout."""
    documents = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


def emf_values(stdout: str) -> dict[tuple[str, str | None], Any]:
    """(metric, Reason or None) -> value, from the EMF lines (each checked against the namespace and Stage)."""
    values: dict[tuple[str, str | None], Any] = {}
    for document in emf_documents(stdout):
        (definition,) = document["_aws"]["CloudWatchMetrics"]
        assert definition["Namespace"] == NAMESPACE
        assert ["Stage"] in definition["Dimensions"]
        reason = document.get("Reason")
        if reason is not None:
            assert ["Stage", "Reason"] in definition["Dimensions"]
        for metric in definition["Metrics"]:
            values[(metric["Name"], reason)] = document[metric["Name"]]
    return values
