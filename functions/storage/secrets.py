"""Secrets Manager: the API's token signing key, read once per cold start under IAM.

Only the API and the authorizer call this (their roles may `secretsmanager:GetSecretValue` on
that one secret ARN, infrastructure/template.json); the value never passes through a command
line, an environment variable or a log.
"""

from __future__ import annotations

from typing import Any

from functions.settings import REGION


class SecretUnavailable(RuntimeError):
    """The secret could not be read or has no string value (the message never holds the value)."""


def read_secret_string(secret_arn: str, client: Any) -> str:
    """The current `SecretString` of `secret_arn`, read with a Secrets Manager client of its region."""
    try:
        answer = client.get_secret_value(SecretId=secret_arn)
    except Exception as exc:  # botocore's errors vary by cause; the message names the secret only
        raise SecretUnavailable(f"cannot read the secret {secret_arn}: {type(exc).__name__}") from exc
    value = answer.get("SecretString")
    if not isinstance(value, str) or not value:
        raise SecretUnavailable(f"the secret {secret_arn} has no string value")
    return value


def region_of(arn: str) -> str:
    """The region an ARN names (arn:partition:service:region:account:...), else the default."""
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else REGION
