"""Unit tier: pure rules only. Network access is switched off so a test cannot reach AWS or HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


class NetworkDisabledInUnitTests(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise NetworkDisabledInUnitTests("unit tests may not open network connections")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield
