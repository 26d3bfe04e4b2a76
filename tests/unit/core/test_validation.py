"""The pure postback rules (functions.core.validation): every rule, with the exact field names."""

from __future__ import annotations

import ipaddress

import pytest

from functions.core.egress import EgressPolicy
from functions.core.placeholders import allowed_for
from functions.core.validation import FieldError, PostbackFields, ValidationRules, validate_postback

pytestmark = pytest.mark.unit

PUBLIC = EgressPolicy(allowed_ports=frozenset({80, 443, 8080, 8443}), allow_private=())
ADMIN_RULES = ValidationRules(egress=PUBLIC, allowed_placeholders=allowed_for(True, frozenset()))
AFFILIATE_RULES = ValidationRules(egress=PUBLIC, allowed_placeholders=allowed_for(False, frozenset()))


def valid(**overrides: object) -> PostbackFields:
    values: dict[str, object] = {
        "scope": "global",
        "included_offer_ids": [],
        "excluded_offer_ids": ["offer-7"],
        "conversion_types": ["sale"],
        "conversion_statuses": ["approved"],
        "url": "https://tracker.example.com/cb?c={affS1}&s={conversionStatus}",
    }
    values.update(overrides)
    return PostbackFields(**values)  # type: ignore[arg-type]


def fields(errors: list[FieldError]) -> list[str]:
    return [error.field for error in errors]


def test_a_valid_global_postback_has_no_errors() -> None:
    assert validate_postback(valid(), AFFILIATE_RULES) == []


def test_a_valid_offer_postback_has_no_errors() -> None:
    definition = valid(scope="offer", included_offer_ids=["o-1", "o-2"], excluded_offer_ids=[])
    assert validate_postback(definition, AFFILIATE_RULES) == []


def test_unknown_scope_is_named() -> None:
    assert fields(validate_postback(valid(scope="everything"), ADMIN_RULES)) == ["scope"]


def test_offer_scope_needs_an_included_offer() -> None:
    errors = validate_postback(valid(scope="offer", excluded_offer_ids=[]), ADMIN_RULES)
    assert fields(errors) == ["included_offer_ids"]


def test_offer_scope_forbids_excluded_offers() -> None:
    errors = validate_postback(valid(scope="offer", included_offer_ids=["o-1"]), ADMIN_RULES)
    assert fields(errors) == ["excluded_offer_ids"]


def test_global_scope_forbids_included_offers() -> None:
    assert fields(validate_postback(valid(included_offer_ids=["o-1"]), ADMIN_RULES)) == ["included_offer_ids"]


def test_offer_lists_are_limited() -> None:
    rules = ValidationRules(egress=PUBLIC, allowed_placeholders=ADMIN_RULES.allowed_placeholders, max_offers=3)
    errors = validate_postback(valid(excluded_offer_ids=["a", "b", "c", "d"]), rules)
    assert fields(errors) == ["excluded_offer_ids"]
    assert validate_postback(valid(excluded_offer_ids=["a", "b", "c"]), rules) == []


def test_500_offers_are_allowed_and_501_are_not() -> None:
    ids = [f"offer-{i}" for i in range(501)]
    assert validate_postback(valid(excluded_offer_ids=ids[:500]), ADMIN_RULES) == []
    assert fields(validate_postback(valid(excluded_offer_ids=ids), ADMIN_RULES)) == ["excluded_offer_ids"]


def test_offer_ids_must_be_non_empty_short_and_unique() -> None:
    errors = validate_postback(valid(excluded_offer_ids=["ok", "", " ", "x" * 129, "ok"]), ADMIN_RULES)
    assert fields(errors) == [
        "excluded_offer_ids[1]",
        "excluded_offer_ids[2]",
        "excluded_offer_ids[3]",
        "excluded_offer_ids[4]",
    ]


def test_conversion_types_must_not_be_empty() -> None:
    assert fields(validate_postback(valid(conversion_types=[]), ADMIN_RULES)) == ["conversion_types"]


