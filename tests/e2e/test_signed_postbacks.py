"""Signed postbacks and the fire delay over the wire (docs/contract.md §5, §6; docs/receiving.md).

Real GETs from the local stack's sender to loopback receivers, verified by the snippets of
docs/receiving.md (Python and Node always; PHP where it is installed).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests

from functions.core.signing import signature
from functions.settings import DEFAULT_JWT_SECRET
from local.receiver import Receiver
from tests.e2e.harness import HTTP_TIMEOUT, MAX_ATTEMPTS, Stack
from tests.support.receiving_snippets import php_available, run_snippet

pytestmark = pytest.mark.e2e

TIMEOUT = 30.0
LANGUAGES = ["python", "node", *(["php"] if php_available() else [])]


def secret_of(stack: Stack, postback_id: str) -> str:
    response = stack.api("GET", f"/postbacks/{postback_id}/signing-secret")
    assert response.status_code == 200, response.text
    secret: str = response.json()["secret"]
    return secret


def verified_by_every_snippet(targets: list[str], secrets: list[str]) -> dict[str, list[bool]]:
    """What each language's snippet answers for each target as received, on the receiver's own clock."""
    cases = [{"target": target, "secrets": secrets, "now": None, "param": "ts"} for target in targets]
    return {language: run_snippet(language, cases) for language in LANGUAGES}


def deliveries(stack: Stack, postback_id: str) -> list[dict[str, Any]]:
    response = stack.api("GET", f"/postbacks/{postback_id}/deliveries")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def wait_for_state(stack: Stack, postback_id: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        items = deliveries(stack, postback_id)
        if items and items[0]["state"] in states:
            return items[0]
        assert time.monotonic() < deadline, f"no delivery in {states}: {items}"
        time.sleep(0.2)


def test_a_signed_get_verifies_with_the_postbacks_secret(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    postback = stack.create_postback(affiliate, receiver.url("/signed?click={affS1}&ts={timestamp}&sig={signature}"))
    secret = secret_of(stack, postback["id"])
    stack.put_conversion(affiliate, "approved", aff_s1="a b&c/é")
    [hit] = receiver.wait_for(1, route="/signed", timeout=TIMEOUT)
    assert hit.query["click"] == "a b&c/é"
    assert abs(int(hit.query["ts"]) - hit.at) <= 5
    message, _, value = hit.path.rpartition("=")
    assert value == signature(secret, message + "=")
    assert verified_by_every_snippet([hit.path], [secret]) == {language: [True] for language in LANGUAGES}
    assert verified_by_every_snippet([hit.path], ["pbsec_" + "x" * 43]) == {language: [False] for language in LANGUAGES}
    delivery = wait_for_state(stack, postback["id"], {"delivered"})
    # The log shows what was sent without the per-attempt values: they are filled at each attempt.
    assert delivery["url"].endswith("&ts={timestamp}&sig={signature}")
    assert value not in json.dumps(delivery)


def test_rotation_switches_the_secret_of_the_next_gets(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    postback = stack.create_postback(
        affiliate, receiver.url("/rotated?c={conversionId}&ts={timestamp}&sig={signature}")
    )
    old = secret_of(stack, postback["id"])
    stack.put_conversion(affiliate, "approved")
    [before] = receiver.wait_for(1, route="/rotated", timeout=TIMEOUT)
    rotated = stack.api("POST", f"/postbacks/{postback['id']}/signing-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and secret_of(stack, postback["id"]) == new
    stack.put_conversion(affiliate, "approved")
    _, after = receiver.wait_for(2, route="/rotated", timeout=TIMEOUT)
    answers = verified_by_every_snippet([before.path, after.path], [old])
    assert answers == {language: [True, False] for language in LANGUAGES}
    answers = verified_by_every_snippet([before.path, after.path], [new])
    assert answers == {language: [False, True] for language in LANGUAGES}
    # The receiver's rotation advice: old and new accepted together during the switch.
    assert verified_by_every_snippet([before.path, after.path], [new, old]) == {
        language: [True, True] for language in LANGUAGES
    }


class _SlowFirstReceiver:
    """Answers its first GET with a 500 after 1.2 s, the rest with 200, so a retry starts in a later second."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.arrived = threading.Condition()
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with owner.arrived:
                    first = not owner.paths
                    owner.paths.append(self.path)
                    owner.arrived.notify_all()
                if first:
                    time.sleep(1.2)
                status = 500 if first else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def wait_for(self, count: int) -> list[str]:
        deadline = time.monotonic() + TIMEOUT
        with self.arrived:
            while len(self.paths) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{len(self.paths)} of {count} GETs arrived"
                self.arrived.wait(remaining)
            return list(self.paths)


