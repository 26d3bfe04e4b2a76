"""Where the on-call tools find the stage: a CloudFormation stack's outputs (`--stack NAME`), and the
local stack's credentials when they point at it (docs/contract.md §8).

`--stack` reads the stack's outputs once (DescribeStacks) and uses their table and queue names
instead of the `POSTBACKS_*` variables; the stage and the conversions stream come from it too.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from functions.settings import Settings, SettingsError

# Output of the template (infrastructure/template.json) -> the setting it gives.
SETTING_OUTPUTS: Mapping[str, str] = {
    "PostbacksTableName": "postbacks_table",
    "DeliveriesTableName": "deliveries_table",
    "DeliveriesQueueUrl": "deliveries_queue",
    "DeliveriesDeadLetterQueueUrl": "deliveries_dlq",
    "EvaluatorDeadLetterQueueUrl": "evaluator_dlq",
    "Stage": "stage",
}
STREAM_OUTPUT = "ConversionsStreamArn"
# What the local stack's moto server accepts (docs/contract.md §8).
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class StackError(SettingsError):
    """The stack cannot be read, or lacks an output the tools need."""


@dataclass(frozen=True)
class StackResources:
    name: str
    settings: Settings
    conversions_stream_arn: str | None


def read_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """The stack's outputs (one DescribeStacks); `StackError` when there is no such stack."""
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        raise StackError(f"stack {stack_name!r}: {message}") from error
    if not stacks:
        raise StackError(f"stack {stack_name!r} does not exist")
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def stack_resources(stack_name: str, outputs: Mapping[str, str], base: Settings) -> StackResources:
    """`base` with the stack's names; `StackError` naming every output it lacks."""
    missing = sorted(key for key in SETTING_OUTPUTS if not outputs.get(key))
    if missing:
        raise StackError(
            f"stack {stack_name!r} has no output {', '.join(missing)}: is it a postbacks stack "
            "(infrastructure/template.json)?"
        )
    names: dict[str, Any] = {field: outputs[key] for key, field in SETTING_OUTPUTS.items()}
    return StackResources(stack_name, replace(base, **names), outputs.get(STREAM_OUTPUT) or None)


def is_loopback_endpoint(endpoint_url: str | None) -> bool:
    if not endpoint_url:
        return False
    host = urlsplit(endpoint_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credentials_configured() -> bool:
    """Whether botocore finds credentials without asking the network (environment, profiles, files).

    The instance-metadata and container providers are left out: they would send a request off the
    machine.
    """
    import botocore.session

    session = botocore.session.get_session()
    resolver = session.get_component("credential_provider")
    for name in ("iam-role", "container-role"):
        if resolver.get_provider(name) is not None:
            resolver.remove(name)
    return resolver.load_credentials() is not None


def use_local_credentials(settings: Settings, environ: MutableMapping[str, str] | None = None) -> bool:
    """Against a loopback endpoint with no credentials set, use the local stack's (`testing`); True if it did."""
    if not is_loopback_endpoint(settings.aws_endpoint_url) or credentials_configured():
        return False
    target = os.environ if environ is None else environ
    for name, value in LOCAL_CREDENTIALS.items():
        target[name] = value
    return True
