"""The host pause over the wire (docs/contract.md §6): a tracker that fails every request is paused.

The e2e stack runs with the default pause settings (5 consecutive failures, 60 s), the fast retry
schedule (base 0.05 s) and three attempts per delivery: without the pause, 20 deliveries to a
tracker that always answers 500 would cost 60 GETs and end dead-lettered within seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from local.receiver import Receiver
from tests.e2e.harness import MAX_ATTEMPTS, ROOT, Stack

pytestmark = pytest.mark.e2e

TIMEOUT = 60.0
DELIVERIES = 20


def _log(stack: Stack, postback_id: str) -> list[dict[str, Any]]:
    response = stack.api("GET", f"/postbacks/{postback_id}/deliveries?limit=100")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_host_that_fails_every_request_is_paused_and_its_deliveries_wait(
    stack: Stack, receiver: Receiver, affiliate: str
) -> None:
    receiver.script("/paused", [], then=500)
    postback = stack.create_postback(affiliate, receiver.url("/paused?d={deliveryId}"))
    for _ in range(DELIVERIES):
        stack.put_conversion(affiliate, "approved")

    deadline = time.monotonic() + TIMEOUT
    while True:
        items = _log(stack, postback["id"])
        settled = len(items) == DELIVERIES and all(item["host_pause_waits"] >= 1 for item in items)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert settled, [(item["state"], len(item["attempts"]), item["host_pause_waits"]) for item in items]
    time.sleep(1.0)  # anything still on its way would show now

    items = _log(stack, postback["id"])
    gets = len(receiver.requests("/paused"))
    assert gets <= DELIVERIES, f"{gets} GETs for {DELIVERIES} deliveries (x{MAX_ATTEMPTS} attempts without a pause)"
    assert not [item for item in items if item["state"] == "dead_lettered"]
    assert all(item["state"] in ("pending", "retrying") for item in items)
    assert sum(len(item["attempts"]) for item in items) == gets  # a wait spends no attempt

    shown = stack.api("GET", f"/postbacks/{postback['id']}").json()
    assert shown["host_paused_until"] is not None

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POSTBACKS_"))}
    env.update(
        AWS_ENDPOINT_URL=stack.moto_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    listed = subprocess.run(
        [sys.executable, "-m", "functions.cli", "hosts", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    hosts = {row["host"]: row for row in json.loads(listed.stdout)["hosts"]}
    row = hosts[receiver.base_url.removeprefix("http://")]
    assert row["status"] == "paused" and row["paused_until"] == shown["host_paused_until"]
