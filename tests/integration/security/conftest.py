"""Fixtures of the security tests: the deployed app through Chalice's test client on moto, and a
tracker on loopback for test fires (local mode lets loopback through)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws

from functions import bootstrap
from functions.storage.models import DeliveryModel, PostbackModel
from tests.support.api_client import Api


class _Tracker(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="session")
def tracker() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tracker)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    from app import app

    monkeypatch.setenv("POSTBACKS_ALLOW_PRIVATE_TARGETS", "1")
    monkeypatch.setenv("POSTBACKS_TOTAL_TIMEOUT_SECONDS", "1")
    with mock_aws():
        PostbackModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        DeliveryModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        bootstrap.reset()
        with Client(app) as test_client:
            yield Api(test_client)
        bootstrap.reset()
