"""The least-privilege policies of `infrastructure/template.json` allow every AWS call the code makes.

moto ignores IAM: a call that no policy allows passes every other test and fails in AWS with
AccessDenied. Here each function's real code paths run against moto in-process while every AWS
call of every client the code creates is recorded (`tests.support.aws_calls`), and each call —
plus what the function's event source mapping does with its role — must be allowed by a statement
of the policies attached to that function's role (`tests.support.iam_policies`):

- api (`app` through `chalice.test.Client`): create, list (admin and affiliate), get, patch,
  disable and delete with the cancellation of waiting deliveries, the delivery log, a test fire
  to a loopback receiver; and, configured as in AWS (local mode off), a request whose token is
  verified with the signing secret read from Secrets Manager;
- authorizer (`jwt_authorizer`), configured as in AWS: a token verified with that secret;
- evaluator (`on_conversion_change`): records that fire, a malformed record (dead-lettered), a
  redelivered record (the delivery already exists);
- sender (`on_delivery_message`): delivered, retried then dead-lettered when attempts run out,
  dead-lettered at once (410), cancelled (postback disabled, postback deleted), unknown delivery,
  malformed message; held by a slow GET, the messages it receives and deletes itself (backfill).

Queues are configured by URL, as the template's `Ref`s give them to the functions in AWS.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from functions import bootstrap
from functions.core.messages import delivery_message
from functions.core.model import DeliveryState, delivery_id_for, format_timestamp
from functions.evaluator.handler import on_conversion_change
from functions.sender.handler import on_delivery_message
from functions.settings import load_settings
from functions.storage.models import RULES_VERSION_KEY, DeliveryModel
from functions.storage.postbacks import new_item
from infrastructure.resources import TABLES, create_all, load_template
from tests.support.api_client import ADMIN, AFF_A, Api, auth, body_of, token
from tests.support.aws_calls import AwsCall, AwsCallLog, calls_of
from tests.support.conversions import BEFORE_CHANGES, conversion, postback
from tests.support.iam_policies import FUNCTIONS, ResourceNames, Statement, role_statements, uncovered
from tests.support.streams import StreamBuilder, stream_event

pytestmark = pytest.mark.infrastructure

REGION = "us-east-1"
Calls = list[AwsCall]


# A tracker on loopback: the path picks the answer.
class _Tracker(BaseHTTPRequestHandler):
    answers = {"/ok": 200, "/retry": 500, "/gone": 410, "/slow": 200}

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(0.5)  # holds the sender's invocation long enough for it to take more messages
        status = self.answers.get(self.path.split("?", 1)[0], 404)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def _serving() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tracker)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tracker() -> Iterator[str]:
    with _serving() as url:
        yield url


@pytest.fixture(scope="module")
def other_tracker() -> Iterator[str]:
    """A second host (another port): the sender sends no second GET to a host whose GET holds it."""
    with _serving() as url:
        yield url


class World:
    """moto in-process with the template's tables and queues, the functions configured as in AWS."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sqs = boto3.client("sqs", region_name=REGION)
        resources = create_all(boto3.client("dynamodb", region_name=REGION), self.sqs, load_settings())
        self.queue_urls = resources.queue_urls
        for variable, logical_id in (
            ("POSTBACKS_DELIVERIES_QUEUE", "DeliveriesQueue"),
            ("POSTBACKS_DELIVERIES_DLQ", "DeliveriesDeadLetterQueue"),
            ("POSTBACKS_EVALUATOR_DLQ", "EvaluatorDeadLetterQueue"),
        ):
            monkeypatch.setenv(variable, self.queue_urls[logical_id])
        monkeypatch.setenv("POSTBACKS_ALLOW_PRIVATE_TARGETS", "1")
        monkeypatch.setenv("POSTBACKS_RETRY_BASE_SECONDS", "0.01")
        monkeypatch.setenv("POSTBACKS_MAX_ATTEMPTS", "2")
        monkeypatch.setenv("POSTBACKS_CONNECT_TIMEOUT_SECONDS", "0.5")
        monkeypatch.setenv("POSTBACKS_READ_TIMEOUT_SECONDS", "0.5")
        monkeypatch.setenv("POSTBACKS_TOTAL_TIMEOUT_SECONDS", "1")
        # Off while a scenario plays Lambda with messages left visible; `backfilling` turns it on.
        monkeypatch.setenv("POSTBACKS_SENDER_BACKFILL_AFTER_SECONDS", "0")
        self.monkeypatch = monkeypatch
        bootstrap.reset()

    def backfilling(self, after_seconds: float) -> None:
        """Backfill on, and room for a GET of 0.5 s (the slow tracker's) well within the timeouts."""
        self.monkeypatch.setenv("POSTBACKS_SENDER_BACKFILL_AFTER_SECONDS", str(after_seconds))
        self.monkeypatch.setenv("POSTBACKS_READ_TIMEOUT_SECONDS", "3")
        self.monkeypatch.setenv("POSTBACKS_TOTAL_TIMEOUT_SECONDS", "3")
        bootstrap.reset()

    def messages(self, logical_id: str) -> list[dict[str, Any]]:
        received = self.sqs.receive_message(
            QueueUrl=self.queue_urls[logical_id], MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=0
        ).get("Messages", [])
        return list(received)


