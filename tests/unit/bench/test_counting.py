"""DynamoDB capacity estimates from item sizes (the published billing rules)."""

from __future__ import annotations

import pytest

from bench.counting import RequestCounter, TableKeys, Usage, attribute_value_size, item_size, read_units, write_units
from tests.support.aws_calls import AwsRequest

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


def test_a_put_is_billed_on_the_table_and_every_index_the_item_belongs_to() -> None:
    counter = RequestCounter({"t": TableKeys(("id",), (("gsi_a",), ("gsi_b", "sort")))})
    item = {"id": {"S": "1"}, "gsi_a": {"S": "x"}}
    counter.record(AwsRequest("dynamodb", "PutItem", {"TableName": "t", "Item": item}))
    assert counter.usage.write_units["t"] == 2
    assert counter.usage.requests[("dynamodb", "PutItem")] == 1


def test_an_update_is_billed_at_the_size_of_the_item_last_put() -> None:
    counter = RequestCounter({"t": TableKeys(("id",))})
    big = {"id": {"S": "1"}, "blob": {"S": "x" * 3000}}
    counter.record(AwsRequest("dynamodb", "PutItem", {"TableName": "t", "Item": big}))
    update = {"TableName": "t", "Key": {"id": {"S": "1"}}, "ExpressionAttributeValues": {":v": {"S": "y"}}}
    counter.record(AwsRequest("dynamodb", "UpdateItem", update))
    assert counter.usage.write_units["t"] == 3 + 3


def test_a_query_is_billed_on_the_bytes_it_returns() -> None:
    counter = RequestCounter()
    items = [{"blob": {"S": "x" * 3000}} for _ in range(3)]
    counter.responded(AwsRequest("dynamodb", "Query", {"TableName": "t"}, response={"Items": items}))
    assert counter.usage.read_units["t"] == 1.5


class _Model:
    """The parts of a botocore operation model the hooks read."""

    def __init__(self, name: str, service: str) -> None:
        self.name = name
        self.service_model = type("ServiceModel", (), {"service_name": service})()


def test_nothing_is_counted_while_disabled_or_paused() -> None:
    counter = RequestCounter()
    call = _Model("SendMessageBatch", "sqs")
    counter.enabled = False
    counter._before_call(model=call, context={})
    counter.enabled = True
    with counter.paused():
        counter._before_call(model=call, context={})
    assert counter.usage.total() == 0
    counter._before_call(model=call, context={})
    assert counter.usage.total() == 1


def test_usage_difference_keeps_only_what_happened_in_between() -> None:
    earlier = Usage()
    earlier.requests[("sqs", "SendMessageBatch")] = 2
    later = earlier.copy()
    later.requests[("sqs", "SendMessageBatch")] += 3
    later.requests[("dynamodb", "Query")] += 1
    delta = later.minus(earlier)
    assert delta.operation("SendMessageBatch") == 3
    assert delta.total("dynamodb") == 1