@pytest.mark.parametrize("bad", ["Sale", "", "a b", "x" * 65, "sale!", "ümlaut"])
def test_conversion_type_format_is_checked(bad: str) -> None:
    assert fields(validate_postback(valid(conversion_types=["sale", bad]), ADMIN_RULES)) == ["conversion_types[1]"]


@pytest.mark.parametrize("good", ["sale", "free_trial", "ftd", "lead-2", "x" * 64])
def test_conversion_type_format_accepts_codes(good: str) -> None:
    assert validate_postback(valid(conversion_types=[good]), ADMIN_RULES) == []


def test_duplicate_conversion_types_are_named() -> None:
    assert fields(validate_postback(valid(conversion_types=["sale", "sale"]), ADMIN_RULES)) == ["conversion_types[1]"]


def test_conversion_statuses_must_not_be_empty() -> None:
    assert fields(validate_postback(valid(conversion_statuses=[]), ADMIN_RULES)) == ["conversion_statuses"]


def test_unknown_and_duplicate_statuses_are_named() -> None:
    errors = validate_postback(valid(conversion_statuses=["approved", "APPROVED", "paid", "approved"]), ADMIN_RULES)
    assert fields(errors) == ["conversion_statuses[1]", "conversion_statuses[2]", "conversion_statuses[3]"]


def test_every_contract_status_is_accepted() -> None:
    statuses = ["approved", "pending", "on_hold", "test", "fraud", "not_allowed", "rejected", "refunded", "blocked"]
    assert validate_postback(valid(conversion_statuses=statuses), ADMIN_RULES) == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.example.com/",
        "tracker.example.com/cb",
        "https://user:pass@tracker.example.com/",
        "http://10.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/",
        "http://foo.internal/",
        "https://{affS1}.example.com/",
        "https://tracker.example.com:22/",
        "https://tracker.example.com/" + "a" * 2048,
    ],
)
def test_url_rules_reject(url: str) -> None:
    errors = validate_postback(valid(url=url), ADMIN_RULES)
    assert errors and set(fields(errors)) == {"url"}


def test_unknown_placeholder_is_named_in_the_url_error() -> None:
    errors = validate_postback(valid(url="https://tracker.example.com/?a={clickId}"), ADMIN_RULES)
    assert fields(errors) == ["url"]
    assert "clickId" in errors[0].message


def test_restricted_placeholders_depend_on_the_caller() -> None:
    definition = valid(url="https://tracker.example.com/?r={revenue}&c={customerId}&a={advS3}")
    errors = validate_postback(definition, AFFILIATE_RULES)
    assert fields(errors) == ["url", "url", "url"]
    assert validate_postback(definition, ADMIN_RULES) == []
    some = ValidationRules(egress=PUBLIC, allowed_placeholders=allowed_for(False, frozenset({"revenue"})))
    assert [e.message for e in validate_postback(definition, some) if "revenue" in e.message] == []
    everything = ValidationRules(egress=PUBLIC, allowed_placeholders=allowed_for(False, frozenset({"*"})))
    assert validate_postback(definition, everything) == []


def test_private_targets_pass_when_the_policy_allows_them() -> None:
    loopback = EgressPolicy(allowed_ports=frozenset({443}), allow_private=(ipaddress.ip_network("127.0.0.0/8"),))
    rules = ValidationRules(egress=loopback, allowed_placeholders=ADMIN_RULES.allowed_placeholders)
    assert validate_postback(valid(url="http://127.0.0.1:9999/cb?x={cid}"), rules) == []


def test_unknown_fields_are_skipped_and_every_other_error_is_reported() -> None:
    definition = PostbackFields(scope=None, conversion_statuses=["nope"], url="ftp://x/")
    assert fields(validate_postback(definition, ADMIN_RULES)) == ["conversion_statuses[0]", "url"]
