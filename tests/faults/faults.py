"""What goes wrong, where: the fault kinds, the injector that draws them, and the port wrapper.

Every call the evaluator, the sender and the on-call tools make to a port (the deliveries and
postbacks stores, the health store, the queues, the trackers) passes through `FaultInjector.draw`
with the name of its call site (`deliveries.record_delivered`, `sqs.postback-deliveries.SendMessageBatch`,
...). In a scenario of one fault kind, each call is faulted with the scenario's rate, drawn from the
scenario's own seeded `random.Random`: the same seed gives the same faults at the same calls.

The errors are those the real adapters raise after the SDK's own retries: pynamodb's `PutError`,
`UpdateError`, `GetError`, `QueryError` with a botocore cause (throttling, a 5xx, a read timeout),
`PostbackHealthError` from the health store, botocore's `ClientError`/`ReadTimeoutError` from SQS.
`timeout_after_write` applies the call, then raises the timeout (the caller cannot know it
succeeded). A crash (`SimulatedCrash`, a `BaseException`: no `except Exception` stops it) aborts the
invocation as a Lambda crash or timeout would — before a call, or after it returned — and every
later call of that invocation fails too: the process is gone.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError
from pynamodb.exceptions import GetError, PutError, QueryError, UpdateError

from functions.storage.postback_health import PostbackHealthError


class FaultKind(StrEnum):
    NONE = "none"  # the control: no fault at all
    THROTTLE = "throttle"  # ProvisionedThroughputExceeded / ThrottlingException after the SDK's retries
    SERVER_ERROR = "server_error"  # a 5xx (InternalServerError) after the SDK's retries
    TIMEOUT = "timeout"  # a read timeout; the call did not take effect
    TIMEOUT_AFTER_WRITE = "timeout_after_write"  # the call took effect, then the caller timed out
    CRASH = "crash"  # the invocation dies between two calls (before a call, or after one returned)
    DUPLICATE = "duplicate_message"  # SQS hands a message over twice (a second copy of a sent message)
    REORDER = "reordered"  # SQS and the stream's shards deliver in shuffled order, sends delayed at random


# The kinds drawn at call sites; DUPLICATE and REORDER act inside the simulated SQS and stream.
CALL_FAULTS = frozenset(
    {FaultKind.THROTTLE, FaultKind.SERVER_ERROR, FaultKind.TIMEOUT, FaultKind.TIMEOUT_AFTER_WRITE, FaultKind.CRASH}
)


class SimulatedCrash(BaseException):
    """The invocation died (a Lambda crash, an out-of-memory, a timeout): nothing after it runs."""


class FaultInjector:
    """Draws the faults of one scenario; counts what it injected, per kind and call site."""

    def __init__(self, rng: random.Random, kind: FaultKind, rate: float) -> None:
        self.rng = rng
        self.kind = kind
        self.rate = rate
        self.injected: Counter[tuple[str, str]] = Counter()  # (kind, site) -> faults injected
        self.calls: Counter[str] = Counter()  # site -> calls made inside invocations
        self.invocation: str | None = None
        self._dead = False
        self.crashes = 0

    @contextmanager
    def invocation_scope(self, name: str) -> Iterator[None]:
        """One Lambda invocation (or one run of an on-call command): faults are drawn only inside one."""
        self.invocation = name
        self._dead = False
        try:
            yield
        finally:
            self.invocation = None
            self._dead = False

    def note(self, kind: FaultKind, site: str) -> None:
        self.injected[(kind.value, site)] += 1

    def crash(self, site: str, when: str) -> SimulatedCrash:
        """Kill the invocation: this and every later call of it raise."""
        self._dead = True
        self.crashes += 1
        self.note(FaultKind.CRASH, f"{site} ({when})")
        return SimulatedCrash(f"crash {when} {site}")

    def draw(self, site: str) -> FaultKind | None:
        """The fault of this call, if any. Raises `SimulatedCrash` if the invocation is already dead."""
        if self.invocation is None:
            return None  # the harness's own calls (Lambda's deletes, the final checks) are never faulted
        if self._dead:
            raise SimulatedCrash(f"{site} after the crash")
        self.calls[site] += 1
        if self.kind not in CALL_FAULTS or self.rng.random() >= self.rate:
            return None
        return self.kind

    def chance(self, kind: FaultKind, rate: float) -> bool:
        """A fault acting inside a simulated service (duplicates, reordering), counted when it fires."""
        return self.kind is kind and self.invocation is not None and self.rng.random() < rate


# Errors as the adapters raise them.

_CODES = {
    FaultKind.THROTTLE: ("ProvisionedThroughputExceededException", 400),
    FaultKind.SERVER_ERROR: ("InternalServerError", 500),
}
_SQS_CODES = {
    FaultKind.THROTTLE: ("ThrottlingException", 400),
    FaultKind.SERVER_ERROR: ("InternalError", 500),
}


def botocore_error(kind: FaultKind, operation: str, codes: dict[FaultKind, tuple[str, int]] = _CODES) -> Exception:
    if kind in (FaultKind.TIMEOUT, FaultKind.TIMEOUT_AFTER_WRITE):
        return ReadTimeoutError(endpoint_url=f"https://simulated/{operation}")
    code, status = codes[kind]
    response: Any = {
        "Error": {"Code": code, "Message": f"injected {kind.value}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def sqs_error(kind: FaultKind, operation: str) -> Exception:
    return botocore_error(kind, operation, _SQS_CODES)


def dynamodb_error(method: str, kind: FaultKind) -> Exception:
    """What a repository method raises when its DynamoDB call fails (pynamodb wraps the botocore error)."""
    if method == "create":
        return PutError("Failed to put item", botocore_error(kind, "PutItem"))
    if method in ("get", "get_many", "rules_version"):
        return GetError("Failed to get item", botocore_error(kind, "GetItem"))
    if method in ("dead_lettered", "list_for_affiliate", "page_for_postback", "cancel_waiting_for_postback"):
        return QueryError("Failed to query items", botocore_error(kind, "Query"))
    return UpdateError("Failed to update item", botocore_error(kind, "UpdateItem"))


def health_error(method: str, kind: FaultKind) -> Exception:
    return PostbackHealthError(f"health not written ({kind.value})")


class Faulty:
    """A port with faults: every public method goes through the injector under `<port>.<method>`."""

    def __init__(
        self, target: Any, port: str, injector: FaultInjector, errors: Callable[[str, FaultKind], Exception]
    ) -> None:
        self._target = target
        self._port = port
        self._injector = injector
        self._errors = errors

    @property
    def target(self) -> Any:
        return self._target

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name.startswith("_") or not callable(attribute):
            return attribute
        site = f"{self._port}.{name}"
        injector, errors = self._injector, self._errors

        def call(*args: Any, **kwargs: Any) -> Any:
            kind = injector.draw(site)
            if kind is None:
                return attribute(*args, **kwargs)
            if kind is FaultKind.CRASH:
                if injector.rng.random() < 0.5:
                    raise injector.crash(site, "before")
                attribute(*args, **kwargs)
                raise injector.crash(site, "after")
            injector.note(kind, site)
            if kind is FaultKind.TIMEOUT_AFTER_WRITE:
                attribute(*args, **kwargs)
            raise errors(name, kind)

        return call
