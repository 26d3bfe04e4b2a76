"""DynamoDB capacity estimates from item sizes (the published billing rules)."""

from __future__ import annotations

import pytest

from bench.counting import RequestCounter, TableKeys, Usage, attribute_value_size, item_size, read_units, write_units

pytestmark = pytest.mark.unit


def test_string_size_is_its_utf8_length() -> None:
    assert attribute_value_size({"S": "abc"}) == 3
    assert attribute_value_size({"S": "é"}) == 2


def test_number_size_is_about_one_byte_per_two_digits_plus_one() -> None:
    assert attribute_value_size({"N": "12.5"}) == 3
    assert attribute_value_size({"N": "0"}) == 2


def test_list_and_map_add_overhead_per_element() -> None:
    assert attribute_value_size({"L": [{"S": "ab"}, {"S": "c"}]}) == 3 + (1 + 2) + (1 + 1)
    assert attribute_value_size({"M": {"k": {"BOOL": True}}}) == 3 + 1 + 1 + 1


def test_item_size_counts_attribute_names() -> None:
    assert item_size({"id": {"S": "x"}, "n": {"N": "1"}}) == 2 + 1 + 1 + 2


def test_write_units_round_up_per_kib_with_a_minimum_of_one() -> None:
    assert write_units(0) == 1
    assert write_units(1024) == 1
    assert write_units(1025) == 2


def test_eventually_consistent_reads_cost_half() -> None:
    assert read_units(100, consistent=False) == 0.5
    assert read_units(100, consistent=True) == 1.0
    assert read_units(4097, consistent=True) == 2.0


class _Operation:
    def __init__(self, name: str, service: str = "dynamodb") -> None:
        self.name = name

        class _Service:
            service_name = service

        self.service_model = _Service()


def test_a_put_is_billed_on_the_table_and_every_index_the_item_belongs_to() -> None:
    counter = RequestCounter({"t": TableKeys(("id",), (("gsi_a",), ("gsi_b", "sort")))})
    item = {"id": {"S": "1"}, "gsi_a": {"S": "x"}}
    counter._before_call(_Operation("PutItem"), {})
    counter._before_parameter_build(_Operation("PutItem"), {"TableName": "t", "Item": item}, {})
    assert counter.usage.write_units["t"] == 2
    assert counter.usage.requests[("dynamodb", "PutItem")] == 1


def test_an_update_is_billed_at_the_size_of_the_item_last_put() -> None:
    counter = RequestCounter({"t": TableKeys(("id",))})
    big = {"id": {"S": "1"}, "blob": {"S": "x" * 3000}}
    counter._before_parameter_build(_Operation("PutItem"), {"TableName": "t", "Item": big}, {})
    counter._before_parameter_build(
        _Operation("UpdateItem"),
        {"TableName": "t", "Key": {"id": {"S": "1"}}, "ExpressionAttributeValues": {":v": {"S": "y"}}},
        {},
    )
    assert counter.usage.write_units["t"] == 3 + 3


def test_a_query_is_billed_on_the_bytes_it_returns() -> None:
    counter = RequestCounter()
    context: dict[str, object] = {}
    counter._before_parameter_build(_Operation("Query"), {"TableName": "t"}, context)
    items = [{"blob": {"S": "x" * 3000}} for _ in range(3)]
    counter._after_call(_Operation("Query"), {"Items": items}, context)
    assert counter.usage.read_units["t"] == 1.5


def test_nothing_is_counted_while_disabled() -> None:
    counter = RequestCounter()
    counter.enabled = False
    counter._before_call(_Operation("SendMessageBatch", "sqs"), {})
    assert counter.usage.total() == 0


def test_usage_difference_keeps_only_what_happened_in_between() -> None:
    earlier = Usage()
    earlier.requests[("sqs", "SendMessageBatch")] = 2
    later = earlier.copy()
    later.requests[("sqs", "SendMessageBatch")] += 3
    later.requests[("dynamodb", "Query")] += 1
    delta = later.minus(earlier)
    assert delta.operation("SendMessageBatch") == 3
    assert delta.total("dynamodb") == 1
