"""`python -m local.conversions` against a moto server, as `make demo` uses it with `make run`.

A moto server in its own process, as `make run` starts one; the conversions table is built from
the template (`infrastructure.resources`); what the tool writes must come out of the table's
stream as records the evaluator's parser reads as the intended status changes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from functions.core.conversion import MalformedRecordError, parse_change
from functions.settings import load_settings
from infrastructure.resources import table_definition
from local.conversions import ConversionToolError, run
from local.moto_server import MotoProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TABLE = "conversions"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _client(service: str, port: int) -> Any:
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.dynamodb = _client("dynamodb", port)
        self.streams = _client("dynamodbstreams", port)
        self.stream_arn = ""
        self._iterator: str | None = None

    @property
    def environ(self) -> dict[str, str]:
        # The tool's own environment: only the port of the local stack (and the table name it reads).
        return {"MOTO_PORT": str(self.port), "POSTBACKS_CONVERSIONS_TABLE": TABLE}

    def item(self, conversion_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.dynamodb.get_item(
            TableName=TABLE, Key={"conversion_id": {"S": conversion_id}}
        ).get("Item")
        return found

    def new_records(self) -> list[dict[str, Any]]:
        """Stream records written since the last call."""
        if self._iterator is None:
            shard = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]
            self._iterator = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        answer = self.streams.get_records(ShardIterator=self._iterator)
        self._iterator = answer["NextShardIterator"]
        records: list[dict[str, Any]] = answer["Records"]
        return records


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # Its own process, as under `make run`: an in-process server would share moto's global state
    # (and its tables) with every other test of this process.
    port = _free_port()
    moto = MotoProcess("127.0.0.1", port)
    moto.start()
    try:
        running = Server(port)
        description = running.dynamodb.create_table(**table_definition("ConversionsTable", TABLE))
        running.stream_arn = description["TableDescription"]["LatestStreamArn"]
        yield running
    finally:
        moto.stop()


def test_put_writes_a_conversion_the_evaluator_reads_as_an_insert(server: Server) -> None:
    server.new_records()
    conversion_id = run(
        [
            "put",
            "--affiliate",
            "aff-1",
            "--offer",
            "offer-7",
            "--type",
            "sale",
            "--status",
            "pending",
            "--aff-s1",
            "click abc",
            "--payout",
            "12.5",
            "--currency",
            "EUR",
            "--set",
            'coupon_codes=["SPRING10"]',
            "--set",
            "cid=c-77",
        ],
        server.environ,
    )
    assert conversion_id.startswith("conv-")
    item = server.item(conversion_id)
    assert item is not None
    assert item["affiliate_id"] == {"S": "aff-1"} and item["status"] == {"S": "pending"}
    assert item["payout"] == {"N": "12.5"} and item["coupon_codes"] == {"L": [{"S": "SPRING10"}]}
    assert item["cid"] == {"S": "c-77"} and item["aff_s1"] == {"S": "click abc"}
    [record] = server.new_records()
    change = parse_change(record)
    assert change is not None
    assert (change.conversion.conversion_id, change.conversion.status, change.previous_status) == (
        conversion_id,
        "pending",
        None,
    )
    assert change.conversion.attributes["payout"] == 12.5 and change.conversion.attributes["currency"] == "EUR"


def test_approve_and_set_status_change_the_status_as_a_modify(server: Server) -> None:
    conversion_id = run(
        [
            "put",
            "--id",
            "conv-fixed-1",
            "--affiliate",
            "aff-2",
            "--offer",
            "o",
            "--type",
            "lead",
            "--status",
            "pending",
        ],
        environ=server.environ,
    )
    assert conversion_id == "conv-fixed-1"
    server.new_records()
    assert run(["approve", conversion_id], server.environ) == conversion_id
    assert run(["set-status", conversion_id, "REFUNDED"], server.environ) == conversion_id
    changes = [parse_change(record) for record in server.new_records()]
    assert [(c.previous_status, c.conversion.status) for c in changes if c is not None] == [
        ("pending", "approved"),
        ("approved", "refunded"),
    ]
    item = server.item(conversion_id)
    assert item is not None and item["status"] == {"S": "REFUNDED"} and item["affiliate_id"] == {"S": "aff-2"}
    assert item["status_changed_at"]["S"] >= item["created_at"]["S"]


def test_changing_an_unknown_conversion_is_an_error_and_creates_nothing(server: Server) -> None:
    with pytest.raises(ConversionToolError, match="no conversion conv-missing in table conversions"):
        run(["approve", "conv-missing"], server.environ)
    assert server.item("conv-missing") is None


def test_a_record_the_evaluator_would_refuse_is_not_written_unless_asked(server: Server) -> None:
    arguments = ["put", "--id", "conv-bad", "--affiliate", "a", "--offer", "o", "--type", "sale", "--status", "shipped"]
    with pytest.raises(ConversionToolError, match=r"would refuse this record \(unknown status 'shipped'\)"):
        run(arguments, server.environ)
    assert server.item("conv-bad") is None
    with pytest.raises(ConversionToolError, match="would refuse this status"):
        run(["set-status", "conv-fixed-1", "shipped"], server.environ)
    server.new_records()
    assert run([*arguments, "--allow-malformed"], server.environ) == "conv-bad"
    [record] = server.new_records()
    with pytest.raises(MalformedRecordError) as refused:
        parse_change(record)
    assert refused.value.reason == "unknown status 'shipped'"


def test_the_command_prints_the_conversion_id_and_fails_clearly(server: Server) -> None:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.port}",
        "POSTBACKS_CONVERSIONS_TABLE": TABLE,
    }
    command = [sys.executable, "-m", "local.conversions"]
    put = [*command, "put", "--affiliate", "a", "--offer", "o", "--type", "sale", "--status", "approved"]
    done = subprocess.run(put, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    conversion_id = done.stdout.strip()
    assert server.item(conversion_id) is not None
    failed = subprocess.run(
        [*command, "approve", "conv-nope"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "conversions: no conversion conv-nope" in failed.stderr
    assert load_settings().conversions_table == TABLE  # the default the local stack uses