@pytest.fixture
def slow_first() -> Iterator[_SlowFirstReceiver]:
    receiver = _SlowFirstReceiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_a_retry_carries_a_fresh_timestamp_and_signature(
    stack: Stack, slow_first: _SlowFirstReceiver, affiliate: str
) -> None:
    postback = stack.create_postback(affiliate, slow_first.url("/retry?d={deliveryId}&ts={timestamp}&sig={signature}"))
    secret = secret_of(stack, postback["id"])
    stack.put_conversion(affiliate, "approved")
    first, second = slow_first.wait_for(2)
    stamp = {path: int(path.split("&ts=")[1].split("&")[0]) for path in (first, second)}
    assert stamp[second] > stamp[first]  # the retry started more than a second after the first attempt
    assert first.split("&ts=")[0] == second.split("&ts=")[0]  # same delivery, same values
    assert first.rpartition("=")[2] != second.rpartition("=")[2]
    assert verified_by_every_snippet([first, second], [secret]) == {language: [True, True] for language in LANGUAGES}
    delivery = wait_for_state(stack, postback["id"], {"delivered"})
    attempts = delivery["attempts"]
    assert [attempt["status_code"] for attempt in attempts] == [500, 200]
    # Each attempt's `{timestamp}` is the second the attempt started (its `at`).
    at = [
        int(time.mktime(time.strptime(attempt["at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone) for attempt in attempts
    ]
    assert at == [stamp[first], stamp[second]]


def test_a_signature_that_is_not_at_the_end_is_refused(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    body = {
        "affiliate_id": affiliate,
        "conversion_types": ["sale"],
        "conversion_statuses": ["approved"],
        "url": receiver.url("/cb?sig={signature}&click={affS1}"),
    }
    response = stack.api("POST", "/postbacks", body)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert [error["field"] for error in response.json()["errors"]] == ["url"]


def test_another_affiliate_cannot_read_the_secret(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    postback = stack.create_postback(affiliate, receiver.url("/cb?ts={timestamp}&sig={signature}"))
    secret = secret_of(stack, postback["id"])
    now = int(time.time())
    claims = {"sub": "intruder", "role": "affiliate", "affiliate_id": "aff-other", "iat": now, "exp": now + 600}
    intruder = jwt.encode(claims, DEFAULT_JWT_SECRET, algorithm="HS256")
    owner = jwt.encode({**claims, "sub": "owner", "affiliate_id": affiliate}, DEFAULT_JWT_SECRET, algorithm="HS256")
    for method in ("GET", "POST"):
        response = requests.request(
            method,
            f"{stack.api_url}/postbacks/{postback['id']}/signing-secret",
            headers={"Authorization": f"Bearer {intruder}", "Content-Type": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 404, response.text
        assert "pbsec_" not in response.text
    mine = requests.get(
        f"{stack.api_url}/postbacks/{postback['id']}/signing-secret",
        headers={"Authorization": f"Bearer {owner}"},
        timeout=HTTP_TIMEOUT,
    )
    assert mine.status_code == 200 and mine.json()["secret"] == secret
    assert secret_of(stack, postback["id"]) == secret  # the refused rotation changed nothing


def test_the_secret_is_in_no_log_line_delivery_record_or_dead_letter(
    stack: Stack, receiver: Receiver, affiliate: str
) -> None:
    receiver.script("/down-signed", [], then=500)
    postback = stack.create_postback(
        affiliate, receiver.url("/down-signed?d={deliveryId}&ts={timestamp}&sig={signature}")
    )
    secret = secret_of(stack, postback["id"])
    rotated = stack.api("POST", f"/postbacks/{postback['id']}/signing-secret").json()["secret"]
    stack.api("POST", f"/postbacks/{postback['id']}/test")
    stack.put_conversion(affiliate, "approved")
    hits = receiver.wait_for(1 + MAX_ATTEMPTS, route="/down-signed", timeout=TIMEOUT)
    signatures = [hit.path.rpartition("=")[2] for hit in hits]
    delivery_id = hits[-1].query["d"]
    dlq = stack.queue_url("postback-deliveries-dlq")
    deadline = time.monotonic() + TIMEOUT
    dead: list[str] = []
    while not any(delivery_id in body for body in dead):
        assert time.monotonic() < deadline, f"{delivery_id} never reached the DLQ"
        messages = stack.sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1
        ).get("Messages", [])
        dead = [message["Body"] for message in messages]
    records = stack.dynamodb.scan(TableName="postback-deliveries")["Items"]
    ours = [json.dumps(item) for item in records if item["postback_id"]["S"] == postback["id"]]
    assert len(ours) == 2  # the test fire and the delivery
    assert all("{signature}" in record for record in ours)
    assert stack.log_path is not None and stack.output is not None
    logs = stack.log_path.read_text(encoding="utf-8") + "\n".join(stack.output)
    for text in (*ours, *dead, logs):
        for value in (secret, rotated, *signatures):
            assert value not in text


def test_delay_seconds_holds_the_first_attempt(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    postback = stack.create_postback(affiliate, receiver.url("/delayed?d={deliveryId}"), delay_seconds=3)
    assert postback["delay_seconds"] == 3
    written = time.time()
    stack.put_conversion(affiliate, "approved")
    [hit] = receiver.wait_for(1, route="/delayed", timeout=TIMEOUT)
    assert hit.at - written >= 3.0
    delivery = wait_for_state(stack, postback["id"], {"delivered"})
    assert [attempt["number"] for attempt in delivery["attempts"]] == [1]


def test_a_disable_during_the_delay_sends_nothing(stack: Stack, receiver: Receiver, affiliate: str) -> None:
    postback = stack.create_postback(affiliate, receiver.url("/held?d={deliveryId}"), delay_seconds=4)
    stack.put_conversion(affiliate, "approved")
    waiting = wait_for_state(stack, postback["id"], {"pending"})
    assert waiting["next_attempt_at"] is not None  # the record holds the delay too
    disabled = stack.api("PATCH", f"/postbacks/{postback['id']}", {"enabled": False})
    assert disabled.status_code == 200, disabled.text
    cancelled = wait_for_state(stack, postback["id"], {"cancelled"})
    assert cancelled["reason"] == "postback_disabled"
    time.sleep(5.0)  # past the delay: the queued message has come back and been settled
    assert receiver.requests("/held") == []
    assert deliveries(stack, postback["id"])[0]["state"] == "cancelled"
