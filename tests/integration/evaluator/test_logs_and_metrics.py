"""What the evaluator handler writes for CloudWatch: a JSON `evaluator.batch` line, a line per record set
aside or failed with the correlation keys, and EMF metrics with their dimensions — never a rendered
URL or a placeholder value (not even one the malformed record carries)."""

from __future__ import annotations

import pytest

from functions.core.metrics import Metric, MetricsBatch
from functions.core.model import delivery_id_for
from tests.integration.evaluator.conftest import Stack
from tests.support.conversions import conversion, postback
from tests.support.lambda_logs import emf_documents, emf_values, lambda_json_logs
from tests.support.streams import Raw, StreamBuilder, sequence_number_of

pytestmark = pytest.mark.integration

CLICK = "CLICK-VALUE-7f3a9"
BAD_PAYOUT = "PAYOUT-NOT-A-NUMBER-55"


def _no_url_or_value(lines: list[str]) -> None:
    for text in lines:
        for secret in (CLICK, BAD_PAYOUT, "tracker.example/cb", "https://"):
            assert secret not in text, (secret, text)


def test_a_batch_logs_its_counts_and_each_dead_letter_and_emits_the_evaluator_metrics(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.add_postback(postback("pb_1"))
    stream = StreamBuilder()
    fired = stream.insert(conversion(conversion_id="c-1", aff_s1=CLICK))
    unchanged = stream.modify(conversion(conversion_id="c-1", aff_s1=CLICK), conversion(conversion_id="c-1"))
    malformed = stream.insert(conversion(conversion_id="c-bad", payout=Raw({"N": BAD_PAYOUT})))
    capsys.readouterr()

    with lambda_json_logs() as logs:
        assert stack.invoke([fired, unchanged, malformed]) == {"batchItemFailures": []}
    stdout = capsys.readouterr().out

    (batch,) = logs.events("evaluator.batch")
    assert (batch["level"], batch["logger"]) == ("INFO", "functions.evaluator.service")
    assert {key: batch[key] for key in ("records", "status_changes", "deliveries_created", "enqueued")} == {
        "records": 3,
        "status_changes": 1,
        "deliveries_created": 1,
        "enqueued": 1,
    }
    assert batch["dead_lettered"] == 1 and "failed_sequence_number" not in batch
    (dead,) = logs.events("evaluator.record_dead_lettered")
    assert (dead["level"], dead["reason"], dead["conversion_id"], dead["affiliate_id"]) == (
        "WARNING",
        "malformed",
        "c-bad",
        "aff-1",
    )
    assert dead["sequence_number"] == sequence_number_of(malformed)

    assert emf_values(stdout) == {
        ("EvaluatorRecords", None): 3,
        ("StatusChanges", None): 1,
        ("DeliveriesCreated", None): 1,
        ("EvaluatorRecordsReportedFailed", None): 0,
        ("RecordsDeadLettered", "malformed"): 1,
    }
    assert all(document["Stage"] == stack.settings.stage for document in emf_documents(stdout))
    assert stack.deliveries()[delivery_id_for("pb_1", "c-1", "approved")].url.count(CLICK) == 1  # it was rendered
    _no_url_or_value([*logs.lines, *stdout.splitlines()])


def test_a_record_that_fails_is_logged_counted_as_reported_and_the_metrics_still_flush(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.add_postback(postback("pb_1"))
    record = StreamBuilder().insert(conversion(conversion_id="c-9", aff_s1=CLICK))

    def throttled(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("throttled")

    monkeypatch.setattr(type(stack.evaluator._deliveries), "create", throttled)
    capsys.readouterr()

    with lambda_json_logs() as logs:
        response = stack.invoke([record])
    stdout = capsys.readouterr().out

    assert response == {"batchItemFailures": [{"itemIdentifier": sequence_number_of(record)}]}
    (failed,) = logs.events("evaluator.record_failed")
    assert (failed["level"], failed["reason"], failed["conversion_id"], failed["errorType"]) == (
        "ERROR",
        "ConnectionError",
        "c-9",
        "ConnectionError",
    )
    (batch,) = logs.events("evaluator.batch")
    assert batch["level"] == "WARNING" and batch["failed_sequence_number"] == sequence_number_of(record)
    values = emf_values(stdout)
    assert values[("EvaluatorRecordsReportedFailed", None)] == 1
    assert values[("DeliveriesCreated", None)] == 0
    _no_url_or_value([*logs.lines, *stdout.splitlines()])


def test_metrics_are_flushed_when_the_handler_raises(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(records: object, metrics: MetricsBatch) -> None:
        metrics.count(Metric.EVALUATOR_RECORDS, 2)
        raise RuntimeError("bug")

    monkeypatch.setattr(stack.evaluator, "process", crash)
    capsys.readouterr()
    with pytest.raises(RuntimeError):
        stack.invoke([StreamBuilder().insert(conversion())])
    assert emf_values(capsys.readouterr().out) == {("EvaluatorRecords", None): 2}
