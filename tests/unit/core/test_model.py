from __future__ import annotations

import base64
import dataclasses
import hashlib
import inspect
import random
import re

import pytest

from functions.core.matching import MatchResult
from functions.core.model import (
    Conversion,
    ConversionChange,
    PlannedDelivery,
    delivery_id_for,
    format_timestamp,
    new_postback_id,
    new_ulid,
    parse_timestamp,
    utc_now,
)
from functions.storage.queues import OutgoingMessage

pytestmark = pytest.mark.unit


def test_delivery_id_is_the_same_for_the_same_postback_conversion_and_status() -> None:
    assert delivery_id_for("pb_1", "c-1", "approved") == delivery_id_for("pb_1", "c-1", "approved")


@pytest.mark.parametrize(
    "other", [("pb_2", "c-1", "approved"), ("pb_1", "c-2", "approved"), ("pb_1", "c-1", "rejected")]
)
def test_delivery_id_differs_when_any_part_of_the_key_differs(other: tuple[str, str, str]) -> None:
    assert delivery_id_for(*other) != delivery_id_for("pb_1", "c-1", "approved")


def test_delivery_id_cannot_be_forged_by_moving_the_separator() -> None:
    assert delivery_id_for("pb_1", "c-1x", "approved") != delivery_id_for("pb_1c", "-1x", "approved")


def test_delivery_id_is_url_safe() -> None:
    assert re.fullmatch(r"dl_[a-z2-7]{32}", delivery_id_for("pb_1", "c-1", "approved"))


def test_delivery_ids_keep_their_stored_values() -> None:
    # Delivery IDs are stored deduplication keys: the derivation may never change.
    assert delivery_id_for("pb_1", "c-1", "approved") == "dl_4hmjfgbiyycpwfzaj5x4i34df2sahjas"
    assert delivery_id_for("pb_01HZX", "cv-é ✓", "refunded") == "dl_uwmwxvakk5u66zpayg76k5tcabpa4pv6"


def test_delivery_id_is_the_base32_of_the_first_160_bits_of_sha256() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        postback_id, conversion_id = (
            "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(0, 30))) for _ in range(2)
        )
        status = rng.choice(("approved", "rejected", ""))
        digest = hashlib.sha256(f"{postback_id}\x1f{conversion_id}\x1f{status}".encode()).digest()
        expected = "dl_" + base64.b32encode(digest[:20]).decode("ascii").lower()
        assert delivery_id_for(postback_id, conversion_id, status) == expected


def test_ulids_sort_by_creation_time() -> None:
    earlier = new_ulid(now_ms=1_700_000_000_000)
    later = new_ulid(now_ms=1_700_000_000_001)
    assert len(earlier) == 26
    assert earlier < later


def test_postback_ids_are_prefixed_and_unique() -> None:
    ids = {new_postback_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"pb_[0-9A-HJKMNP-TV-Z]{26}", value) for value in ids)


def test_timestamps_round_trip_and_sort_as_text() -> None:
    now = utc_now()
    text = format_timestamp(now)
    assert text.endswith("Z")
    assert parse_timestamp(text) == now
    assert format_timestamp(parse_timestamp("2026-11-24T10:00:00Z")) < text


@pytest.mark.parametrize("cls", [Conversion, ConversionChange, PlannedDelivery, MatchResult, OutgoingMessage])
def test_a_hand_written_init_takes_and_sets_exactly_the_dataclass_fields(cls: type) -> None:
    """`Conversion`, `ConversionChange`, `PlannedDelivery`, `MatchResult` and `OutgoingMessage` set their
    fields in the `__init__` that `direct_init` generates (functions/core/model.py says why)."""
    fields = dataclasses.fields(cls)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [parameter.name for parameter in parameters] == [field.name for field in fields]
    for parameter, field in zip(parameters, fields, strict=True):
        if field.default is not dataclasses.MISSING:
            assert parameter.default == field.default
        elif field.default_factory is not dataclasses.MISSING:
            assert parameter.default is None  # None stands for a fresh default
        else:
            assert parameter.default is inspect.Parameter.empty
    given = {field.name: object() for field in fields}
    made = cls(**given)
    assert vars(made) == given
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, "changed")


def test_a_conversion_made_without_attributes_has_its_own_empty_attributes() -> None:
    first, second = (Conversion("c-1", "aff-1", "offer-1", "sale", "approved") for _ in range(2))
    assert first.attributes == {} and first.attributes is not second.attributes