@contextmanager
def fresh_world() -> Iterator[World]:
    """A fresh moto, environment and set of built components for one function's scenario."""
    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        try:
            yield World(monkeypatch)
        finally:
            bootstrap.reset()


def _postback(postback_id: str, url: str, *, enabled: bool = True, affiliate: str = "aff-1") -> None:
    new_item(postback(postback_id, affiliate, url=url, enabled=enabled, updated_at=BEFORE_CHANGES)).save()


def _delivery(postback_id: str, url: str, conversion_id: str = "c-1") -> str:
    delivery_id = delivery_id_for(postback_id, conversion_id, "approved")
    now = datetime.now(UTC)
    DeliveryModel(
        delivery_id,
        postback_id=postback_id,
        affiliate_id="aff-1",
        conversion_id=conversion_id,
        conversion_status="approved",
        offer_id="offer-1",
        url=url,
        target_host="127.0.0.1",
        state=DeliveryState.PENDING.value,
        attempts=[],
        cycle_attempts=0,
        created_at=format_timestamp(now),
        updated_at=format_timestamp(now),
        expires_at=int((now + timedelta(days=90)).timestamp()),
    ).save()
    return delivery_id


# The scenarios: each returns the calls the function made, recorded as IAM sees them.


@pytest.fixture(scope="module")
def api_calls(tracker: str) -> Calls:
    log = AwsCallLog()
    with log.installed(), fresh_world():
        from app import app

        with Client(app) as test_client:
            api = Api(test_client)
            with log.recording():
                kept = api.create(AFF_A, url=f"{tracker}/ok", excluded_offer_ids=[], conversion_statuses=["approved"])
                doomed = api.create(ADMIN, affiliate_id="aff-a")
            # Deliveries waiting to be sent: a disable and a delete cancel them.
            waiting = [_delivery(kept["id"], f"{tracker}/ok", "c-9"), _delivery(doomed["id"], f"{tracker}/ok")]
            with log.recording():
                assert api.request("GET", "/postbacks", ADMIN).status_code == 200
                assert api.request("GET", "/postbacks?affiliate_id=aff-a&offer_id=offer-1", ADMIN).status_code == 200
                assert api.request("GET", "/postbacks", AFF_A).status_code == 200
                assert api.request("GET", f"/postbacks/{kept['id']}", AFF_A).status_code == 200
                patched = api.request("PATCH", f"/postbacks/{kept['id']}", AFF_A, {"conversion_types": ["lead"]})
                assert patched.status_code == 200, patched.body
                assert api.request("PATCH", f"/postbacks/{kept['id']}", AFF_A, {"enabled": False}).status_code == 200
                assert api.request("DELETE", f"/postbacks/{doomed['id']}", ADMIN).status_code == 204
                fired = api.request("POST", f"/postbacks/{kept['id']}/test", AFF_A, {"aff_s1": "abc"})
                assert fired.status_code == 200, fired.body
                log_page = api.request("GET", f"/postbacks/{kept['id']}/deliveries", AFF_A)
                assert log_page.status_code == 200
        assert body_of(fired)["outcome"]["status_code"] == 200
        assert {item["state"] for item in body_of(log_page)["items"]} >= {"cancelled"}
        assert {DeliveryModel.get(d, consistent_read=True).state for d in waiting} == {"cancelled"}
    return log.calls


