"""Simulated trackers: one scripted behaviour per host, and a record of every GET per delivery.

`SimulatedTrackers.get` stands in for the pinned HTTP client (`HttpGetter`): it answers from the
host's script, lets simulated time pass for a slow answer, and records the GET. The `GetLedger`
knows which GETs have their outcome on the record: a GET whose invocation crashed before its
outcome was written is in the documented crash-between-GET-and-ack window, and a second GET of
that delivery is reported apart from other doubles.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import parse_qs, urlsplit

from tests.faults.clock import SimClock
from tests.faults.faults import FaultInjector, FaultKind

NO_DELIVERY_ID = "(a URL without its delivery id)"


class Behaviour(StrEnum):
    OK = "ok"  # 200
    FLAKY = "flaky"  # 500, 500, then 200
    TIMEOUTS = "timeouts"  # read timeout twice, then 200
    SLOW = "slow"  # 200 after 8 s
    THROTTLING = "throttling"  # 429 with Retry-After: 600 once, then 200
    MAINTENANCE = "maintenance"  # 503 with Retry-After: 43200 (12 h, SQS's visibility limit) once, then 200
    GONE = "gone"  # 410 (terminal: dead-lettered), also after a redrive
    DOWN = "down"  # 503 until the on-call engineer's redrive (past the 72 h schedule), then 200


@dataclass(frozen=True)
class Response:
    status_code: int | None
    error: str | None = None
    duration_ms: int = 20
    resolved_address: str | None = "192.0.2.10"
    headers: dict[str, str] = field(default_factory=dict)
    body_excerpt: bytes = b""


@dataclass
class Get:
    delivery_id: str
    at: float
    status_code: int | None
    invocation: str | None
    crash_window: bool = False


class GetLedger:
    """Every GET, and which ones still wait for their outcome to be written."""

    def __init__(self) -> None:
        self.gets: dict[str, list[Get]] = defaultdict(list)
        self._outstanding: dict[str, list[Get]] = defaultdict(list)

    def got(self, get: Get) -> None:
        self.gets[get.delivery_id].append(get)
        self._outstanding[get.delivery_id].append(get)

    def outcome_written(self, delivery_id: str) -> None:
        self._outstanding.pop(delivery_id, None)

    def invocation_crashed(self, invocation: str) -> None:
        """GETs of this invocation whose outcome was not written: the crash-between-GET-and-ack window."""
        for delivery_id in sorted(self._outstanding):
            for get in self._outstanding[delivery_id]:
                if get.invocation == invocation:
                    get.crash_window = True

    def invocation_ended(self, invocation: str) -> None:
        """GETs left without an outcome by a failure that was not a crash stay outstanding (not excused)."""
        for delivery_id in sorted(self._outstanding):
            self._outstanding[delivery_id] = [g for g in self._outstanding[delivery_id] if g.invocation != invocation]


class SimulatedTrackers:
    def __init__(self, clock: SimClock, injector: FaultInjector, ledger: GetLedger) -> None:
        self._clock = clock
        self._injector = injector
        self.ledger = ledger
        self.hosts: dict[str, Behaviour] = {}
        self.healed = False

    def get(self, url: str) -> Response:
        parts = urlsplit(url)
        host = parts.hostname or ""
        # A URL that lost its `d=` (cut short somewhere) is recorded apart: the tracker cannot tell whose GET it is.
        delivery_id = parse_qs(parts.query).get("d", [NO_DELIVERY_ID])[0]
        site = "tracker.get"
        kind = self._injector.draw(site)
        response = self._answer(self.hosts.get(host, Behaviour.OK), delivery_id)
        self.ledger.got(Get(delivery_id, self._clock.epoch(), response.status_code, self._injector.invocation))
        if kind is FaultKind.CRASH:
            # The GET went out; the invocation dies before its outcome is recorded.
            raise self._injector.crash(site, "after")
        return response

    def _answer(self, behaviour: Behaviour, delivery_id: str) -> Response:
        earlier = len(self.ledger.gets.get(delivery_id, ()))
        if behaviour is Behaviour.FLAKY and earlier < 2:
            return Response(500, body_excerpt=b"upstream error")
        if behaviour is Behaviour.TIMEOUTS and earlier < 2:
            self._clock.advance(10)
            return Response(None, error="read_timeout", duration_ms=10_000, resolved_address="192.0.2.10")
        if behaviour is Behaviour.THROTTLING and earlier < 1:
            return Response(429, headers={"Retry-After": "600"})
        if behaviour is Behaviour.MAINTENANCE and earlier < 1:
            return Response(503, headers={"Retry-After": "43200"})
        if behaviour is Behaviour.GONE:
            return Response(410, body_excerpt=b"gone")
        if behaviour is Behaviour.DOWN and not self.healed:
            return Response(503)
        if behaviour is Behaviour.SLOW:
            self._clock.advance(8)
            return Response(200, duration_ms=8_000)
        return Response(200, body_excerpt=b"ok")
