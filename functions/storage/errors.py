"""Transient or permanent: how the evaluator and the sender read an AWS failure (docs/reliability.md).

- **Transient** — throttling, a 5xx, a timeout, a connection error, or anything not known to be
  permanent: the same request may succeed later (the evaluator reports the record, Lambda retries;
  the sender retries its outcome write while it holds the lease).
- **Permanent for one item** — DynamoDB refuses the item itself (`ValidationException`, which
  includes "Item size has exceeded the maximum allowed size", or a serialization error), or our own
  code cannot turn the record into an item (a `ValueError`/`TypeError` raised before any request):
  retrying the same record can never succeed, so the evaluator dead-letters that record and goes on.

pynamodb wraps botocore's errors (`PynamoDBException.cause_response_code`); both are read here.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError
from pynamodb.exceptions import PynamoDBException

# DynamoDB refuses the item or request itself: the same item is refused every time.
PERMANENT_CODES = frozenset(
    {
        "ValidationException",
        "SerializationException",
        "ItemCollectionSizeLimitExceededException",
    }
)


def response_code(exc: BaseException) -> str | None:
    """The AWS error code behind `exc`, or None (a timeout or connection error has no response).

    pynamodb's own `cause_response_code` raises when the cause is a botocore timeout, whose
    `response` is None: every storage module reads the code here instead.
    """
    if isinstance(exc, PynamoDBException):
        exc = exc.cause if isinstance(exc.cause, BaseException) else exc
        if isinstance(exc, PynamoDBException):
            return None
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error")
    code = error.get("Code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def permanent_failure(exc: BaseException) -> str | None:
    """Why `exc` can never succeed for this item (a short reason), or None when it is transient."""
    code = response_code(exc)
    if code is not None:
        return code if code in PERMANENT_CODES else None
    if isinstance(exc, PynamoDBException | BotoCoreError):
        # A timeout, a connection error, retries used up: the next try may work.
        return None
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and response_code(cause) is not None:
        return permanent_failure(cause)
    if isinstance(exc, ValueError | TypeError | UnicodeError | RecursionError):
        return type(exc).__name__
    return None
