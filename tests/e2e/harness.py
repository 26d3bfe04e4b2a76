"""Helpers of the end-to-end tests: the local stack as a subprocess, an API client, conversion writes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 90.0
HTTP_TIMEOUT = (3.0, 30.0)
MAX_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stack_environment(moto_port: int, api_port: int, web_port: int | None = None, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POSTBACKS_"))}
    env.update(
        {
            "MOTO_PORT": str(moto_port),
            "API_PORT": str(api_port),
            "WEB_PORT": str(web_port if web_port is not None else free_port()),
            "POSTBACKS_STAGE": "local",
            "POSTBACKS_LOCAL_MODE": "1",
            "POSTBACKS_ALLOW_PRIVATE_TARGETS": "1",
            "POSTBACKS_RETRY_BASE_SECONDS": "0.05",
            "POSTBACKS_RULES_CACHE_SECONDS": "0",
            "POSTBACKS_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


@dataclass
class StackProcess:
    process: subprocess.Popen[str]
    lines: list[str]
    log_path: Path

    def wait_for_line(self, wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted in self.lines:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"local stack printed no {wanted!r} (exit {self.process.poll()}):\n{self.log_path.read_text()[-4000:]}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise


def start_stack(env: dict[str, str], log_path: Path) -> StackProcess:
    log = open(log_path, "w")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "local.stack"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    lines: list[str] = []

    def _read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
        log.close()

    threading.Thread(target=_read, daemon=True).start()
    return StackProcess(process, lines, log_path)


@dataclass
class Stack:
    api_url: str
    moto_url: str
    token: str
    dynamodb: Any
    sqs: Any
    # Where the stack's stderr (its log) goes, and the lines it printed on stdout.
    log_path: Path | None = None
    output: list[str] | None = None
    web_url: str = ""

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, **headers: str) -> requests.Response:
        return requests.request(
            method,
            self.api_url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}", **headers},
            timeout=HTTP_TIMEOUT,
        )

    def create_postback(self, affiliate_id: str, url: str, **fields: Any) -> dict[str, Any]:
        body = {
            "affiliate_id": affiliate_id,
            "scope": "global",
            "conversion_types": ["sale"],
            "conversion_statuses": ["approved"],
            "url": url,
            **fields,
        }
        response = self.api("POST", "/postbacks", body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def put_conversion(
        self,
        affiliate_id: str,
        status: str,
        *,
        conversion_id: str | None = None,
        offer_id: str = "offer-1",
        conversion_type: str = "sale",
        **extra: str,
    ) -> str:
        conversion_id = conversion_id or f"conv-{uuid.uuid4().hex[:12]}"
        item = {
            "conversion_id": {"S": conversion_id},
            "affiliate_id": {"S": affiliate_id},
            "offer_id": {"S": offer_id},
            "conversion_type": {"S": conversion_type},
            "status": {"S": status},
            **{name: {"S": value} for name, value in extra.items()},
        }
        self.dynamodb.put_item(TableName="conversions", Item=item)
        return conversion_id

    def set_status(self, conversion_id: str, status: str) -> None:
        self.dynamodb.update_item(
            TableName="conversions",
            Key={"conversion_id": {"S": conversion_id}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}},
        )

    def queue_url(self, name: str) -> str:
        return str(self.sqs.get_queue_url(QueueName=name)["QueueUrl"])


def aws_client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
