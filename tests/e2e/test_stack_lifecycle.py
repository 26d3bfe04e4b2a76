"""`python -m local.stack` starts, says ready, refuses busy ports and stops cleanly on a signal."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import free_port, stack_environment, start_stack

pytestmark = pytest.mark.e2e


def test_stack_prints_a_token_and_ready_then_exits_zero_on_ctrl_c(tmp_path: Path) -> None:
    moto_port, api_port, web_port = free_port(), free_port(), free_port()
    process = start_stack(stack_environment(moto_port, api_port, web_port), tmp_path / "stack.log")
    try:
        process.wait_for_line("ready", 90)
        assert any(line.startswith("Admin token") for line in process.lines)
        token = next(line for line in process.lines if line.startswith("Admin token")).split(":", 1)[1].strip()
        web_line = f"Web: http://127.0.0.1:{web_port}/#token={token}"
        assert web_line in process.lines
        assert process.lines.index(web_line) < process.lines.index("ready")
        config = requests.get(f"http://127.0.0.1:{web_port}/config.json", timeout=5).json()
        assert config == {"apiBaseUrl": f"http://127.0.0.1:{api_port}"}
        preflight = requests.options(
            f"http://127.0.0.1:{api_port}/postbacks",
            headers={"Origin": f"http://localhost:{web_port}", "Access-Control-Request-Method": "POST"},
            timeout=5,
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == f"http://localhost:{web_port}"
        assert requests.get(f"http://127.0.0.1:{api_port}/health", timeout=5).json() == {"status": "ok"}
        log = (tmp_path / "stack.log").read_text()
        assert "private targets are allowed" in log
    finally:
        code = process.stop(signal.SIGINT)
    assert code == 0
    for port in (api_port, moto_port, web_port):  # nothing listens any more
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))


def test_stack_refuses_to_start_on_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = start_stack(stack_environment(port, free_port()), tmp_path / "stack.log")
        code = process.process.wait(60)
    assert code != 0
    assert "already in use" in (tmp_path / "stack.log").read_text()