@pytest.fixture(scope="module")
def evaluator_calls() -> Calls:
    log = AwsCallLog()
    with log.installed(), fresh_world() as w:
        _postback("pb_1", "https://tracker.example/cb?click={affS1}&d={deliveryId}")
        stream = StreamBuilder()
        fires = stream.insert(conversion(conversion_id="c-1"))
        approves = stream.modify(conversion(conversion_id="c-2", status="pending"), conversion(conversion_id="c-2"))
        malformed = stream.insert({"conversion_id": "c-3", "status": "approved"})
        with log.recording():
            first = on_conversion_change(stream_event([fires, approves, malformed]), None)
            # Redelivered: the deliveries exist already (a still pending one is queued again).
            again = on_conversion_change(stream_event([fires]), None)
        assert first == {"batchItemFailures": []} and again == {"batchItemFailures": []}
        assert len(list(DeliveryModel.scan())) == 2
        queued = {json.loads(m["Body"])["delivery_id"] for m in w.messages("DeliveriesQueue")}
        assert queued == {item.delivery_id for item in DeliveryModel.scan()}
        assert len(w.messages("EvaluatorDeadLetterQueue")) == 1
    return log.calls


def _sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:postback-deliveries",
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


@pytest.fixture(scope="module")
def sender_calls(tracker: str, other_tracker: str) -> Calls:
    log = AwsCallLog()
    with log.installed(), fresh_world() as w:
        queue_url = w.queue_urls["DeliveriesQueue"]
        deliveries = {}
        for postback_id, path, enabled in (
            ("pb_ok", "/ok", True),
            ("pb_retry", "/retry", True),
            ("pb_gone", "/gone", True),
            ("pb_off", "/ok", False),
            ("pb_deleted", "/ok", True),
        ):
            if postback_id != "pb_deleted":
                _postback(postback_id, f"{tracker}{path}", enabled=enabled)
            deliveries[postback_id] = _delivery(postback_id, f"{tracker}{path}")
        bodies = [json.dumps(delivery_message(d)) for d in deliveries.values()]
        bodies += [json.dumps(delivery_message("dl_unknown")), "not json"]
        for body in bodies:
            w.sqs.send_message(QueueUrl=queue_url, MessageBody=body)

        for _ in range(4):  # until the retried delivery runs out of attempts
            messages = w.messages("DeliveriesQueue")
            if not messages:
                break
            with log.recording():
                failed = on_delivery_message(_sqs_event(messages), None)["batchItemFailures"]
            kept = {item["itemIdentifier"] for item in failed}
            for message in messages:  # Lambda's part: delete the successes, the rest come back
                if message["MessageId"] not in kept:
                    w.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    w.sqs.change_message_visibility(
                        QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
        states = {p: DeliveryModel.get(d, consistent_read=True) for p, d in deliveries.items()}
        assert {p: record.state for p, record in states.items()} == {
            "pb_ok": "delivered",
            "pb_retry": "dead_lettered",
            "pb_gone": "dead_lettered",
            "pb_off": "cancelled",
            "pb_deleted": "cancelled",
        }
        assert len(states["pb_retry"].attempts) == 2
        assert len(w.messages("DeliveriesDeadLetterQueue")) == 4  # retry, gone, unknown, malformed

        # Backfill: held by a slow GET, the invocation receives and deletes what waits in the queue.
        w.backfilling(0.2)
        _postback("pb_slow", f"{tracker}/slow")
        slow = _delivery("pb_slow", f"{tracker}/slow")
        w.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(delivery_message(slow)))
        event = _sqs_event(w.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1)["Messages"])
        _postback("pb_other", f"{other_tracker}/ok")
        waiting = _delivery("pb_other", f"{other_tracker}/ok")
        w.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(delivery_message(waiting)))
        with log.recording():
            assert on_delivery_message(event, None)["batchItemFailures"] == []
        assert DeliveryModel.get(waiting, consistent_read=True).state == "delivered"
        assert w.messages("DeliveriesQueue") == []
    return log.calls


