"""Reading a dead-letter queue without consuming it.

SQS has no "peek": a scan receives every message and keeps each one invisible ("held") for
`hold_seconds`, so later receives return the messages not yet seen; the caller deletes the ones
it has dealt with, and the scan makes all others visible again (visibility 0) when it ends —
also when it ends by an error or Ctrl-C. If a release fails, or the process is killed, the
messages reappear by themselves after `hold_seconds`: a scan never loses a message.

SQS allows 120,000 in-flight messages per standard queue; `max_messages` bounds a scan well below.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import TracebackType

from botocore.exceptions import BotoCoreError, ClientError

from functions.storage.queues import Queue, ReceivedMessage

DEFAULT_MAX_MESSAGES = 10_000


class QueueScan:
    def __init__(
        self,
        queue: Queue,
        *,
        hold_seconds: int = 300,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        wait_seconds: int = 1,
        empty_receives: int = 2,
    ) -> None:
        self._queue = queue
        self._hold_seconds = hold_seconds
        self._max_messages = max_messages
        self._wait_seconds = wait_seconds
        self._empty_receives = empty_receives
        self._held: dict[str, str] = {}  # message id -> latest receipt handle
        self._seen: set[str] = set()

    @property
    def seen(self) -> int:
        return len(self._seen)

    def __enter__(self) -> QueueScan:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release_all()

    def __iter__(self) -> Iterator[ReceivedMessage]:
        """Every message once (up to `max_messages`), oldest receives first; each stays held."""
        quiet = 0
        while len(self._seen) < self._max_messages:
            wanted = min(10, self._max_messages - len(self._seen))
            # Short polls first (fast when messages are there); a long poll before concluding it is empty.
            wait = self._wait_seconds if quiet else 0
            batch = self._queue.receive(max_messages=wanted, wait_seconds=wait, visibility_timeout=self._hold_seconds)
            fresh = []
            for message in batch:
                self._held[message.message_id] = message.receipt_handle
                if message.message_id not in self._seen:
                    self._seen.add(message.message_id)
                    fresh.append(message)
            if fresh:
                quiet = 0
                yield from fresh
                continue
            quiet += 1
            if quiet >= self._empty_receives or (not batch and self._queue.depth()["visible"] == 0):
                return

    def delete(self, message: ReceivedMessage) -> None:
        self._queue.delete(self._held.get(message.message_id, message.receipt_handle))
        self._held.pop(message.message_id, None)

    def release_all(self) -> None:
        failed = 0
        for handle in list(self._held.values()):
            try:
                self._queue.change_visibility(handle, 0)
            except (ClientError, BotoCoreError):
                failed += 1
        self._held.clear()
        if failed:
            print(
                f"warning: {failed} message(s) could not be released; they become visible again "
                f"within {self._hold_seconds}s",
                file=sys.stderr,
            )
