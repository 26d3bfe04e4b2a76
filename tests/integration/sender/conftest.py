"""Fixtures of the sender's integration tests: moto in-process, real HTTP receivers on 127.0.0.1.

`receiver` is a threaded HTTP server that answers with a scripted sequence of responses (the last
one repeats) and records every request it got. `stack` creates the tables and queues from the
infrastructure template inside `mock_aws`, wires the real sender through the composition root from
test settings (loopback allowed, tiny retry base, short timeouts), and drives the real
`on_delivery_message` handler with Lambda-shaped events built from messages actually received from
the moto queue. Like Lambda, it deletes the messages the handler reports as successes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from functions import bootstrap
from functions.core.messages import delivery_message
from functions.core.model import DeliveryState, delivery_id_for, format_timestamp
from functions.sender.handler import on_delivery_message
from functions.settings import Settings, parse_private_targets
from functions.storage.models import DeliveryModel, PostbackModel
from functions.storage.postbacks import new_item
from infrastructure.resources import create_all
from tests.support.aws_calls import AwsCallLog
from tests.support.conversions import postback

REGION = "us-east-1"


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]


class Receiver:
    """A tracker on loopback answering with `script` in order (the last reply repeats)."""

    def __init__(self, script: list[Reply] | None = None) -> None:
        self.script = list(script or [Reply()])
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = receiver._next(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}))
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _next(self, hit: Hit) -> Reply:
        with self._lock:
            self.hits.append(hit)
            index = min(len(self.hits) - 1, len(self.script) - 1)
            return self.script[index]

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/cb") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.stop()


@pytest.fixture
def make_receiver(receivers: list[Receiver]):  # type: ignore[no-untyped-def]
    def make(*script: Reply) -> Receiver:
        receiver = Receiver(list(script) or None).start()
        receivers.append(receiver)
        return receiver

    return make


def sender_settings(**overrides: Any) -> Settings:
    base = Settings(
        stage="test",
        allow_private_targets=parse_private_targets("1"),
        retry_base_seconds=0.01,
        max_attempts=3,
        connect_timeout_seconds=0.5,
        read_timeout_seconds=0.5,
        total_timeout_seconds=1.0,
        lease_seconds=30.0,
    )
    return replace(base, **overrides)


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.visibility_requests: list[int] = []
        self.use(settings)
        resources = create_all(boto3.client("dynamodb", region_name=REGION), self.sqs, settings, conversions=False)
        self.queue_url = resources.queue_urls["DeliveriesQueue"]
        self.dlq_url = resources.queue_urls["DeliveriesDeadLetterQueue"]

    def _capture(self, params: dict[str, Any], **_: Any) -> None:
        self.visibility_requests.append(int(params["VisibilityTimeout"]))

    def use(self, settings: Settings) -> None:
        """Wire the real sender from `settings` (the composition root, built on the next invocation).

        `sqs` is the sender's own SQS client (the harness plays Lambda's part with it too), so the
        visibility changes it requests are captured.
        """
        self.settings = settings
        bootstrap.reset(settings)
        self.sqs = bootstrap.sqs_client()
        self.sqs.meta.events.register("provide-client-params.sqs.ChangeMessageVisibility", self._capture)

    # Seeding.

    def postback(self, postback_id: str = "pb_1", *, url: str, enabled: bool = True, affiliate: str = "aff-1") -> None:
        now = format_timestamp(datetime.now(UTC))
        new_item(postback(postback_id, affiliate, url=url, enabled=enabled, updated_at=now)).save()

    def delivery(
        self,
        url: str,
        *,
        postback_id: str = "pb_1",
        conversion_id: str = "c-1",
        state: DeliveryState = DeliveryState.PENDING,
        next_attempt_at: datetime | None = None,
        send: bool = True,
    ) -> str:
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
            state=state.value,
            attempts=[],
            cycle_attempts=0,
            next_attempt_at=None if next_attempt_at is None else format_timestamp(next_attempt_at),
            created_at=format_timestamp(now),
            updated_at=format_timestamp(now),
            expires_at=int((now + timedelta(days=90)).timestamp()),
        ).save()
        if send:
            self.send(delivery_message(delivery_id))
        return delivery_id

    def send(self, body: Any) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=text)

    # Lambda's part.

    def receive(self, max_messages: int = 10) -> dict[str, Any]:
        """A Lambda SQS event from the messages that are visible now."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages, AttributeNames=["All"]
        ).get("Messages", [])
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

    def invoke(self, event: dict[str, Any]) -> list[str]:
        """Call the handler as Lambda does; delete the successes; the failed message IDs."""
        response = on_delivery_message(event, None)
        failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
        for record in event["Records"]:
            if record["messageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])
        return failed

    def run_once(self) -> list[str]:
        event = self.receive()
        assert event["Records"], "no visible message on the deliveries queue"
        return self.invoke(event)

    def make_visible(self, event: dict[str, Any], message_ids: list[str] | None = None) -> None:
        """Stand-in for the wait: the messages return now (the delivery is due within the tolerance)."""
        for record in event["Records"]:
            if message_ids is not None and record["messageId"] not in message_ids:
                continue
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )

    def run_until_settled(self, max_rounds: int = 10) -> int:
        """Invoke, make retried messages visible again, repeat until the queue is empty; rounds run."""
        for rounds in range(1, max_rounds + 1):
            event = self.receive()
            if not event["Records"]:
                return rounds - 1
            self.make_visible(event, self.invoke(event))
        raise AssertionError("the queue did not settle")

    # Inspection.

    def queue_depth(self, url: str | None = None) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def dead_letters(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        return [json.loads(m["Body"]) | {"_attributes": m.get("MessageAttributes", {})} for m in messages]

    def record(self, delivery_id: str) -> DeliveryModel:
        return DeliveryModel.get(delivery_id, consistent_read=True)

    def postback_item(self, postback_id: str = "pb_1") -> PostbackModel:
        return PostbackModel.get(postback_id, consistent_read=True)


@pytest.fixture
def atomic_moto_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's conditional writes atomic, as DynamoDB's are.

    moto evaluates a ConditionExpression and applies the update without a lock, so two threads can
    both pass the same condition; DynamoDB serialises writes to an item. The lease relies on that.
    """
    lock = threading.RLock()
    for name in ("update_item", "put_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def serialised(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, serialised)


@pytest.fixture
def stack(atomic_moto_writes: None) -> Iterator[Stack]:
    with mock_aws():
        yield Stack(sender_settings())
    bootstrap.reset()


AwsCall = tuple[str, str]  # (operation, table or queue), e.g. ("UpdateItem", "postback-deliveries")


@pytest.fixture
def aws_calls(stack: Stack) -> Iterator[Callable[[], Counter[AwsCall]]]:
    """Count the AWS calls of the sender's clients (botocore hooks); each snapshot clears the count.

    The harness's own DeleteMessage calls (Lambda's part: deleting the successes) are left out.
    """
    log = AwsCallLog()

    def snapshot() -> Counter[AwsCall]:
        return Counter((r.operation, r.target) for r in log.clear() if r.operation != "DeleteMessage")

    with log.watching(stack.sqs):
        yield snapshot


@pytest.fixture
def after_first_lease(stack: Stack) -> Iterator[Callable[[Callable[[], None]], None]]:
    """Run an action once, right after the first UpdateItem on the deliveries table (a lease) returns."""
    client = DeliveryModel._get_connection().connection.client
    pending: list[Callable[[], None]] = []
    lock = threading.Lock()

    def hook(**_: Any) -> None:
        with lock:
            action = pending.pop() if pending else None
        if action is not None:
            action()

    client.meta.events.register("after-call.dynamodb.UpdateItem", hook)
    yield pending.append
    client.meta.events.unregister("after-call.dynamodb.UpdateItem", hook)
