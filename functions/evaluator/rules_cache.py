"""Per-container cache of each affiliate's postbacks (contract §2: `POSTBACKS_RULES_CACHE_SECONDS`).

A warm evaluator keeps an affiliate's postbacks for at most `ttl_seconds`, so an edit or a new
postback applies to changes evaluated at most that long after it was saved. A delete or a disable
needs no freshness here: the sender checks the postback again before every GET.

Bounded: least recently used affiliates are evicted beyond `max_affiliates`. `ttl_seconds = 0`
disables caching (every batch reads each of its affiliates once). The clock is injected.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from functions.core.model import Postback

DEFAULT_MAX_AFFILIATES = 10_000

Loader = Callable[[str], list[Postback]]


class RulesCache:
    def __init__(
        self,
        ttl_seconds: float,
        max_affiliates: int = DEFAULT_MAX_AFFILIATES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_affiliates < 1:
            raise ValueError("max_affiliates must be at least 1")
        self._ttl = ttl_seconds
        self._max = max_affiliates
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, tuple[Postback, ...]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, affiliate_id: str, load: Loader) -> tuple[Postback, ...]:
        """The affiliate's postbacks, from the cache when fresh, else from `load` (errors propagate)."""
        now = self._clock()
        entry = self._entries.get(affiliate_id)
        if entry is not None and now - entry[0] < self._ttl:
            self._entries.move_to_end(affiliate_id)
            return entry[1]
        postbacks = tuple(load(affiliate_id))
        if self._ttl > 0:
            self._entries[affiliate_id] = (now, postbacks)
            self._entries.move_to_end(affiliate_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        else:
            self._entries.pop(affiliate_id, None)
        return postbacks

    def clear(self) -> None:
        self._entries.clear()
