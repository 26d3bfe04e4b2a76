"""Structured log lines (one JSON object per line) that security review and on-call rely on.

- `log_effective_policy(settings)`: once per cold start, the egress policy the function runs
  with (local mode, allowed private ranges, ports), so a weakened guard shows in the logs.
- `log_postback_action(...)`: every change to a postback (create, update, delete), every
  test fire and every read or rotation of its signing secret (never the secret), with the
  caller's `sub` and role, the postback and its affiliate. Never the URL: it may carry an
  affiliate's credentials for its tracker.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from functions.core.metadata import METADATA_NETWORKS
from functions.settings import Settings

logger = logging.getLogger("postbacks.audit")
# Lambda's root logger drops INFO; these lines are always wanted.
logger.setLevel(logging.INFO)

ACTIONS = frozenset({"create", "update", "delete", "test_fire", "read_signing_secret", "rotate_signing_secret"})


def _emit(record: dict[str, Any]) -> None:
    logger.info(json.dumps(record, sort_keys=True, separators=(",", ":")))


def log_effective_policy(settings: Settings) -> None:
    _emit(
        {
            "event": "egress_policy",
            "stage": settings.stage,
            "local_mode": settings.local_mode,
            "allow_private_targets": [str(network) for network in settings.allow_private_targets],
            "allowed_ports": sorted(settings.allowed_ports),
            "never_allowed": [str(network) for network in METADATA_NETWORKS],
        }
    )


def log_postback_action(*, action: str, subject: str, role: str, postback_id: str, affiliate_id: str) -> None:
    if action not in ACTIONS:
        raise ValueError(f"unknown audited action {action!r}")
    _emit(
        {
            "event": "postback_audit",
            "action": action,
            "sub": subject,
            "role": role,
            "postback_id": postback_id,
            "affiliate_id": affiliate_id,
        }
    )
