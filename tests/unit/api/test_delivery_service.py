"""`DeliveryService`: the checks of the delivery log and the test fire, before any store or GET is used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.api.delivery_service import DeliveryService
from functions.api.service import PostbackNotFound, Principal, Role
from functions.api.testfire import ConversionValue, PostbackTestFire, PostbackTestOutcome
from functions.core.classification import classify
from functions.core.model import Attempt, Delivery, DeliveryState, Postback
from functions.core.rendering import RenderError
from functions.core.signing import signature
from functions.core.validation import ValidationFailed
from functions.storage.deliveries import DeliveryPage
from tests.support.conversions import postback

pytestmark = pytest.mark.unit

AFF_A = Principal("a", Role.AFFILIATE, "aff-1")
AFF_B = Principal("b", Role.AFFILIATE, "aff-2")
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


class Postbacks:
    def __init__(self, *postbacks: Postback) -> None:
        self.postbacks = {p.id: p for p in postbacks}

    def get(self, caller: Principal, postback_id: str) -> Postback:
        found = self.postbacks.get(postback_id)
        if found is None or not caller.may_access(found.affiliate_id):
            raise PostbackNotFound(postback_id)
        return found


@dataclass
class Log:
    last_key: dict[str, str] | None = None
    pages: list[tuple[str, int, Mapping[str, str] | None]] = field(default_factory=list)

    def page_for_postback(
        self, postback_id: str, limit: int, start_key: Mapping[str, str] | None = None
    ) -> DeliveryPage:
        self.pages.append((postback_id, limit, start_key))
        return DeliveryPage((), self.last_key)


@dataclass
class Firer:
    error: Exception | None = None
    fired: list[tuple[dict[str, ConversionValue], frozenset[str]]] = field(default_factory=list)

    def fire(
        self, postback: Postback, overrides: Mapping[str, ConversionValue], removed: frozenset[str] = frozenset()
    ) -> PostbackTestOutcome:
        if self.error is not None:
            raise self.error
        self.fired.append((dict(overrides), removed))
        return PostbackTestOutcome("dl_test", postback.url, classify(200, None), 200, 5, None)


def service(log: Log | None = None, firer: Firer | None = None) -> DeliveryService:
    chosen = firer or Firer()
    return DeliveryService(
        postbacks=Postbacks(postback("pb_1", "aff-1")), deliveries=log or Log(), test_fire=lambda: chosen
    )


def test_the_log_pages_on_with_the_cursor_it_issued() -> None:
    log_key = {"delivery_id": "dl_9", "postback_id": "pb_1", "created_at": "2026-11-24T09:00:00.000000Z"}
    log = Log(last_key=dict(log_key))
    first = service(log).log(AFF_A, "pb_1", limit="2", cursor=None)
    assert first.next_cursor is not None

    log.last_key = None
    last = service(log).log(AFF_A, "pb_1", limit="2", cursor=first.next_cursor)

    assert last.next_cursor is None
    assert log.pages == [("pb_1", 2, None), ("pb_1", 2, log_key)]


def test_the_log_of_another_affiliate_s_postback_is_not_found_before_its_parameters_are_checked() -> None:
    log = Log()
    with pytest.raises(PostbackNotFound):
        service(log).log(AFF_B, "pb_1", limit="oops", cursor="oops")
    assert log.pages == []


def test_a_bad_limit_and_a_foreign_cursor_are_refused_without_a_read() -> None:
    log = Log()
    with pytest.raises(ValidationFailed) as limit:
        service(log).log(AFF_A, "pb_1", limit="0", cursor=None)
    with pytest.raises(ValidationFailed) as cursor:
        service(log).log(AFF_A, "pb_1", limit=None, cursor="bm90LWEtY3Vyc29y")
    assert [error.field for error in limit.value.errors] == ["limit"]
    assert [error.field for error in cursor.value.errors] == ["cursor"]
    assert log.pages == []


def test_the_test_body_is_read_only_once_the_postback_is_visible() -> None:
    reads: list[str] = []

    def read_body() -> Any:
        reads.append("read")
        return {}

    with pytest.raises(PostbackNotFound):
        service().test(AFF_B, "pb_1", read_body)
    assert reads == []


def test_a_test_fire_applies_the_body_s_values_and_removals() -> None:
    firer = Firer()
    service(firer=firer).test(AFF_A, "pb_1", lambda: {"aff_s1": "x", "coupon_codes": None})
    assert firer.fired == [({"aff_s1": "x"}, frozenset({"coupon_codes"}))]


def test_a_bad_body_is_refused_before_any_fire() -> None:
    firer = Firer()
    with pytest.raises(ValidationFailed) as refused:
        service(firer=firer).test(AFF_A, "pb_1", lambda: {"status": "lost", "conversion_id": None})
    assert sorted(error.field for error in refused.value.errors) == ["conversion_id", "status"]
    assert firer.fired == []


def test_values_that_cannot_be_placed_in_the_url_are_a_body_error() -> None:
    with pytest.raises(ValidationFailed) as refused:
        service(firer=Firer(error=RenderError("path segment"))).test(AFF_A, "pb_1", lambda: {})
    assert [error.field for error in refused.value.errors] == ["body"]


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str | None = None
    duration_ms: int = 7
    resolved_address: str | None = "203.0.113.10"
    headers: Mapping[str, str] = field(default_factory=dict)
    body_excerpt: bytes = b"ok"


class Tracker:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.urls: list[str] = []

    def get(self, url: str) -> Answer:
        self.urls.append(url)
        return self.answer


class Recorder:
    def __init__(self) -> None:
        self.recorded: list[dict[str, Any]] = []

    def record_test_delivery(self, **fields: Any) -> Delivery:
        self.recorded.append(fields)
        attempt: Attempt = fields["attempt"]
        return Delivery(
            delivery_id=fields["delivery_id"],
            postback_id=fields["postback_id"],
            affiliate_id=fields["affiliate_id"],
            conversion_id=fields["conversion_id"],
            conversion_status=fields["conversion_status"],
            url=fields["url"],
            target_host=fields["target_host"],
            state=fields["state"],
            created_at=attempt.at,
            updated_at=attempt.at,
            is_test=True,
            attempts=(attempt,),
        )


class Secrets:
    """The postbacks' signing secrets (`ensure_signing_secret`); None for a postback that is gone."""

    def __init__(self, secret: str | None = "pbsec_test-secret") -> None:
        self.secret = secret
        self.asked: list[str] = []

    def ensure_signing_secret(self, postback_id: str, now: str) -> str | None:
        self.asked.append(postback_id)
        return self.secret


