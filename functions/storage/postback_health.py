"""A postback's delivery health, kept on its item by the sender.

`last_success_at` and `consecutive_failures` (reset on success), `last_failure_reason` and
`last_failure_at` (on a terminal or dead-lettered delivery). The update touches those attributes
only: it does not bump the optimistic-locking `version` (an edit by the affiliate must not fail
with 412 because a delivery finished meanwhile), and it never creates an item: a postback deleted
meanwhile stays deleted (`attribute_exists(postback_id)`).

A success is written only when it changes something (`success_changes_health`): the postback has
failures to reset, no `last_success_at` yet, or one older than `SUCCESS_REFRESH_SECONDS`. So
`last_success_at` is exact to within a minute, and a busy postback costs one health write a minute
instead of one per delivery (all on the same key). Failures are always written.
"""

from __future__ import annotations

from datetime import datetime

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from functions.core.model import Postback, format_timestamp, parse_timestamp
from functions.storage.errors import response_code
from functions.storage.models import PostbackModel

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
# How stale `last_success_at` may get on a postback that keeps succeeding.
SUCCESS_REFRESH_SECONDS = 60.0


class PostbackHealthError(Exception):
    """The health of a postback could not be written (throttling, service error)."""


def success_changes_health(postback: Postback, at: datetime) -> bool:
    """Whether a success at `at` is worth a write, given the postback as read before the GET."""
    if postback.consecutive_failures > 0 or not postback.last_success_at:
        return True
    try:
        last = parse_timestamp(postback.last_success_at)
    except ValueError:
        return True
    return (at - last).total_seconds() >= SUCCESS_REFRESH_SECONDS


class PostbackHealthRepository:
    def __init__(self, model: type[PostbackModel] = PostbackModel) -> None:
        self._model = model

    def record_success(self, postback_id: str, at: datetime) -> bool:
        """False when the postback no longer exists."""
        model = self._model
        return self._update(
            postback_id,
            [model.last_success_at.set(format_timestamp(at)), model.consecutive_failures.set(0)],
        )

    def record_failure(self, postback_id: str, reason: str, at: datetime) -> bool:
        """False when the postback no longer exists."""
        model = self._model
        return self._update(
            postback_id,
            [
                model.consecutive_failures.add(1),
                model.last_failure_reason.set(reason),
                model.last_failure_at.set(format_timestamp(at)),
            ],
        )

    def _update(self, postback_id: str, actions: list[Action]) -> bool:
        # The table connection, not `Model.update`: that one always increments `version`.
        connection = self._model._get_connection()
        try:
            connection.update_item(postback_id, actions=actions, condition=self._model.postback_id.exists())
        except UpdateError as exc:
            if response_code(exc) == CONDITIONAL_CHECK_FAILED:
                return False
            raise PostbackHealthError(f"health of postback {postback_id} not written") from exc
        return True
