from __future__ import annotations

import pytest

from functions.core.placeholders import BY_NAME, CATALOGUE, RESTRICTED_NAMES, allowed_for, placeholders_in

pytestmark = pytest.mark.unit

CONTRACT_NAMES = {
    *(f"affS{i}" for i in range(1, 6)),
    "cid",
    "externalCid",
    "externalId",
    "conversionId",
    "offerId",
    "affiliateId",
    "conversionType",
    "conversionStatus",
    "previousStatus",
    "payout",
    "saleAmount",
    "currency",
    "couponCode",
    "conversionTime",
    "conversionTimestamp",
    "statusChangedAt",
    "clickTime",
    "postbackId",
    "deliveryId",
    "timestamp",
    "signature",
    "revenue",
    "customerId",
    *(f"advS{i}" for i in range(1, 6)),
}


def test_catalogue_holds_exactly_the_contract_placeholders() -> None:
    assert set(BY_NAME) == CONTRACT_NAMES
    assert len(CATALOGUE) == len(CONTRACT_NAMES)


def test_restricted_placeholders_are_those_of_the_contract() -> None:
    assert {"revenue", "customerId", *(f"advS{i}" for i in range(1, 6))} == RESTRICTED_NAMES


def test_every_placeholder_has_a_label_and_description() -> None:
    assert all(p.label and p.description for p in CATALOGUE)


def test_placeholders_are_found_in_order_with_repeats() -> None:
    url = "https://t.example/{affS1}/x?a={cid}&b={affS1}#{unknownThing}"
    assert placeholders_in(url) == ["affS1", "cid", "affS1", "unknownThing"]


def test_admins_may_use_every_placeholder() -> None:
    assert allowed_for(True, frozenset()) == frozenset(BY_NAME)


def test_affiliates_may_not_use_restricted_placeholders_by_default() -> None:
    allowed = allowed_for(False, frozenset())
    assert not allowed & RESTRICTED_NAMES
    assert "affS1" in allowed


def test_network_configuration_can_allow_some_or_all_restricted_placeholders() -> None:
    assert "revenue" in allowed_for(False, frozenset({"revenue"}))
    assert "customerId" not in allowed_for(False, frozenset({"revenue"}))
    assert allowed_for(False, frozenset({"*"})) == frozenset(BY_NAME)
