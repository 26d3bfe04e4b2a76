"""The local moto server's routing key and the stack's moto settings (pure, no sockets)."""

from __future__ import annotations

import pytest

from local.config import LocalConfig, LocalConfigError
from local.moto_server import routing_key

pytestmark = pytest.mark.unit


def _signed(service: str, region: str = "us-east-1", target: str | None = None, path: str = "/") -> dict[str, str]:
    environ = {
        "PATH_INFO": path,
        "HTTP_AUTHORIZATION": (
            f"AWS4-HMAC-SHA256 Credential=testing/20261126/{region}/{service}/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=abc"
        ),
    }
    if target is not None:
        environ["HTTP_X_AMZ_TARGET"] = target
    return environ


def test_signed_dynamodb_streams_and_sqs_requests_are_keyed_by_service_region_and_target_prefix() -> None:
    assert routing_key(_signed("dynamodb", target="DynamoDB_20120810.PutItem")) == (
        "dynamodb",
        "us-east-1",
        "DynamoDB_20120810",
    )
    # Streams sign as dynamodb: only the target tells them apart, so it is part of the key.
    assert routing_key(_signed("dynamodb", target="DynamoDBStreams_20120810.GetRecords")) == (
        "dynamodb",
        "us-east-1",
        "DynamoDBStreams_20120810",
    )
    assert routing_key(_signed("sqs", "eu-west-1", "AmazonSQS.ReceiveMessage")) == ("sqs", "eu-west-1", "AmazonSQS")
    assert routing_key(_signed("sqs", path="/123456789012/postback-deliveries")) == ("sqs", "us-east-1", "")


@pytest.mark.parametrize(
    "environ",
    [
        {"PATH_INFO": "/moto-api/reset", "HTTP_AUTHORIZATION": _signed("sqs")["HTTP_AUTHORIZATION"]},
        {"PATH_INFO": "/", "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"},  # unsigned
        {"PATH_INFO": "/", "HTTP_AUTHORIZATION": "AWS testing:signature"},  # SigV2
        {"PATH_INFO": "/", "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=broken"},
        _signed("s3", path="/bucket/key"),  # a service whose backend depends on more than the key
        _signed("execute-api", path="/@connections/abc"),
    ],
)
def test_requests_moto_must_route_itself_have_no_key(environ: dict[str, str]) -> None:
    assert routing_key(environ) is None


def test_moto_runs_in_its_own_process_unless_asked_otherwise() -> None:
    assert LocalConfig.from_environ({}).moto_in_process is False
    assert LocalConfig.from_environ({"LOCAL_MOTO_IN_PROCESS": "0"}).moto_in_process is False
    assert LocalConfig.from_environ({"LOCAL_MOTO_IN_PROCESS": "1"}).moto_in_process is True
    with pytest.raises(LocalConfigError):
        LocalConfig.from_environ({"LOCAL_MOTO_IN_PROCESS": "maybe"})
