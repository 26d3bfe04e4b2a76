"""What the sender handler writes for CloudWatch: one JSON `delivery.outcome` line per message with the
correlation keys, one `sender.batch` line, and EMF metrics with their dimensions — never the URL,
a placeholder value or anything of the query string."""

from __future__ import annotations

import json

import pytest

from functions import bootstrap
from functions.core.metrics import METRIC_NAMES
from tests.support.lambda_logs import emf_documents, emf_values, lambda_json_logs

from .conftest import Reply, Stack

pytestmark = pytest.mark.integration

CLICK = "CLICK-VALUE-7f3a9"
QUERY = f"/cb?click={CLICK}&payout=12.34&token=SECRET-TOKEN-1"


def test_a_batch_logs_each_outcome_and_emits_its_metrics_without_the_url(
    stack: Stack, make_receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    ok, missing, failing = make_receiver(Reply(200)), make_receiver(Reply(404)), make_receiver(Reply(500))
    stack.postback("pb_ok", url=ok.url())
    stack.postback("pb_404", url=missing.url())
    stack.postback("pb_500", url=failing.url())
    stack.postback("pb_off", url=ok.url(), enabled=False)
    delivered = stack.delivery(ok.url(QUERY), postback_id="pb_ok")
    dead = stack.delivery(missing.url(QUERY), postback_id="pb_404")
    retried = stack.delivery(failing.url(QUERY), postback_id="pb_500")
    cancelled = stack.delivery(ok.url(QUERY), postback_id="pb_off")
    stack.send("not json")
    capsys.readouterr()

    with lambda_json_logs() as logs:
        failed = stack.run_once()
    stdout = capsys.readouterr().out

    assert len(failed) == 1  # the retry waits on the queue
    outcomes = {line.get("delivery_id", "malformed"): line for line in logs.events("delivery.outcome")}
    assert {key: (line["outcome"], line.get("reason")) for key, line in outcomes.items()} == {
        delivered: ("delivered", None),
        dead: ("dead_lettered", "http_404"),
        retried: ("retried", "http_500"),
        cancelled: ("cancelled", "postback_disabled"),
        "malformed": ("set_aside", "malformed_message"),
    }
    line = outcomes[delivered]
    assert (line["level"], line["logger"], line["requestId"]) == ("INFO", "functions.sender.service", "req-test")
    assert (line["postback_id"], line["affiliate_id"], line["conversion_id"], line["host"]) == (
        "pb_ok",
        "aff-1",
        "c-1",
        "127.0.0.1",
    )
    assert (line["attempt"], line["status_code"]) == (1, 200)
    assert isinstance(line["duration_ms"], int)
    assert outcomes[dead]["level"] == "WARNING" and outcomes[dead]["status_code"] == 404
    assert outcomes[retried]["retry_in_seconds"] > 0
    assert outcomes["malformed"]["message_id"]
    (batch,) = logs.events("sender.batch")
    assert {key: batch[key] for key in ("messages", "delivered", "retried", "dead_lettered", "cancelled")} == {
        "messages": 5,
        "delivered": 1,
        "retried": 1,
        "dead_lettered": 1,
        "cancelled": 1,
    }
    assert (batch["set_aside"], batch["skipped"], batch["failed"]) == (1, 0, 0)

    values = emf_values(stdout)
    counts = {key: value for key, value in values.items() if key[0] != "GetDuration" and value != 0}
    assert counts == {
        ("DeliveriesDelivered", None): 1,
        ("DeliveriesRetried", None): 1,
        ("DeliveriesCancelled", None): 1,
        ("DeliveriesDeadLettered", "http_404"): 1,
        ("DeliveriesDeadLettered", "malformed_message"): 1,
    }
    assert len(values[("GetDuration", None)]) == 3  # one value per GET
    documents = emf_documents(stdout)
    assert all(document["Stage"] == "test" for document in documents)
    assert {metric["Name"] for d in documents for metric in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]} <= (
        METRIC_NAMES
    )

    for text in [*logs.lines, *stdout.splitlines()]:
        for secret in (CLICK, "SECRET-TOKEN-1", "12.34", "/cb", "http://"):
            assert secret not in text, (secret, text)


def test_a_processing_failure_is_logged_with_its_error_and_counted(
    stack: Stack, make_receiver, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = make_receiver(Reply(200))
    stack.postback(url=receiver.url())
    delivery_id = stack.delivery(receiver.url(QUERY))
    repository = bootstrap.delivery_repository()

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("dynamodb is down")

    monkeypatch.setattr(repository, "acquire_lease", broken)
    capsys.readouterr()

    with lambda_json_logs() as logs:
        failed = stack.run_once()
    stdout = capsys.readouterr().out

    assert len(failed) == 1
    (line,) = logs.events("delivery.outcome")
    assert (line["outcome"], line["reason"], line["delivery_id"], line["level"]) == (
        "failed",
        "ConnectionError",
        delivery_id,
        "ERROR",
    )
    assert line["errorType"] == "ConnectionError"
    assert {key: value for key, value in emf_values(stdout).items() if value} == {
        ("DeliveryProcessingFailures", None): 1
    }
    assert all(CLICK not in text for text in [*logs.lines, stdout])
    assert json.loads(logs.lines[-1])["message"] == "sender.batch"
