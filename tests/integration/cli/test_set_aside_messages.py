"""Deliveries-DLQ messages the sender set aside as they came (`malformed_message`, `unknown_delivery`):
shown with their kind and reason, never redriven, removable by purge."""

from __future__ import annotations

import pytest

from tests.integration.cli.conftest import CliStack

pytestmark = pytest.mark.integration

GARBLED = '{"v": 1, "delivery": "no id here"}'


def fill(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    stack.set_aside(GARBLED)
    stack.set_aside('{"v": 1, "delivery_id": "dl_ghost"}', unknown_delivery="dl_ghost")


def test_list_gives_each_its_kind_and_reason(stack: CliStack) -> None:
    fill(stack)

    run = stack.cli("dlq", "list", "--json")

    assert run.code == 0, run.err
    by_kind = {m["kind"]: m for m in run.json()["messages"]}
    assert set(by_kind) == {"dead_letter", "malformed_message", "unknown_delivery"}
    assert (by_kind["malformed_message"]["reason"], by_kind["malformed_message"]["delivery_id"]) == (
        "malformed_message",
        None,
    )
    assert by_kind["malformed_message"]["original_body"] == GARBLED
    assert (by_kind["unknown_delivery"]["reason"], by_kind["unknown_delivery"]["delivery_id"]) == (
        "unknown_delivery",
        "dl_ghost",
    )
    table = stack.cli("dlq", "list").out
    assert "malformed_message" in table and "unknown_delivery" in table and "max_receives_exceeded" not in table
    assert stack.dlq_kinds() == ["delivery", "malformed_message", "unknown_delivery"]


def test_list_filters_them_by_reason(stack: CliStack) -> None:
    fill(stack)
    run = stack.cli("dlq", "list", "--reason", "malformed_message", "--json")
    assert [m["kind"] for m in run.json()["messages"]] == ["malformed_message"]


def test_stats_count_them_by_kind_and_reason(stack: CliStack) -> None:
    fill(stack)

    run = stack.cli("dlq", "stats", "--queue", "deliveries", "--json")

    assert run.code == 0, run.err
    groups = run.json()["queues"][0]["groups"]
    assert groups["kind"] == {"dead_letter": 1, "malformed_message": 1, "unknown_delivery": 1}
    assert groups["reason"] == {"http_404": 1, "malformed_message": 1, "unknown_delivery": 1}
    assert "max_receives_exceeded" not in groups["reason"]


def test_show_gives_the_kind_reason_and_the_original_message(stack: CliStack) -> None:
    stack.set_aside(GARBLED)
    message_id = stack.cli("dlq", "list", "--json").json()["messages"][0]["message_id"]

    shown = stack.cli("dlq", "show", message_id, "--json")
    table = stack.cli("dlq", "show", message_id)

    assert shown.code == 0, shown.err
    message = shown.json()["message"]
    assert (message["kind"], message["reason"]) == ("malformed_message", "malformed_message")
    assert (message["original_message_id"], message["original_body"]) == ("original-1", GARBLED)
    assert shown.json()["record"] is None
    assert "kind: malformed_message" in table.out and "no id here" in table.out
    assert "set this message aside" in table.out


def test_show_finds_an_unknown_delivery_message_by_the_delivery_it_named(stack: CliStack) -> None:
    stack.set_aside('{"v": 1, "delivery_id": "dl_ghost"}', unknown_delivery="dl_ghost")
    run = stack.cli("dlq", "show", "dl_ghost", "--json")
    assert run.code == 0, run.err
    assert (run.json()["message"]["kind"], run.json()["message"]["reason"]) == ("unknown_delivery", "unknown_delivery")


def test_redrive_leaves_them_in_the_dlq_and_redrives_the_rest(stack: CliStack) -> None:
    fill(stack)

    run = stack.cli("dlq", "redrive", "--json")

    assert run.code == 0, run.err
    assert run.json()["counts"] == {"redriven": 1, "left_in_dlq": 2}
    left = [o for o in run.json()["outcomes"] if o["result"] == "left_in_dlq"]
    assert all("set aside by the sender" in o["why"] for o in left)
    assert stack.queued_ids() == ["dl_1"]
    assert stack.dlq_kinds() == ["malformed_message", "unknown_delivery"]


def test_redrive_leaves_an_unknown_delivery_message_even_when_a_record_now_exists(stack: CliStack) -> None:
    stack.dead_letter("dl_late", in_dlq=False)
    stack.set_aside('{"v": 1, "delivery_id": "dl_late"}', unknown_delivery="dl_late")

    dry = stack.cli("dlq", "redrive", "--dry-run", "--json")
    run = stack.cli("dlq", "redrive", "--json")

    assert dry.json()["counts"] == {"would_leave_in_dlq": 1}
    assert run.code == 0 and run.json()["counts"] == {"left_in_dlq": 1}
    assert stack.record("dl_late").state == "dead_lettered"
    assert stack.queued_ids() == []
    assert stack.dlq_kinds() == ["unknown_delivery"]


def test_purge_removes_them(stack: CliStack) -> None:
    fill(stack)

    run = stack.cli("dlq", "purge", "--yes", "--reason", "malformed_message", "--reason", "unknown_delivery", "--json")

    assert run.code == 0, run.err
    assert run.json()["counts"] == {"deleted": 2}
    assert stack.dlq_kinds() == ["delivery"]
