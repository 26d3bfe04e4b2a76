"""The on-call tools' stack outputs mapping and the local stack's credentials on a loopback endpoint."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from functions.cli import main
from functions.cli.stack import (
    LOCAL_CREDENTIALS,
    SETTING_OUTPUTS,
    StackError,
    is_loopback_endpoint,
    stack_resources,
    use_local_credentials,
)
from functions.settings import Settings

pytestmark = pytest.mark.unit

OUTPUTS = {
    "PostbacksTableName": "postbacks-prod",
    "DeliveriesTableName": "postback-deliveries-prod",
    "DeliveriesQueueUrl": "https://sqs.us-east-1.amazonaws.com/1/postback-deliveries-prod",
    "DeliveriesDeadLetterQueueUrl": "https://sqs.us-east-1.amazonaws.com/1/postback-deliveries-dlq-prod",
    "EvaluatorDeadLetterQueueUrl": "https://sqs.us-east-1.amazonaws.com/1/postback-evaluator-dlq-prod",
    "Stage": "prod",
    "ConversionsStreamArn": "arn:aws:dynamodb:us-east-1:1:table/conversions-prod/stream/x",
}


def test_outputs_replace_the_names_and_keep_the_other_settings() -> None:
    base = Settings(region="eu-west-1", max_attempts=7)
    resources = stack_resources("postbacks-prod", OUTPUTS, base)
    config = resources.settings
    assert (config.postbacks_table, config.deliveries_table, config.stage) == (
        "postbacks-prod",
        "postback-deliveries-prod",
        "prod",
    )
    assert config.deliveries_dlq.endswith("/postback-deliveries-dlq-prod")
    assert (config.region, config.max_attempts) == ("eu-west-1", 7)
    assert resources.conversions_stream_arn == OUTPUTS["ConversionsStreamArn"]


def test_every_missing_output_is_named() -> None:
    with pytest.raises(StackError, match="Stage") as raised:
        stack_resources("x", {"PostbacksTableName": "p"}, Settings())
    assert all(key in str(raised.value) for key in set(SETTING_OUTPUTS) - {"PostbacksTableName"})


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("http://127.0.0.1:5000", True),
        ("http://localhost:5000", True),
        ("http://[::1]:5000", True),
        ("http://127.9.9.9", True),
        ("https://sqs.us-east-1.amazonaws.com", False),
        ("http://10.0.0.5:5000", False),
        (None, False),
    ],
)
def test_loopback_endpoints(endpoint: str | None, loopback: bool) -> None:
    assert is_loopback_endpoint(endpoint) is loopback


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))


def test_a_loopback_endpoint_without_credentials_gets_the_local_stacks(no_credentials: None) -> None:
    environ: dict[str, str] = {}
    assert use_local_credentials(Settings(aws_endpoint_url="http://127.0.0.1:5000"), environ) is True
    assert environ == LOCAL_CREDENTIALS


def test_aws_itself_or_credentials_already_set_are_left_alone(
    no_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ: dict[str, str] = {}
    assert use_local_credentials(Settings(aws_endpoint_url=None), environ) is False
    assert use_local_credentials(Settings(aws_endpoint_url="https://sqs.example.com"), environ) is False
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREAL")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real")
    assert use_local_credentials(Settings(aws_endpoint_url="http://127.0.0.1:5000"), environ) is False
    assert environ == {}


def test_version_and_status_help() -> None:
    out = io.StringIO()
    assert main(["--version"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().startswith("postbacks ")
    out = io.StringIO()
    assert main(["status", "--help"], stdout=out, stderr=io.StringIO()) == 0
    assert "--sample" in out.getvalue() and "--no-dlq-scan" in out.getvalue()