TOKEN_SECRET = "a-signing-secret-of-at-least-32-bytes-0123456789"


@contextmanager
def deployed_token_world() -> Iterator[tuple[World, str]]:
    """`fresh_world` configured as in AWS: local mode off, the token secret in Secrets Manager."""
    with fresh_world() as w, pytest.MonkeyPatch.context() as monkeypatch:
        secrets = boto3.client("secretsmanager", region_name=REGION)
        arn = secrets.create_secret(Name="postbacks/test/jwt-secret", SecretString=TOKEN_SECRET)["ARN"]
        monkeypatch.setenv("POSTBACKS_LOCAL_MODE", "0")
        monkeypatch.delenv("POSTBACKS_ALLOW_PRIVATE_TARGETS", raising=False)
        monkeypatch.setenv("POSTBACKS_JWT_SECRET_ARN", arn)
        bootstrap.reset()
        yield w, arn


def _deployed_token() -> str:
    return token("admin", secret=TOKEN_SECRET)


@pytest.fixture(scope="module")
def api_secret_calls() -> tuple[Calls, str]:
    log = AwsCallLog()
    with log.installed(), deployed_token_world() as (_, arn):
        from app import app

        with Client(app) as test_client, log.recording():
            response = Api(test_client).request("GET", "/postbacks", auth(_deployed_token()))
        assert response.status_code == 200, response.body
    return log.calls, arn


@pytest.fixture(scope="module")
def authorizer_calls() -> tuple[Calls, str]:
    from chalice.app import AuthRequest

    from functions.api.auth import authorizer_response

    log = AwsCallLog()
    with log.installed(), deployed_token_world() as (_, arn), log.recording():
        request = AuthRequest("TOKEN", f"Bearer {_deployed_token()}", "arn:aws:execute-api:us-east-1:1:a/api/GET/x")
        assert authorizer_response(request, bootstrap.token_rules()).principal_id == "user-admin-None"
    return log.calls, arn


@pytest.fixture(scope="module")
def recorded(
    api_calls: Calls,
    api_secret_calls: tuple[Calls, str],
    authorizer_calls: tuple[Calls, str],
    evaluator_calls: Calls,
    sender_calls: Calls,
) -> dict[str, Calls]:
    return {
        "api": api_calls + api_secret_calls[0],
        "authorizer": authorizer_calls[0],
        "evaluator": evaluator_calls,
        "sender": sender_calls,
    }


@pytest.fixture(scope="module")
def names(api_secret_calls: tuple[Calls, str], authorizer_calls: tuple[Calls, str]) -> ResourceNames:
    secrets = {api_secret_calls[1]: "JwtSecretArn", authorizer_calls[1]: "JwtSecretArn"}
    return dataclasses.replace(ResourceNames.of(load_settings(), load_template()), secrets=secrets)


def test_the_api_and_the_authorizer_read_the_signing_secret_from_secrets_manager(
    recorded: dict[str, Calls], names: ResourceNames
) -> None:
    for function in ("api", "authorizer"):
        assert ("secretsmanager:GetSecretValue", "${JwtSecretArn}") in _actions_on(recorded[function], names)
    for function in ("evaluator", "sender"):
        assert not any(call.service == "secretsmanager" for call in recorded[function])


