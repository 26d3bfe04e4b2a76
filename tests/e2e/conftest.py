"""The local stack as a subprocess (`python -m local.stack`), shared by the end-to-end tests.

Fast timing: retry base 0.05 s, no rules cache, three attempts before dead-lettering. Each test
uses its own affiliates and receiver, so tests do not see each other's GETs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from local.receiver import Receiver
from tests.e2e.harness import READY_TIMEOUT, Stack, aws_client, free_port, stack_environment, start_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    moto_port, api_port, web_port = free_port(), free_port(), free_port()
    log_path = tmp_path_factory.mktemp("stack") / "stack.log"
    process = start_stack(stack_environment(moto_port, api_port, web_port), log_path)
    try:
        process.wait_for_line("ready", READY_TIMEOUT)
        token_line = next(line for line in process.lines if line.startswith("Admin token"))
        token = token_line.split(":", 1)[1].strip()
        moto_url = f"http://127.0.0.1:{moto_port}"
        yield Stack(
            api_url=f"http://127.0.0.1:{api_port}",
            moto_url=moto_url,
            token=token,
            dynamodb=aws_client("dynamodb", moto_url),
            sqs=aws_client("sqs", moto_url),
            log_path=log_path,
            output=process.lines,
            web_url=f"http://127.0.0.1:{web_port}",
        )
    finally:
        process.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def affiliate() -> str:
    return f"aff-{uuid.uuid4().hex[:10]}"
