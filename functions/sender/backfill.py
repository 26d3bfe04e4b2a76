"""Backfill: an invocation held by a slow GET takes more work from the queue while it waits.

Lambda holds a sender invocation until the slowest GET of its batch has ended. A tracker that
answers after the GET deadline, or never (a tarpit), keeps the invocation -- one of the event
source's `MaximumConcurrency` -- for a whole deadline however fast the rest of its batch was. The
host pause (`functions.sender.hosts`) stops that once the host has failed
`POSTBACKS_HOST_PAUSE_AFTER` times, but those first failures take one deadline each, and when a
tarpit gets a large share of the deliveries every invocation takes one of its messages within a
fraction of a second: for that deadline the sender would stand idle while healthy deliveries queue.

So (docs/sender.md#backfill): once an invocation has a GET in flight for `after_seconds`, it
receives more messages from the deliveries queue itself (ReceiveMessage, ten at a time, long
polling, at most `MAX_TAKEN_BATCHES` batches at once) and processes each like a batch of its own --
lease, postback check, GET, outcome -- deleting the messages it acknowledges (DeleteMessageBatch:
they are not in the event, so the batch response cannot name them). The others are hidden for
their wait, or return after the queue's visibility timeout, as in any batch. It stops receiving as
soon as the event's own GETs have ended or the invocation's time runs short (the sender's guard),
and returns when what it took is done: at most about one more GET deadline.

`SlowGets` keeps the invocation's GETs in flight per host (name and port). A GET to a host that
has a GET in flight in this invocation for `after_seconds`, or had one that timed out, is not
started: the sender gives the lease back (no attempt spent) and hides the message until that GET's
deadline has passed, or for a second (`host_slow`). So the invocation a slow host holds sends it
no second wave of GETs, and a backfill is not spent on the host that caused it. A healthy
invocation pays nothing: no GET reaches `after_seconds`, nothing is received.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
from typing import Protocol

from functions.core.host_pause import host_key
from functions.sender.ports import IncomingMessage

logger = logging.getLogger(__name__)

# Batches taken by one invocation that may be in progress at once (ten messages each).
MAX_TAKEN_BATCHES = 4
# How often the invocation looks whether its GETs have become slow.
LOOK_SECONDS = 0.02
SQS_BATCH = 10

# Processes messages as one batch; returns the IDs of those not to acknowledge.
Handle = Callable[[Sequence[IncomingMessage]], set[str]]


class BackfillSource(Protocol):
    """The deliveries queue as the backfill uses it (`QueueBackfillSource` over the SQS adapter)."""

    def receive(self, max_messages: int) -> list[IncomingMessage]:
        """Up to `max_messages` visible messages (waiting briefly for one), each hidden for the queue's timeout."""
        ...

    def delete(self, receipt_handles: Sequence[str]) -> None:
        """Delete the acknowledged messages (what the batch response does for the event's own)."""
        ...


class TrackedGet:
    """One GET as `SlowGets` follows it: whether the host answered (any status)."""

    answered = False


class SlowGets:
    """The GETs in flight in one invocation, by host: which have run for `after_seconds` (thread-safe).

    With `after_seconds` None (no backfill) it keeps nothing and no GET is ever slow.
    """

    def __init__(self, after_seconds: float | None, deadline_seconds: float, monotonic: Callable[[], float]) -> None:
        self._after = after_seconds
        self._deadline = deadline_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._next = 0
        self._in_flight: dict[int, tuple[str, float]] = {}
        self._slow_ended: list[tuple[str, float]] = []

    @contextmanager
    def tracking(self, url: str) -> Iterator[TrackedGet]:
        """Around one GET to the URL's host; the caller sets `answered` when the host answered."""
        get = TrackedGet()
        after = self._after
        host = host_key(url) if after is not None else None
        if host is None or after is None:
            yield get
            return
        started = self._monotonic()
        with self._lock:
            self._next += 1
            token = self._next
            self._in_flight[token] = (host, started)
        try:
            yield get
        finally:
            with self._lock:
                del self._in_flight[token]
                if not get.answered and self._monotonic() - started >= after:  # slow, and no answer
                    self._slow_ended.append((host, started))

    def holding(self) -> bool:
        """Whether a GET has been in flight for `after_seconds`: a slow GET holds the invocation."""
        if self._after is None:
            return False
        now = self._monotonic()
        with self._lock:
            return any(now - started >= self._after for _, started in self._in_flight.values())

    def slow_wait(self, url: str) -> float | None:
        """Seconds until the deadline of the host's slow GETs in this invocation has passed; None: it had none.

        A GET is slow once it has been in flight for `after_seconds`, and stays so when it ended
        that late without an answer (it timed out): the invocation sends that host nothing more.
        A host that answered, however late, is slow only while a GET to it is in flight.
        """
        host = host_key(url) if self._after is not None else None
        if host is None or self._after is None:
            return None
        now = self._monotonic()
        with self._lock:
            in_flight = [at for name, at in self._in_flight.values() if name == host and now - at >= self._after]
            slow = in_flight + [at for name, at in self._slow_ended if name == host]
        return max(0.0, max(slow) + self._deadline - now) if slow else None


