"""Write or change a conversion in the local stack's conversions table, as the conversion service does.

    python -m local.conversions put --affiliate aff-1 --offer offer-7 --type sale --status pending \\
        [--aff-s1 click-abc] [--payout 12.5 --currency EUR] [--set NAME=VALUE ...] [--id ID]
    python -m local.conversions approve ID
    python -m local.conversions set-status ID STATUS

Each command prints the conversion id on stdout (so `ID=$(python -m local.conversions put …)` works).
The record is the one docs/conversion-service.md describes (schema: docs/conversion-record.schema.json);
it is checked with the evaluator's own parser before it is written, so a typo does not silently land in
the evaluator DLQ — `--allow-malformed` writes it anyway, to watch what a malformed record does.

It talks to the local stack's moto server only: `AWS_ENDPOINT_URL` if set, else
`http://127.0.0.1:$MOTO_PORT` (5000), with the local stack's credentials (`testing`, whatever the
environment holds); an endpoint that is not loopback is refused.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from functions.core.conversion import MalformedRecordError, parse_image, parse_status
from functions.settings import load_settings
from local.config import ENVIRONMENT_DEFAULTS, REGION, LocalConfig, LocalConfigError

PlainValue = str | int | float | Decimal | bool | None | list[Any] | dict[str, Any]


class ConversionToolError(RuntimeError):
    """The command could not do what was asked; the message says why."""


def attribute_value(value: PlainValue) -> dict[str, Any]:
    """One plain JSON value as a DynamoDB attribute value: string → S, number → N, list → L, null → NULL."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float | Decimal):
        number = Decimal(str(value))
        if not number.is_finite():
            raise ConversionToolError(f"{value!r} is not a finite number")
        return {"N": str(number)}
    if isinstance(value, list):
        return {"L": [attribute_value(item) for item in value]}
    if isinstance(value, dict):
        return {"M": {str(key): attribute_value(item) for key, item in value.items()}}
    raise ConversionToolError(f"{type(value).__name__} has no DynamoDB attribute type")


def to_item(record: Mapping[str, PlainValue]) -> dict[str, dict[str, Any]]:
    """A conversion record in plain JSON (docs/conversion-record.schema.json) as a DynamoDB item."""
    return {str(name): attribute_value(value) for name, value in record.items()}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_record(
    *,
    affiliate_id: str,
    offer_id: str,
    conversion_type: str,
    status: str,
    conversion_id: str | None = None,
    extra: Mapping[str, PlainValue] | None = None,
    now: str | None = None,
) -> dict[str, PlainValue]:
    """The record the conversion service writes for a new conversion (plain JSON)."""
    stamp = now or now_iso()
    record: dict[str, PlainValue] = {
        "conversion_id": conversion_id or f"conv-{uuid.uuid4().hex[:12]}",
        "affiliate_id": affiliate_id,
        "offer_id": offer_id,
        "conversion_type": conversion_type,
        "status": status,
        "created_at": stamp,
        "status_changed_at": stamp,
    }
    record.update(extra or {})
    return record


def check_record(record: Mapping[str, PlainValue]) -> None:
    """`ConversionToolError` with the evaluator's reason when the evaluator would dead-letter the record."""
    try:
        parse_image(to_item(record))
    except MalformedRecordError as exc:
        raise ConversionToolError(
            f"the evaluator would refuse this record ({exc.reason}); --allow-malformed writes it anyway"
        ) from exc


def endpoint_url(environ: Mapping[str, str]) -> str:
    """The local stack's moto endpoint; refuses anything but loopback."""
    url = (environ.get("AWS_ENDPOINT_URL") or "").strip() or LocalConfig.from_environ(environ).moto_url
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConversionToolError(f"{url} is not a loopback endpoint: this tool only writes to the local stack")
    return url


