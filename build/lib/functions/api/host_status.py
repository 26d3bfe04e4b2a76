"""`host_paused_until` of the postback resource (docs/contract.md §6): the pause of each postback's host.

One consistent BatchGetItem of the host states of the postbacks shown (`HostRepository.get_many`);
a host without a pause, or whose pause has ended, shows null. Best effort: when the states cannot
be read the resource is still served, with null.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from functions import bootstrap
from functions.core.host_pause import host_key
from functions.core.model import Postback

logger = logging.getLogger(__name__)


def host_pauses(postbacks: Sequence[Postback], clock: Callable[[], float] = time.time) -> dict[str, str | None]:
    """Postback id -> the end of its host's pause (ISO 8601 UTC), or None."""
    keys = {postback.id: host_key(postback.url) for postback in postbacks}
    hosts = sorted({key for key in keys.values() if key is not None})
    if not hosts:
        return dict.fromkeys(keys)
    try:
        states = bootstrap.host_repository().get_many(hosts)
    except Exception:
        logger.warning("host states not read; host_paused_until shows null", exc_info=True)
        return dict.fromkeys(keys)
    from functions.storage.hosts import pause_end_text  # with the repository above, not at the API's import

    now = clock()
    out: dict[str, str | None] = {}
    for postback_id, host in keys.items():
        state = states.get(host) if host is not None else None
        out[postback_id] = pause_end_text(state.paused_until) if state is not None and state.paused_at(now) else None
    return out