class Backfill:
    """Runs an invocation's own batch and, while a slow GET holds it, batches taken from the queue."""

    def __init__(
        self,
        source: BackfillSource,
        *,
        after_seconds: float,
        look_seconds: float = LOOK_SECONDS,
        max_batches: int = MAX_TAKEN_BATCHES,
    ) -> None:
        if after_seconds <= 0:
            raise ValueError("the backfill starts after a positive time")
        self._source = source
        self.after_seconds = after_seconds
        self._look_seconds = look_seconds
        self._max_batches = max(1, max_batches)

    def run(
        self,
        own: Callable[[], set[str]],
        handle: Handle,
        gets: SlowGets,
        out_of_time: Callable[[], bool],
    ) -> tuple[set[str], int]:
        """The event's failed message IDs (from `own`) and how many messages were taken from the queue.

        `handle` processes taken messages like a batch and returns the IDs not to acknowledge; the
        others are deleted here.
        """
        taken = 0
        running: list[Future[None]] = []
        receiving = True
        with ThreadPoolExecutor(max_workers=1 + self._max_batches, thread_name_prefix="backfill") as pool:
            own_batch = pool.submit(own)
            while True:
                try:
                    failed = own_batch.result(timeout=self._look_seconds)
                    break
                except TimeoutError:
                    pass
                running = [future for future in running if not future.done()]
                if not receiving or len(running) >= self._max_batches or not gets.holding() or out_of_time():
                    continue
                try:
                    messages = self._source.receive(SQS_BATCH)
                except Exception:
                    logger.warning("backfill: the queue could not be read; waiting for the batch", exc_info=True)
                    receiving = False
                    continue
                if messages:
                    taken += len(messages)
                    running.append(pool.submit(self._take, messages, handle))
            wait_for(running)
        return failed, taken

    def _take(self, messages: Sequence[IncomingMessage], handle: Handle) -> None:
        """Process the taken messages and delete the acknowledged ones; the rest come back as in any batch."""
        try:
            failed = handle(messages)
        except Exception:
            logger.exception("backfill: a taken batch failed; its messages return after their visibility timeout")
            return
        done = [message.receipt_handle for message in messages if message.message_id not in failed]
        if not done:
            return
        try:
            self._source.delete(done)
        except Exception:
            # They come back after their visibility timeout and find their deliveries finished.
            logger.warning("backfill: %d acknowledged messages were not deleted", len(done), exc_info=True)


class QueueBackfillSource:
    """`BackfillSource` over the SQS adapter (`functions.storage.queues.Queue`) of the deliveries queue."""

    def __init__(self, queue: _Queue, wait_seconds: int = 1) -> None:
        self._queue = queue
        self._wait_seconds = wait_seconds  # long polling: returns as soon as a message is there

    def receive(self, max_messages: int) -> list[IncomingMessage]:
        return [
            IncomingMessage(
                message_id=message.message_id,
                receipt_handle=message.receipt_handle,
                body=message.body,
                receive_count=_receive_count(message.attributes.get("ApproximateReceiveCount")),
            )
            for message in self._queue.receive(max_messages=max_messages, wait_seconds=self._wait_seconds)
        ]

    def delete(self, receipt_handles: Sequence[str]) -> None:
        self._queue.delete_batch(receipt_handles)


class _Received(Protocol):
    @property
    def message_id(self) -> str: ...
    @property
    def receipt_handle(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def attributes(self) -> dict[str, str]: ...


class _Queue(Protocol):
    def receive(self, max_messages: int = 10, wait_seconds: int = 0) -> Sequence[_Received]: ...
    def delete_batch(self, receipt_handles: Sequence[str]) -> None: ...


def _receive_count(value: str | None) -> int:
    return int(value) if value is not None and value.isdigit() else 1
