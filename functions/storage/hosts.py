"""`HostRepository`: the shared state of tracker hosts (the host pause, docs/sender.md) in the postbacks table.

One item per host that has failed: `postback_id` = `host#<name>:<port>`, with
`consecutive_failures`, `last_failure_reason`, `last_failure_at`, and while paused
`host_paused_until`, `host_pauses` (pauses in a row: the doubling) and `host_probe_until` (a
worker holds the probe). A host that never failed has no item, and one that recovered keeps an item
with no failures, so a healthy host costs nothing: the sender reads the host states of a batch in
the same BatchGetItem as its postbacks (`read_with_postbacks`), and writes only when a failure is
counted (`record_failure`: one UpdateItem) or the state changes (`pause`, `claim_probe`, `resume`).
The items carry no index attributes, so they are in no GSI; `paused_hosts` (the on-call CLI) scans
for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pynamodb.exceptions import GetError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from functions.core.host_pause import HostState
from functions.core.model import Postback, format_timestamp
from functions.storage.errors import response_code
from functions.storage.models import PostbackModel
from functions.storage.postbacks import postbacks_with_secrets, sending_keys

HOST_PREFIX = "host#"
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
BATCH_GET_KEYS = 100


class HostStateError(Exception):
    """The state of a host could not be read or written (throttling, service error)."""


def host_item_key(host: str) -> str:
    return HOST_PREFIX + host


def _state(item: PostbackModel) -> HostState:
    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    return HostState(
        host=item.postback_id[len(HOST_PREFIX) :],
        consecutive_failures=int(item.consecutive_failures or 0),
        paused_until=number(item.host_paused_until),
        pauses=int(item.host_pauses or 0),
        probe_until=number(item.host_probe_until),
        last_failure_reason=item.last_failure_reason,
    )


class HostRepository:
    def __init__(self, model: type[PostbackModel] = PostbackModel) -> None:
        self._model = model

    def read_with_postbacks(
        self, postback_ids: Sequence[str], hosts: Sequence[str]
    ) -> tuple[dict[str, Postback], dict[str, HostState]]:
        """One consistent BatchGetItem of postbacks and host states (100 keys a request).

        Hosts without an item are absent from the result: they are healthy.
        """
        # Each postback with its signing secret item (`PostbackRepository.get_many`'s read), then the hosts.
        postback_keys = sending_keys(key for key in postback_ids if not key.startswith(HOST_PREFIX))
        keys = postback_keys + [host_item_key(host) for host in dict.fromkeys(hosts)]
        states: dict[str, HostState] = {}
        if not keys:
            return {}, states
        items = list(self._model.batch_get(keys, consistent_read=True))
        for item in items:
            if item.postback_id.startswith(HOST_PREFIX):
                state = _state(item)
                states[state.host] = state
        return postbacks_with_secrets(item for item in items if not item.postback_id.startswith(HOST_PREFIX)), states

    def get_many(self, hosts: Sequence[str]) -> dict[str, HostState]:
        """The states of these hosts (consistent); healthy hosts are absent."""
        return self.read_with_postbacks((), hosts)[1]

    def get(self, host: str) -> HostState | None:
        try:
            item = self._model.get(host_item_key(host), consistent_read=True)
        except self._model.DoesNotExist:
            return None
        except GetError as exc:
            raise HostStateError(f"state of host {host} not read") from exc
        return _state(item)

    def record_failure(self, host: str, reason: str, at: datetime) -> HostState:
        """Count one failed attempt (atomic ADD); the state as written."""
        model = self._model
        actions: list[Action] = [
            model.consecutive_failures.add(1),
            model.last_failure_reason.set(reason),
            model.last_failure_at.set(format_timestamp(at)),
        ]
        state = self._update(host, actions, None)
        assert state is not None  # unconditional
        return state

    def pause(self, host: str, until: float, pauses_before: int, now: float) -> HostState | None:
        """Pause the host until `until` if nobody did since `pauses_before` was read; the state, or None if refused."""
        model = self._model
        actions: list[Action] = [
            model.host_paused_until.set(until),
            model.host_pauses.set(pauses_before + 1),
            model.host_probe_until.remove(),
        ]
        unchanged = model.host_pauses.does_not_exist() | (model.host_pauses == pauses_before)
        not_paused = model.host_paused_until.does_not_exist() | (model.host_paused_until <= now)
        return self._update(host, actions, unchanged & not_paused)

    def claim_probe(self, host: str, paused_until: float, probe_until: float, now: float) -> HostState | None:
        """Take the probe of the ended pause `paused_until`; the state, or None if someone else has it."""
        model = self._model
        free = model.host_probe_until.does_not_exist() | (model.host_probe_until <= now)
        condition = (model.host_paused_until == paused_until) & free
        return self._update(host, [model.host_probe_until.set(probe_until)], condition)

    def resume(self, host: str) -> None:
        """The host answered: forget its failures and its pause (the item stays, healthy)."""
        model = self._model
        actions: list[Action] = [
            model.consecutive_failures.set(0),
            model.host_paused_until.remove(),
            model.host_pauses.remove(),
            model.host_probe_until.remove(),
        ]
        self._update(host, actions, None)

    def paused_hosts(self) -> list[HostState]:
        """Every host with a pause (ended or not), the latest pause end first. A scan: for the on-call tools."""
        model = self._model
        condition = model.postback_id.startswith(HOST_PREFIX) & model.host_paused_until.exists()
        states = [_state(item) for item in model.scan(filter_condition=condition, consistent_read=True)]
        return sorted(states, key=lambda state: -(state.paused_until or 0.0))

    def _update(self, host: str, actions: list[Action], condition: Condition | None) -> HostState | None:
        connection = self._model._get_connection()
        try:
            response = connection.update_item(
                host_item_key(host), actions=actions, condition=condition, return_values="ALL_NEW"
            )
        except UpdateError as exc:
            if response_code(exc) == CONDITIONAL_CHECK_FAILED:
                return None
            raise HostStateError(f"state of host {host} not written") from exc
        return _state(self._model.from_raw_data(response["Attributes"]))


def pause_end_text(until: float | None) -> str | None:
    """An epoch pause end as the API and the CLI show it (ISO 8601 UTC)."""
    return None if until is None else format_timestamp(datetime.fromtimestamp(until, UTC))