def _actions_on(calls: Calls, names: ResourceNames) -> set[tuple[str, str]]:
    return {(r.action, r.resource) for r in (names.requirement(call) for call in calls)}


# The policies cover the calls.


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_aws_call_of_the_function_is_allowed_by_its_policies(
    function: str, recorded: dict[str, Calls], names: ResourceNames
) -> None:
    assert uncovered(recorded[function], load_template(), function, names) == []


# The scenarios reach the calls that matter (so a silent change of path cannot hollow the check out).


def test_the_api_scenario_reaches_its_transactions_indexes_and_the_delivery_log(
    api_calls: Calls, names: ResourceNames
) -> None:
    seen = _actions_on(api_calls, names)
    assert {
        ("dynamodb:GetItem", "${PostbacksTable.Arn}"),
        ("dynamodb:PutItem", "${PostbacksTable.Arn}"),
        ("dynamodb:UpdateItem", "${PostbacksTable.Arn}"),
        ("dynamodb:DeleteItem", "${PostbacksTable.Arn}"),
        ("dynamodb:Query", "${PostbacksTable.Arn}/index/by_affiliate"),
        ("dynamodb:Query", "${PostbacksTable.Arn}/index/by_created"),
        ("dynamodb:Query", "${DeliveriesTable.Arn}/index/by_postback"),
        ("dynamodb:UpdateItem", "${DeliveriesTable.Arn}"),
        ("dynamodb:PutItem", "${DeliveriesTable.Arn}"),
    } <= seen
    assert not {action for action, _ in seen if action.startswith("sqs:")}
    transacted = {call.operation for call in api_calls if call.api_operation == "TransactWriteItems"}
    assert transacted == {"PutItem", "UpdateItem", "DeleteItem"}
    rules_bumps = [c for c in api_calls if c.keys == ((("postback_id", RULES_VERSION_KEY),),)]
    assert rules_bumps and {c.operation for c in rules_bumps} == {"UpdateItem"}


def test_the_evaluator_scenario_reads_the_rules_version_and_writes_deliveries_and_dead_letters(
    evaluator_calls: Calls, names: ResourceNames
) -> None:
    seen = _actions_on(evaluator_calls, names)
    assert {
        ("dynamodb:Query", "${PostbacksTable.Arn}/index/by_affiliate"),
        ("dynamodb:GetItem", "${PostbacksTable.Arn}"),
        ("dynamodb:PutItem", "${DeliveriesTable.Arn}"),
        ("sqs:SendMessage", "${DeliveriesQueue.Arn}"),
        ("sqs:SendMessage", "${EvaluatorDeadLetterQueue.Arn}"),
    } <= seen
    gets = {names.requirement(c).leading_keys for c in evaluator_calls if c.action == "dynamodb:GetItem"}
    assert frozenset({RULES_VERSION_KEY}) in gets


def test_the_sender_scenario_leases_batch_reads_postbacks_and_keeps_their_health(
    sender_calls: Calls, names: ResourceNames
) -> None:
    seen = _actions_on(sender_calls, names)
    assert {
        ("dynamodb:UpdateItem", "${DeliveriesTable.Arn}"),
        ("dynamodb:BatchGetItem", "${PostbacksTable.Arn}"),
        ("dynamodb:UpdateItem", "${PostbacksTable.Arn}"),
        ("sqs:ChangeMessageVisibility", "${DeliveriesQueue.Arn}"),
        ("sqs:ReceiveMessage", "${DeliveriesQueue.Arn}"),
        ("sqs:DeleteMessage", "${DeliveriesQueue.Arn}"),
        ("sqs:SendMessage", "${DeliveriesDeadLetterQueue.Arn}"),
    } <= seen
    postbacks_table = str(getattr(load_settings(), TABLES["PostbacksTable"]))
    health = [c for c in sender_calls if c.action == "dynamodb:UpdateItem" and c.resource == postbacks_table]
    assert health and all(c.attributes and "consecutive_failures" in c.attributes for c in health)


