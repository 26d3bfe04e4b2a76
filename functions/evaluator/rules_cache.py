"""Per-container cache of each affiliate's postbacks (docs/contract.md §2: `POSTBACKS_RULES_CACHE_SECONDS`).

Validated by the table's rules version (`PostbackRepository.rules_version`): every create, update
and delete of a postback bumps one version item in the same transaction as the write. The
evaluator reads it once per batch and passes it to `observe`; then

- an entry loaded under the version just observed lives until the version changes (a change drops
  every entry at once), bounded by LRU eviction beyond `max_affiliates`;
- except that the `by_affiliate` index the postbacks are read from is eventually consistent: an
  entry loaded less than `settle_seconds` after the version changed (its `changed_at`) may miss
  that change, so it keeps only the short TTL (`ttl_seconds`) and is read again after it;
- when the version could not be read (`observe(None)`: throttling, a timeout), that batch falls
  back to the TTL alone: entries younger than `ttl_seconds` are used, older ones are read again,
  and what is read then keeps only the TTL.

- **Max age**: whatever the version says, no entry is served longer than `max_age_seconds`
  (default `DEFAULT_MAX_AGE_SECONDS`, 60 s, or the TTL if that is longer) after its read. The
  settle window assumes the index caught up within 2 s; DynamoDB does not promise it, and an entry
  read while the index lagged longer would otherwise be served until the next edit anywhere —
  hours in a quiet system. The max age bounds that (`_within_max_age`), at the cost of one `Query`
  per active affiliate per minute per container.

So an edit or a new postback applies to changes evaluated at most `ttl_seconds` after it was
saved (docs/contract.md §2) and, in the common case, from the next batch on. A delete or a disable needs
no freshness here: the sender checks the postback again before every GET.

`ttl_seconds = 0` disables caching entirely (every batch reads each of its affiliates once;
`enabled` tells the evaluator not to read the version either). The clocks are injected:
`clock` (monotonic) ages entries, `wall_clock` (epoch seconds, as `changed_at`) tells whether a
version has settled.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from functions.core.model import Postback

DEFAULT_MAX_AFFILIATES = 10_000
# How long after a rules change a read of the `by_affiliate` GSI may still miss it. DynamoDB does
# not bound GSI propagation, but it is typically well under a second; 2 s also absorbs clock skew
# between the API that stamped `changed_at` and this container (both NTP-synchronised). An entry
# read within this window is trusted for the TTL only, so a later-propagating change is still
# picked up within `POSTBACKS_RULES_CACHE_SECONDS`.
SETTLE_SECONDS = 2.0
# The longest any entry is served without a fresh read, whatever the rules version says.
DEFAULT_MAX_AGE_SECONDS = 60.0

Loader = Callable[[str], list[Postback]]


@dataclass(frozen=True)
class _Entry:
    """One affiliate's cached postbacks and what keeps them valid."""

    loaded_at: float  # `clock` time
    version: int | None  # the rules version observed before the read; None when it was unknown
    durable: bool  # lives until the version changes (else only `ttl_seconds`)
    postbacks: tuple[Postback, ...]


class RulesCache:
    def __init__(
        self,
        ttl_seconds: float,
        max_affiliates: int = DEFAULT_MAX_AFFILIATES,
        clock: Callable[[], float] = time.monotonic,
        *,
        wall_clock: Callable[[], float] = time.time,
        settle_seconds: float = SETTLE_SECONDS,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    ) -> None:
        if max_affiliates < 1:
            raise ValueError("max_affiliates must be at least 1")
        self._ttl = ttl_seconds
        self._max_age = max(max_age_seconds, ttl_seconds)
        self._max = max_affiliates
        self._clock = clock
        self._wall_clock = wall_clock
        self._settle = settle_seconds
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # The last version observed; whether the current batch knows it (else: TTL only); settled.
        self._version: int | None = None
        self._known = False
        self._settled = False

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    @property
    def max_staleness_seconds(self) -> float:
        """How far behind the table the postbacks `get` returns can be: the max age plus the settle time."""
        return (self._max_age if self.enabled else 0.0) + self._settle

    @property
    def version(self) -> int | None:
        """The rules version of the current batch (None: unknown, the TTL alone applies)."""
        return self._version if self._known else None

    def observe(self, version: int | None, changed_at: float | None = None) -> None:
        """The rules version read for the coming batch (`None`: it could not be read).

        `changed_at` is when it last changed (epoch seconds; None: never, e.g. a fresh table).
        A version other than the one trusted so far drops every entry.
        """
        if version is None:
            self._known = False
            return
        if version != self._version:
            self._entries.clear()
        self._version = version
        self._known = True
        self._settled = changed_at is None or self._wall_clock() - changed_at >= self._settle

    def get(self, affiliate_id: str, load: Loader) -> tuple[Postback, ...]:
        """The affiliate's postbacks, from the cache when still valid, else from `load` (errors propagate)."""
        now = self._clock()
        entry = self._entries.get(affiliate_id)
        if entry is not None and self._valid(entry, now):
            self._entries.move_to_end(affiliate_id)
            return entry.postbacks
        postbacks = tuple(load(affiliate_id))
        if self.enabled:
            version = self.version
            self._entries[affiliate_id] = _Entry(now, version, version is not None and self._settled, postbacks)
            self._entries.move_to_end(affiliate_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        else:
            self._entries.pop(affiliate_id, None)
        return postbacks

    def _within_max_age(self, entry: _Entry, now: float) -> bool:
        return now - entry.loaded_at < self._max_age

    def _valid(self, entry: _Entry, now: float) -> bool:
        if not self._within_max_age(entry, now):
            return False
        young = now - entry.loaded_at < self._ttl
        if not self._known:
            return young
        return entry.version == self._version and (entry.durable or young)

    def clear(self) -> None:
        self._entries.clear()