def dynamodb_client(environ: Mapping[str, str]) -> Any:
    """A client of the local stack's DynamoDB, with the local stack's credentials (never the caller's)."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url(environ),
        region_name=(environ.get("AWS_DEFAULT_REGION") or "").strip() or REGION,
        aws_access_key_id=ENVIRONMENT_DEFAULTS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ENVIRONMENT_DEFAULTS["AWS_SECRET_ACCESS_KEY"],
    )


def put_conversion(dynamodb: Any, table: str, record: Mapping[str, PlainValue]) -> str:
    """Write the whole record (an INSERT, or a MODIFY of an existing conversion); returns its id."""
    dynamodb.put_item(TableName=table, Item=to_item(record))
    return str(record["conversion_id"])


def set_status(dynamodb: Any, table: str, conversion_id: str, status: str, *, now: str | None = None) -> str:
    """Change the status of an existing conversion (a MODIFY on the stream); returns its id."""
    try:
        dynamodb.update_item(
            TableName=table,
            Key={"conversion_id": {"S": conversion_id}},
            UpdateExpression="SET #status = :status, status_changed_at = :at",
            ConditionExpression="attribute_exists(conversion_id)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":status": {"S": status}, ":at": {"S": now or now_iso()}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise ConversionToolError(f"no conversion {conversion_id} in table {table}") from exc
        raise
    return conversion_id


def _assignment(text: str) -> tuple[str, PlainValue]:
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value: PlainValue = json.loads(raw, parse_float=Decimal)
    except json.JSONDecodeError:
        value = raw  # a bare word is a string
    return name.strip(), value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local.conversions", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("put", help="write a conversion (a new one, or replace one with --id)")
    put.add_argument("--affiliate", required=True, help="affiliate_id")
    put.add_argument("--offer", required=True, help="offer_id")
    put.add_argument("--type", required=True, dest="conversion_type", help="conversion_type, e.g. sale")
    put.add_argument("--status", required=True, help="status, e.g. pending")
    put.add_argument("--id", dest="conversion_id", help="conversion_id (default: a new conv-… id)")
    for index in range(1, 6):
        put.add_argument(f"--aff-s{index}", dest=f"aff_s{index}", metavar="VALUE", help=f"aff_s{index}")
    put.add_argument("--payout", type=Decimal, help="payout (a number)")
    put.add_argument("--revenue", type=Decimal, help="revenue (a number)")
    put.add_argument("--currency", help="currency, e.g. EUR")
    put.add_argument(
        "--set",
        dest="assignments",
        action="append",
        type=_assignment,
        default=[],
        metavar="NAME=VALUE",
        help='any other attribute; VALUE is JSON (12.5, ["A1"], null) or else a string',
    )
    put.add_argument("--allow-malformed", action="store_true", help="write it even if the evaluator refuses it")
    approve = commands.add_parser("approve", help="set a conversion's status to approved")
    approve.add_argument("conversion_id", metavar="ID")
    change = commands.add_parser("set-status", help="set a conversion's status")
    change.add_argument("conversion_id", metavar="ID")
    change.add_argument("status", metavar="STATUS")
    change.add_argument("--allow-malformed", action="store_true", help="write a status the evaluator refuses")
    return parser


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Run one command; returns the conversion id (`ConversionToolError` on failure)."""
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    table = load_settings(env).conversions_table
    if args.command == "put":
        extra: dict[str, PlainValue] = {
            name: value
            for name in (*(f"aff_s{i}" for i in range(1, 6)), "payout", "revenue", "currency")
            if (value := getattr(args, name)) is not None
        }
        extra.update(dict(args.assignments))
        record = new_record(
            affiliate_id=args.affiliate,
            offer_id=args.offer,
            conversion_type=args.conversion_type,
            status=args.status,
            conversion_id=args.conversion_id,
            extra=extra,
        )
        if not args.allow_malformed:
            check_record(record)
        return put_conversion(dynamodb_client(env), table, record)
    status = "approved" if args.command == "approve" else args.status
    if not getattr(args, "allow_malformed", False):
        try:
            parse_status(status)
        except MalformedRecordError as exc:
            raise ConversionToolError(f"the evaluator would refuse this status ({exc.reason})") from exc
    return set_status(dynamodb_client(env), table, args.conversion_id, status)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        print(run(argv))
    except (ConversionToolError, LocalConfigError) as exc:
        print(f"conversions: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        print(
            f"conversions: the local stack's DynamoDB refused or did not answer ({exc}); is `make run` running?",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