# The check fails when a policy loses what the code needs.


def _without(template: dict[str, Any], policy: str, sid: str) -> dict[str, Any]:
    changed = copy.deepcopy(template)
    statements = changed["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"]
    kept = [s for s in statements if s.get("Sid") != sid]
    assert len(kept) == len(statements) - 1, f"{policy} has no statement {sid}"
    changed["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"] = kept
    return changed


@pytest.mark.parametrize(
    ("function", "policy", "sid", "reported"),
    [
        ("evaluator", "EvaluatorPolicy", "ReadRulesVersion", "dynamodb:GetItem on ${PostbacksTable.Arn}"),
        ("evaluator", "EvaluatorPolicy", "ReadPostbacksOfAffiliate", "dynamodb:Query on ${PostbacksTable.Arn}/index/"),
        ("evaluator", "EvaluatorPolicy", "DeadLetterRecords", "sqs:SendMessage on ${EvaluatorDeadLetterQueue.Arn}"),
        ("evaluator", "EvaluatorPolicy", "ReadConversionsStream", "dynamodb:GetRecords on ${If:CreateConversions"),
        ("sender", "SenderPolicy", "CheckPostbackBeforeSending", "dynamodb:BatchGetItem on ${PostbacksTable.Arn}"),
        ("sender", "SenderPolicy", "RecordPostbackHealthOnly", "dynamodb:UpdateItem on ${PostbacksTable.Arn}"),
        ("sender", "SenderPolicy", "ConsumeDeliveries", "sqs:ChangeMessageVisibility on ${DeliveriesQueue.Arn}"),
        (
            "api",
            "ApiPolicy",
            "DeliveryLogReadAndTestFire",
            "dynamodb:Query on ${DeliveriesTable.Arn}/index/by_postback",
        ),
        (
            "api",
            "ApiPolicy",
            "PostbacksReadWrite",
            "dynamodb:DeleteItem on ${PostbacksTable.Arn} — needed for dynamodb:DeleteItem on postbacks (in Transact",
        ),
    ],
)
def test_a_removed_statement_is_reported(
    function: str, policy: str, sid: str, reported: str, recorded: dict[str, Calls], names: ResourceNames
) -> None:
    problems = uncovered(recorded[function], _without(load_template(), policy, sid), function, names)
    assert any(reported in problem for problem in problems), problems


def test_a_leading_keys_condition_that_leaves_out_the_rules_version_is_reported(
    evaluator_calls: Calls, names: ResourceNames
) -> None:
    template = copy.deepcopy(load_template())
    for statement in template["Resources"]["EvaluatorPolicy"]["Properties"]["PolicyDocument"]["Statement"]:
        if statement.get("Sid") == "ReadRulesVersion":
            statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"] = ["quota#*"]
    [problem] = uncovered(evaluator_calls, template, "evaluator", names)
    assert "dynamodb:GetItem on ${PostbacksTable.Arn}" in problem and RULES_VERSION_KEY in problem


def test_a_health_update_beyond_the_allowed_attributes_is_reported(sender_calls: Calls, names: ResourceNames) -> None:
    template = copy.deepcopy(load_template())
    for statement in template["Resources"]["SenderPolicy"]["Properties"]["PolicyDocument"]["Statement"]:
        if statement.get("Sid") == "RecordPostbackHealthOnly":
            attributes = statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
            attributes.remove("last_failure_reason")
    problems = uncovered(sender_calls, template, "sender", names)
    assert problems and all("dynamodb:UpdateItem on ${PostbacksTable.Arn}" in p for p in problems)
    assert any("last_failure_reason" in p for p in problems)


def test_a_policy_detached_from_the_role_is_reported(evaluator_calls: Calls, names: ResourceNames) -> None:
    template = copy.deepcopy(load_template())
    template["Resources"]["EvaluatorPolicy"]["Properties"]["Roles"] = [{"Ref": "OnDeliveryMessageRole"}]
    problems = uncovered(evaluator_calls, template, "evaluator", names)
    assert any("dynamodb:PutItem on ${DeliveriesTable.Arn}" in p for p in problems)


