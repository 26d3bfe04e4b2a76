"""`dlq stats`, `dlq list` and `dlq show` read the DLQs without consuming them."""

from __future__ import annotations

import pytest

from functions import bootstrap
from functions.cli.app import build_services
from tests.integration.cli.conftest import CliStack

pytestmark = pytest.mark.integration


def test_stats_groups_by_reason_affiliate_postback_and_host_and_consumes_nothing(stack: CliStack) -> None:
    stack.dead_letter("dl_1", affiliate_id="aff-1", reason="http_404")
    stack.dead_letter("dl_2", affiliate_id="aff-1", reason="http_404")
    stack.dead_letter("dl_3", affiliate_id="aff-2", postback_id="pb_2", reason="gone", status_code=410)

    run = stack.cli("dlq", "stats", "--json")

    assert run.code == 0, run.err
    deliveries, evaluator = run.json()["queues"]
    assert deliveries["queue"] == "postback-deliveries-dlq"
    assert deliveries["scanned"] == 3 and deliveries["approximate_depth"] == 3
    assert deliveries["oldest_age_seconds"] is not None
    assert deliveries["groups"]["reason"] == {"http_404": 2, "gone": 1}
    assert deliveries["groups"]["affiliate"] == {"aff-1": 2, "aff-2": 1}
    assert deliveries["groups"]["postback"] == {"pb_1": 2, "pb_2": 1}
    assert deliveries["groups"]["target_host"] == {"tracker.example": 3}
    assert evaluator["queue"] == "postback-evaluator-dlq" and evaluator["scanned"] == 0
    assert stack.dlq_ids() == ["dl_1", "dl_2", "dl_3"]


def test_stats_table_names_each_dlq_and_its_oldest_age(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    run = stack.cli("dlq", "stats")
    assert run.code == 0
    assert "postback-deliveries-dlq: depth 1" in run.out
    assert "postback-evaluator-dlq: depth 0" in run.out
    assert "BY REASON" in run.out


def test_list_shows_why_each_delivery_failed(stack: CliStack) -> None:
    stack.dead_letter("dl_1", reason="http_404", status_code=404)
    run = stack.cli("dlq", "list", "--affiliate", "aff-1")
    assert run.code == 0
    assert "dl_1" in run.out and "http_404" in run.out and "404" in run.out
    assert stack.dlq_ids() == ["dl_1"]


def test_show_by_delivery_id_gives_attempts_and_last_response(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    run = stack.cli("dlq", "show", "dl_1", "--json")
    assert run.code == 0
    shown = run.json()
    assert shown["in_dlq"] is True
    assert [a["status_code"] for a in shown["record"]["attempts"]] == [503, 404]
    assert shown["last_response"]["response_excerpt"] == "not here"


def test_show_by_message_id_in_a_table(stack: CliStack) -> None:
    stack.dead_letter("dl_1")
    message_id = stack.cli("dlq", "list", "--json").json()["messages"][0]["message_id"]
    run = stack.cli("dlq", "show", message_id)
    assert run.code == 0
    assert "dl_1" in run.out and "attempts (2)" in run.out and "not here" in run.out


def test_show_of_a_delivery_no_longer_in_the_dlq_reads_the_table(stack: CliStack) -> None:
    stack.dead_letter("dl_1", in_dlq=False)
    run = stack.cli("dlq", "show", "dl_1", "--json")
    assert run.code == 0
    assert run.json()["in_dlq"] is False and run.json()["record"]["state"] == "dead_lettered"


def test_show_of_an_unknown_id_fails_with_a_message(stack: CliStack) -> None:
    run = stack.cli("dlq", "show", "dl_nope")
    assert run.code == 1
    assert "dl_nope" in run.err


def test_missing_queue_is_a_clear_failure(stack: CliStack) -> None:
    stack.sqs.delete_queue(QueueUrl=stack.dlq_url)
    run = stack.cli("dlq", "list")
    assert run.code == 1
    assert run.err.startswith("error: AWS")


def test_the_tools_run_on_the_composition_root_set_up_for_a_terminal(stack: CliStack) -> None:
    services = build_services()

    client_config = bootstrap.sqs_client().meta.config
    assert client_config.read_timeout == bootstrap.TERMINAL_CLIENT_LIMITS.read_timeout
    assert client_config.connect_timeout == bootstrap.TERMINAL_CLIENT_LIMITS.connect_timeout
    assert services.deliveries.queue_name == bootstrap.deliveries_dlq().name
    assert services.conversions.queue_name == bootstrap.evaluator_dlq().name
    # The stream client is built by the first range replayed, not by a command that reads a queue.
    assert stack.cli("dlq", "list", "--queue", "evaluator").code == 0
    assert bootstrap.dynamodb_streams_client.cache_info().currsize == 0
