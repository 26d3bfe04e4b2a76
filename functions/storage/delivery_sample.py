"""Deliveries by state in the last hour, at a bounded cost (the on-call `status`).

The deliveries table has no index by time across postbacks, so an exact count of every state would
be a full scan. Instead:

- dead-lettered deliveries come exactly from the sparse `by_dead_letter` index: one Query
  (`Select COUNT`) of partition `dead` from `since`, paginated, stopping at `count_limit`;
- every state comes from a *sample*: a Scan that reads at most `sample` items (`Limit` bounds the
  items read, not the items returned) and counts, by state, those updated since `since`. The
  table's hash key is the delivery id, a hash, so the items a Scan reads first are a sample
  unrelated to time or postback. When the Scan reaches the table's end the counts are exact;
  otherwise they are scaled by the table's item count (DescribeTable, refreshed by DynamoDB about
  every six hours) into estimates.

Cost: a Scan is billed by the size of the items read, 0.5 read units per 4 KB eventually
consistent; a delivery record is 1 to 5 KB (its attempts), so the default sample of 2,000 reads 250 to 1,250
read units — less than a thousandth of a dollar on demand. The Query reads only dead-lettered items
of the last hour. Both report the read units DynamoDB says they consumed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from functions.core.dead_letter_index import DEAD_PARTITION
from functions.core.model import format_timestamp
from functions.storage.models import DeliveryModel

DEFAULT_SAMPLE = 2000
DEFAULT_COUNT_LIMIT = 10000
PAGE_ITEMS = 1000


@dataclass(frozen=True)
class StateSample:
    """Deliveries by state in a recent window (a bounded Scan), and the dead-lettered ones (the index)."""

    since: str
    states: dict[str, int]  # state -> deliveries updated since `since`, among those read
    read: int  # items the Scan read
    complete: bool  # the Scan read the whole table: `states` are exact
    table_items: int | None  # DescribeTable's approximate item count
    dead_lettered: int  # dead-lettered since `since`, from the index (exact up to `dead_lettered_limited`)
    dead_lettered_limited: bool
    read_units: float  # consumed by the Scan and the Query
    estimates: dict[str, int] = field(default_factory=dict)  # `states` scaled to the table, when not complete

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "states_in_sample": self.states,
            "estimated_states": self.estimates or self.states,
            "items_read": self.read,
            "complete": self.complete,
            "table_items": self.table_items,
            "dead_lettered": self.dead_lettered,
            "dead_lettered_limited": self.dead_lettered_limited,
            "read_units": self.read_units,
        }


def _units(response: dict[str, Any]) -> float:
    consumed = response.get("ConsumedCapacity") or {}
    return float(consumed.get("CapacityUnits", 0.0))


class DeliverySampler:
    def __init__(self, model: type[DeliveryModel] = DeliveryModel) -> None:
        self._model = model

    def recent_states(
        self, since: datetime, *, sample: int = DEFAULT_SAMPLE, count_limit: int = DEFAULT_COUNT_LIMIT
    ) -> StateSample:
        if sample < 1:
            raise ValueError("the sample must read at least one item")
        connection = self._model._get_connection()
        since_text = format_timestamp(since)
        state_key = self._model.state.attr_name  # the attribute's name as stored
        states: Counter[str] = Counter()
        read, units, start_key, complete = 0, 0.0, None, False
        while read < sample:
            response = connection.scan(
                # No projection: a Scan is billed by the items read whatever it returns.
                filter_condition=self._model.updated_at >= since_text,
                limit=min(PAGE_ITEMS, sample - read),
                return_consumed_capacity="TOTAL",
                exclusive_start_key=start_key,
            )
            read += int(response.get("ScannedCount", 0))
            units += _units(response)
            for item in response.get("Items", []):
                states[str(item.get(state_key, {}).get("S", "unknown"))] += 1
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                complete = True
                break
        dead, limited, dead_units = self._dead_lettered(connection, since_text, count_limit)
        table_items = self._table_items(connection)
        estimates: dict[str, int] = {}
        if not complete and read and table_items:
            scale = table_items / read
            estimates = {state: round(count * scale) for state, count in states.items()}
        return StateSample(
            since=since_text,
            states=dict(states),
            read=read,
            complete=complete,
            table_items=table_items,
            dead_lettered=dead,
            dead_lettered_limited=limited,
            read_units=round(units + dead_units, 2),
            estimates=estimates,
        )

    def _dead_lettered(self, connection: Any, since_text: str, count_limit: int) -> tuple[int, bool, float]:
        count, units, start_key = 0, 0.0, None
        while True:
            response = connection.query(
                DEAD_PARTITION,
                range_key_condition=self._model.dead_lettered_at >= since_text,
                index_name="by_dead_letter",
                select="COUNT",
                return_consumed_capacity="TOTAL",
                exclusive_start_key=start_key,
            )
            count += int(response.get("Count", 0))
            units += _units(response)
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                return count, False, units
            if count >= count_limit:
                return count, True, units

    def _table_items(self, connection: Any) -> int | None:
        try:
            description = connection.describe_table()
        except Exception:  # the estimate is optional; the counts stand without it
            return None
        value = description.get("ItemCount")
        return int(value) if value is not None else None