# The checker's own rules.


def test_transactions_batches_and_sqs_batch_operations_map_to_the_actions_iam_checks() -> None:
    transaction = calls_of(
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "postbacks", "Item": {"postback_id": {"S": "pb_1"}, "url": {"S": "u"}}}},
                {"Update": {"TableName": "postbacks", "Key": {"postback_id": {"S": "quota#a"}}}},
                {"Delete": {"TableName": "postback-deliveries", "Key": {"delivery_id": {"S": "dl_1"}}}},
                {"ConditionCheck": {"TableName": "postbacks", "Key": {"postback_id": {"S": "pb_2"}}}},
            ]
        },
    )
    assert [(c.action, c.resource) for c in transaction] == [
        ("dynamodb:PutItem", "postbacks"),
        ("dynamodb:UpdateItem", "postbacks"),
        ("dynamodb:DeleteItem", "postback-deliveries"),
        ("dynamodb:ConditionCheckItem", "postbacks"),
    ]
    assert transaction[0].attributes == frozenset({"postback_id", "url"})
    batch = calls_of(
        "dynamodb",
        "BatchGetItem",
        {"RequestItems": {"postbacks": {"Keys": [{"postback_id": {"S": "pb_1"}}]}, "conversions": {"Keys": []}}},
    )
    assert {(c.action, c.resource) for c in batch} == {
        ("dynamodb:BatchGetItem", "postbacks"),
        ("dynamodb:BatchGetItem", "conversions"),
    }
    [query] = calls_of("dynamodb", "Query", {"TableName": "postbacks", "IndexName": "by_affiliate"})
    assert (query.action, query.resource, query.index, query.keys) == (
        "dynamodb:Query",
        "postbacks",
        "by_affiliate",
        None,
    )
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/postback-deliveries"
    assert [c.action for c in calls_of("sqs", "SendMessageBatch", {"QueueUrl": url})] == ["sqs:SendMessage"]
    assert [c.action for c in calls_of("sqs", "DeleteMessageBatch", {"QueueUrl": url})] == ["sqs:DeleteMessage"]
    [lookup] = calls_of("sqs", "GetQueueUrl", {"QueueName": "postback-deliveries"})
    assert (lookup.action, lookup.resource) == ("sqs:GetQueueUrl", "postback-deliveries")


def test_a_call_on_a_table_outside_the_template_is_reported(names: ResourceNames) -> None:
    [call] = calls_of("dynamodb", "GetItem", {"TableName": "elsewhere", "Key": {"id": {"S": "x"}}})
    [problem] = uncovered([call], load_template(), "sender", names, with_event_source=False)
    assert "not a table of the template" in problem


def test_statements_are_read_from_the_policies_attached_to_each_role() -> None:
    template = load_template()
    own_policies = {"api": "ApiPolicy", "evaluator": "EvaluatorPolicy", "sender": "SenderPolicy"}
    for function, (_, role) in FUNCTIONS.items():
        statements: list[Statement] = role_statements(template, role)
        assert statements, function
        expected = {f"{role}/{role}Policy"} | ({own_policies[function]} if function in own_policies else set())
        if function in ("api", "authorizer"):
            expected.add("TokenSecretPolicy")
        # The X-Ray policy every function role shares.
        expected.add("TracingPolicy")
        assert {s.policy for s in statements} == expected
    # Deny statements are not modelled by the checker: the template has none.
    policies = [v for v in template["Resources"].values() if v.get("Type") == "AWS::IAM::Policy"]
    assert all(s["Effect"] == "Allow" for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"])


def test_table_names_map_to_the_template_tables_they_name() -> None:
    settings = load_settings()
    for logical_id, field in TABLES.items():
        table_name = load_template()["Resources"][logical_id]["Properties"]["TableName"]
        assert table_name == {"Fn::Sub": str(getattr(settings, field)) + "-${Stage}"}