def test_a_signed_test_fire_is_signed_like_a_delivery_and_recorded_unsigned() -> None:
    tracker, recorder, secrets = Tracker(Answer(204)), Recorder(), Secrets()
    fire = PostbackTestFire(http=tracker, deliveries=recorder, secrets=secrets, clock=lambda: NOW)
    signed = postback("pb_1", "aff-1", url="https://tracker.example/cb?c={affS1}&ts={timestamp}&sig={signature}")

    outcome = fire.fire(signed, {"aff_s1": "x"})

    [sent] = tracker.urls
    stamp = int(NOW.timestamp())
    message = f"/cb?c=x&ts={stamp}&sig="
    assert sent == f"https://tracker.example{message}{signature('pbsec_test-secret', message)}"
    assert outcome.url == sent and secrets.asked == ["pb_1"]
    [record] = recorder.recorded
    assert record["url"] == "https://tracker.example/cb?c=x&ts={timestamp}&sig={signature}"


def test_a_test_fire_of_a_postback_deleted_meanwhile_is_not_found_and_sends_nothing() -> None:
    tracker = Tracker(Answer(204))
    fire = PostbackTestFire(http=tracker, deliveries=Recorder(), secrets=Secrets(None), clock=lambda: NOW)
    with pytest.raises(PostbackNotFound):
        fire.fire(postback("pb_1", "aff-1", url="https://tracker.example/cb?sig={signature}"), {})
    assert tracker.urls == []


@pytest.mark.parametrize(
    ("answer", "state"),
    [(Answer(204), DeliveryState.DELIVERED), (Answer(None, "connect_timeout"), DeliveryState.FAILED)],
)
def test_a_test_fire_sends_one_get_and_records_it_as_a_test(answer: Answer, state: DeliveryState) -> None:
    tracker, recorder = Tracker(answer), Recorder()
    fire = PostbackTestFire(http=tracker, deliveries=recorder, secrets=Secrets(), clock=lambda: NOW)

    outcome = fire.fire(postback("pb_1", "aff-1"), {"aff_s1": "from the body"})

    [url] = tracker.urls
    assert "click=from%20the%20body" in url and outcome.url == url
    [record] = recorder.recorded
    assert (record["state"], record["url"], record["target_host"]) == (state, url, "tracker.example")
    assert record["conversion_id"].startswith("test-")
    assert record["delivery_id"] == outcome.delivery_id
    assert (record["attempt"].number, record["attempt"].test, record["attempt"].status_code) == (
        1,
        True,
        answer.status_code,
    )
    assert outcome.delivered is (state is DeliveryState.DELIVERED)
