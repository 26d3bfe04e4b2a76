"""`TestFireLimits`: the per-postback test-fire counter (docs/contract.md §5) in the postbacks table.

One item per postback that has been test-fired: `postback_id` = `testfires#<postback id>`, with the
current window's start (`fire_window`, epoch seconds) and the fires counted in it (`fire_count`).
`take` is one conditional UpdateItem in the common case: add one if the item is in the current
window and under the limit; otherwise start the window (conditional on the stored one being
older). Both refused means the limit is reached. The items carry no index attributes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from functions.core.fire_window import fire_window
from functions.storage.errors import response_code
from functions.storage.models import PostbackModel

PREFIX = "testfires#"
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"


class TestFireLimits:
    __test__ = False  # not a pytest class

    def __init__(
        self, limit: int, model: type[PostbackModel] = PostbackModel, clock: Callable[[], float] = time.time
    ) -> None:
        self._limit = limit
        self._model = model
        self._clock = clock

    def take(self, postback_id: str) -> int | None:
        """Count one test fire of the postback; None if allowed, else the seconds until the next window."""
        window = fire_window(self._clock())
        model = self._model
        counted = (model.fire_window == window.start) & (model.fire_count < self._limit)
        if self._update(postback_id, [model.fire_count.add(1)], counted):
            return None
        older = model.fire_window.does_not_exist() | (model.fire_window < window.start)
        if self._update(postback_id, [model.fire_window.set(window.start), model.fire_count.set(1)], older):
            return None
        # Another request may have started this window between the two writes: count in it once more.
        if self._update(postback_id, [model.fire_count.add(1)], counted):
            return None
        return window.retry_after

    def _update(self, postback_id: str, actions: list[Action], condition: Condition) -> bool:
        try:
            self._model._get_connection().update_item(PREFIX + postback_id, actions=actions, condition=condition)
        except UpdateError as exc:
            if response_code(exc) == CONDITIONAL_CHECK_FAILED:
                return False
            raise
        return True
