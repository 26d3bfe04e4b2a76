"""The pure rules of the on-call tools: message parsing, selection, redrive decisions, arguments."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from functions.cli.conversions import lambda_stream_event
from functions.cli.dlq import Result
from functions.cli.dlq_messages import parse_conversion_dead_letter, parse_delivery_dead_letter
from functions.cli.output import format_age, render_table
from functions.cli.pacing import Pacer, RateArgumentError, parse_rate
from functions.cli.timeargs import TimeArgumentError, parse_time
from functions.core.dead_letter_index import DEAD_PARTITION, REDRIVING_PARTITION
from functions.core.messages import dead_letter_attributes, dead_letter_message, delivery_message
from functions.core.model import Attempt, Delivery, DeliveryState
from functions.core.redrive import (
    Action,
    DeadLetterFilter,
    MessageKind,
    decide_for_message,
    decide_for_record,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def dead_letter_entry(message_id: str = "m-1", **overrides: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = {
        "delivery_id": "dl_1",
        "affiliate_id": "aff-1",
        "postback_id": "pb_1",
        "conversion_id": "c-1",
        "conversion_status": "approved",
        "target_host": "tracker.example",
        "reason": "http_404",
        "last_status_code": 404,
        "attempts": [{"number": 1, "status_code": 404}],
        "created_at": "2026-11-24T10:00:00.000000Z",
        "dead_lettered_at": "2026-11-24T11:00:00.000000Z",
    }
    fields.update(overrides)
    body = dead_letter_message(**fields)  # type: ignore[arg-type]
    attributes = dead_letter_attributes("aff-1", "pb_1", str(fields["reason"]), 404)
    return parse_delivery_dead_letter(message_id, json.dumps(body), {"SentTimestamp": "1795000000000"}, attributes)


def attempt(number: int, **fields: object) -> Attempt:
    return Attempt(number=number, at="2026-11-24T10:00:00.000000Z", outcome="retryable", **fields)  # type: ignore[arg-type]


def record(**overrides: object) -> Delivery:
    base = Delivery(
        delivery_id="dl_1",
        affiliate_id="aff-1",
        postback_id="pb_1",
        conversion_id="c-1",
        conversion_status="approved",
        url="https://tracker.example/cb",
        target_host="tracker.example",
        state=DeliveryState.DEAD_LETTERED,
        reason="http_404",
        attempts=(attempt(1, status_code=503), attempt(2, status_code=404)),
        cycle_attempts=2,
        redrive_count=0,
        redrive_token=None,
        dead_letter_partition=DEAD_PARTITION,
        dead_lettered_at="2026-11-24T11:00:00.000000Z",
        lease_expires_at=None,
        enqueued_at=None,
        next_attempt_at=None,
        created_at="2026-11-24T10:00:00.000000Z",
        updated_at="2026-11-24T11:00:00.000000Z",
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_sender_dead_letter_message_is_read_whole() -> None:
    entry = dead_letter_entry()
    assert entry.kind is MessageKind.DEAD_LETTER
    assert (entry.delivery_id, entry.reason, entry.last_status_code, entry.target_host) == (
        "dl_1",
        "http_404",
        404,
        "tracker.example",
    )
    assert entry.at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)


def test_message_moved_by_the_queue_redrive_policy_is_recognised() -> None:
    entry = parse_delivery_dead_letter(
        "m-2", json.dumps(delivery_message("dl_9")), {}, {"affiliate_id": "aff-2", "postback_id": "pb_2"}
    )
    assert entry.kind is MessageKind.MOVED
    assert (entry.delivery_id, entry.affiliate_id, entry.reason) == ("dl_9", "aff-2", "max_receives_exceeded")


def test_unreadable_body_yields_an_entry_without_a_delivery() -> None:
    entry = parse_delivery_dead_letter("m-3", "not json", {}, {})
    assert entry.delivery_id is None
    assert decide_for_message(entry, None, NOW.timestamp()).action is Action.SKIP_UNREADABLE


def set_aside_entry(kind: str, delivery_id: str | None = None):  # type: ignore[no-untyped-def]
    """A message the sender put in the DLQ as it came (functions.sender.service)."""
    body: dict[str, object] = {
        "v": 1,
        "kind": kind,
        "reason": kind,
        "message_id": "orig-1",
        "body": '{"v": 1, "oops": true}',
        "dead_lettered_at": "2026-11-24T11:00:00.000000Z",
    }
    if delivery_id is not None:
        body["delivery_id"] = delivery_id
    return parse_delivery_dead_letter("m-7", json.dumps(body), {}, {"reason": kind, "status_code": ""})


def test_malformed_message_keeps_its_kind_reason_and_original_body() -> None:
    entry = set_aside_entry("malformed_message")
    assert (entry.kind, entry.reason, entry.delivery_id) == (MessageKind.MALFORMED_MESSAGE, "malformed_message", None)
    assert (entry.original_message_id, entry.original_body) == ("orig-1", '{"v": 1, "oops": true}')
    assert entry.last_status_code is None and entry.attempts == ()
    assert entry.at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    assert not entry.kind.redrivable


def test_unknown_delivery_message_names_its_delivery_and_kind() -> None:
    entry = set_aside_entry("unknown_delivery", delivery_id="dl_1")
    assert (entry.kind, entry.reason, entry.delivery_id) == (MessageKind.UNKNOWN_DELIVERY, "unknown_delivery", "dl_1")
    assert entry.original_body == '{"v": 1, "oops": true}'


@pytest.mark.parametrize("kind", ["malformed_message", "unknown_delivery"])
def test_messages_the_sender_set_aside_are_left_in_the_dlq_whatever_the_record(kind: str) -> None:
    entry = set_aside_entry(kind, delivery_id="dl_1" if kind == "unknown_delivery" else None)
    for found in (None, record(), record(state=DeliveryState.IN_FLIGHT, dead_letter_partition=None)):
        assert decide_for_message(entry, found, NOW.timestamp()).action is Action.LEAVE


def test_filter_ands_across_fields_and_ors_within_one() -> None:
    entry = dead_letter_entry()
    assert DeadLetterFilter(affiliate_ids=frozenset({"aff-1", "aff-2"}), status_codes=frozenset({404})).matches(entry)
    assert not DeadLetterFilter(affiliate_ids=frozenset({"aff-1"}), status_codes=frozenset({500})).matches(entry)
    assert not DeadLetterFilter(postback_ids=frozenset({"pb_2"})).matches(entry)
    assert DeadLetterFilter(reasons=frozenset({"http_404"})).matches(entry)


def test_time_window_is_since_inclusive_until_exclusive() -> None:
    entry = dead_letter_entry()
    at = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    assert DeadLetterFilter(since=at).matches(entry)
    assert not DeadLetterFilter(until=at).matches(entry)
    assert DeadLetterFilter(since=at - timedelta(hours=1), until=at + timedelta(seconds=1)).matches(entry)


def test_dead_lettered_delivery_is_claimed() -> None:
    assert decide_for_message(dead_letter_entry(), record(), NOW.timestamp()).action is Action.CLAIM


def test_half_done_redrive_of_this_message_is_resent() -> None:
    claimed = record(state=DeliveryState.PENDING, redrive_token="m-1", dead_letter_partition=REDRIVING_PARTITION)
    assert decide_for_message(dead_letter_entry("m-1"), claimed, NOW.timestamp()).action is Action.RESEND


def test_half_done_redrive_the_sender_already_took_is_finished_without_sending() -> None:
    claimed = record(state=DeliveryState.IN_FLIGHT, redrive_token="m-1", dead_letter_partition=REDRIVING_PARTITION)
    assert decide_for_message(dead_letter_entry("m-1"), claimed, NOW.timestamp()).action is Action.FINISH


def test_finished_redrive_of_this_message_only_drops_the_copy() -> None:
    done = record(state=DeliveryState.PENDING, redrive_token="m-1", dead_letter_partition=None)
    assert decide_for_message(dead_letter_entry("m-1"), done, NOW.timestamp()).action is Action.DROP


def test_copy_of_a_delivery_someone_else_brought_back_is_dropped() -> None:
    other = record(state=DeliveryState.PENDING, redrive_token="m-other", dead_letter_partition=REDRIVING_PARTITION)
    assert decide_for_message(dead_letter_entry("m-1"), other, NOW.timestamp()).action is Action.DROP
    delivered = record(state=DeliveryState.DELIVERED, redrive_token="m-other")
    assert decide_for_message(dead_letter_entry("m-1"), delivered, NOW.timestamp()).action is Action.DROP


def test_delivery_dead_lettered_again_after_an_earlier_redrive_is_claimed_again() -> None:
    again = record(
        state=DeliveryState.DEAD_LETTERED, redrive_token="m-old", dead_letter_partition=DEAD_PARTITION, redrive_count=1
    )
    assert decide_for_message(dead_letter_entry("m-new"), again, NOW.timestamp()).action is Action.CLAIM


def test_missing_record_is_left_in_the_dlq() -> None:
    assert decide_for_message(dead_letter_entry(), None, NOW.timestamp()).action is Action.SKIP_MISSING


def test_stuck_delivery_moved_by_the_queue_is_claimed_unless_leased() -> None:
    moved = parse_delivery_dead_letter("m-5", json.dumps(delivery_message("dl_1")), {}, {})
    stuck = record(state=DeliveryState.IN_FLIGHT, dead_letter_partition=None, lease_expires_at=NOW.timestamp() - 10)
    assert decide_for_message(moved, stuck, NOW.timestamp()).action is Action.CLAIM
    leased = replace(stuck, lease_expires_at=NOW.timestamp() + 10)
    assert decide_for_message(moved, leased, NOW.timestamp()).action is Action.SKIP_BUSY


def test_recovery_resends_only_abandoned_half_done_redrives() -> None:
    fresh = record(
        state=DeliveryState.PENDING, dead_letter_partition=REDRIVING_PARTITION, updated_at="2026-11-24T11:59:00Z"
    )
    assert decide_for_record(fresh, NOW, 300).action is Action.SKIP_BUSY
    old = replace(fresh, updated_at="2026-11-24T11:50:00Z")
    assert decide_for_record(old, NOW, 300).action is Action.RESEND
    assert decide_for_record(record(), NOW, 300).action is Action.CLAIM
    assert decide_for_record(record(state=DeliveryState.DELIVERED), NOW, 300).action is Action.DROP


def test_record_last_status_code_is_the_latest_attempt_with_one() -> None:
    assert record(attempts=(attempt(1, status_code=404), attempt(2, error="timeout"))).last_status_code == 404


def test_conversion_dead_letter_exposes_the_record_identity() -> None:
    stream_record = {
        "eventID": "e-1",
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"conversion_id": {"S": "c-1"}},
            "NewImage": {"conversion_id": {"S": "c-1"}, "affiliate_id": {"S": "aff-1"}},
            "SequenceNumber": "42",
        },
    }
    body = {"v": 1, "kind": "conversion_record", "reason": "malformed", "record": stream_record}
    entry = parse_conversion_dead_letter("m-1", json.dumps(body), {})
    assert (entry.conversion_id, entry.affiliate_id, entry.sequence_number) == ("c-1", "aff-1", "42")
    assert DeadLetterFilter(affiliate_ids=frozenset({"aff-1"})).matches_conversion(entry)


def test_replay_event_is_lambda_shaped() -> None:
    body = {
        "reason": "x",
        "record": {"eventID": "e-1", "dynamodb": {"ApproximateCreationDateTime": "2026-11-24T10:00:00Z"}},
    }
    entry = parse_conversion_dead_letter("m-1", json.dumps(body), {})
    event = lambda_stream_event(entry, "arn:default", "us-east-1")
    (replayed,) = event["Records"]
    assert replayed["eventSourceARN"] == "arn:default"
    assert replayed["eventSource"] == "aws:dynamodb"
    assert replayed["dynamodb"]["ApproximateCreationDateTime"] == datetime(2026, 11, 24, 10, tzinfo=UTC).timestamp()
    assert replayed["dynamodb"]["SequenceNumber"] == "replay-m-1"
    assert replayed["eventID"] == "e-1"
    assert entry.record is not None and entry.record["dynamodb"]["ApproximateCreationDateTime"] == (
        "2026-11-24T10:00:00Z"
    ), "the message's record is not changed"


def test_replay_event_of_a_bare_record_takes_what_it_lacks_from_the_message() -> None:
    body = {"reason": "x", "sequence_number": "77", "record": {"eventName": "INSERT"}}
    entry = parse_conversion_dead_letter("m-2", json.dumps(body), {"SentTimestamp": "1795000000000"})
    (replayed,) = lambda_stream_event(entry, "arn:default", "eu-west-1")["Records"]
    assert (replayed["eventID"], replayed["awsRegion"]) == ("replay-m-2", "eu-west-1")
    assert replayed["dynamodb"] == {"ApproximateCreationDateTime": 1795000000.0, "SequenceNumber": "77"}


def test_every_redrive_decision_has_a_dry_run_result() -> None:
    assert {Result.would(action).value for action in Action} == {f"would_{action.value}" for action in Action}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("1d", NOW - timedelta(days=1)),
        ("90s", NOW - timedelta(seconds=90)),
        ("2026-11-24T10:00:00Z", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("2026-11-24T12:00:00+02:00", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),
    ],
)
def test_time_arguments_accept_iso_and_relative_forms(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


def test_time_argument_that_is_neither_is_rejected() -> None:
    with pytest.raises(TimeArgumentError):
        parse_time("last tuesday", NOW)


def test_rate_accepts_n_and_n_per_second() -> None:
    assert parse_rate("20/s") == 20.0
    assert parse_rate("2.5") == 2.5
    with pytest.raises(RateArgumentError):
        parse_rate("0")


def test_pacer_spaces_events_by_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        pacer.wait()
    assert slept == [0.25, 0.25]


def test_table_and_age_rendering() -> None:
    assert render_table(["a", "bb"], [("x", None)]) == "A  BB\nx  -"
    assert (format_age(59), format_age(3600 * 3 + 300), format_age(None)) == ("59s", "3h05m", "-")
