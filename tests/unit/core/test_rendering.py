from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.core.model import Conversion, ConversionChange
from functions.core.placeholders import CATALOGUE
from functions.core.rendering import ChangeValues, RenderError, format_amount, render_change_url, unix_seconds

pytestmark = pytest.mark.unit


def _change(previous: str | None = "PENDING", **attributes: str | Decimal | list[str]) -> ConversionChange:
    conversion = Conversion(
        conversion_id="conv-1",
        affiliate_id="aff-42",
        offer_id="offer-7",
        conversion_type="sale",
        status="approved",
        attributes=dict(attributes),
    )
    return ConversionChange(conversion=conversion, previous_status=previous, changed_at=0.0)


def render(template: str, **attributes: str) -> str:
    return render_change_url(template, ChangeValues(_change(**attributes)), "pb_1", "dl_1")


# Every placeholder of the catalogue as a query parameter of its own name.
_EVERY_PLACEHOLDER = "https://t.example/cb?" + "&".join(f"{p.name}={{{p.name}}}" for p in CATALOGUE)


def placeholder_values(change: ConversionChange) -> dict[str, str]:
    """What each placeholder renders as for this change, postback `pb_1` and delivery `dl_1`."""
    url = render_change_url(_EVERY_PLACEHOLDER, ChangeValues(change), "pb_1", "dl_1")
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    return {name: value for name, (value,) in query.items()}


def test_every_catalogue_placeholder_has_a_value() -> None:
    values = placeholder_values(_change())
    assert set(values) == {placeholder.name for placeholder in CATALOGUE}


def test_values_follow_the_contract() -> None:
    change = _change(
        aff_s1="click-1",
        adv_s5="adv",
        cid="c",
        external_cid="ec",
        external_id="order-9",
        payout=Decimal("12.50"),
        sale_amount=Decimal("100"),
        revenue=Decimal("0.0100"),
        currency="EUR",
        customer_id="cust",
        coupon_codes=["SPRING", "OTHER"],
        created_at="2026-11-24T10:00:00Z",
        status_changed_at="2026-11-24T11:00:00Z",
        click_time="2026-11-24T09:00:00Z",
    )
    values = placeholder_values(change)
    assert values["affS1"] == "click-1"
    assert values["advS5"] == "adv"
    assert values["externalId"] == "order-9"
    assert values["conversionId"] == "conv-1"
    assert values["offerId"] == "offer-7"
    assert values["affiliateId"] == "aff-42"
    assert values["conversionType"] == "sale"
    assert values["conversionStatus"] == "approved"
    assert values["previousStatus"] == "pending"
    assert values["payout"] == "12.5"
    assert values["saleAmount"] == "100"
    assert values["revenue"] == "0.01"
    assert values["couponCode"] == "SPRING"
    assert values["conversionTime"] == "2026-11-24T10:00:00Z"
    assert values["conversionTimestamp"] == "1795514400"
    assert values["statusChangedAt"] == "2026-11-24T11:00:00Z"
    assert values["clickTime"] == "2026-11-24T09:00:00Z"
    assert values["postbackId"] == "pb_1"
    assert values["deliveryId"] == "dl_1"


def test_missing_values_render_empty() -> None:
    values = placeholder_values(_change(previous=None))
    assert values["affS2"] == ""
    assert values["payout"] == ""
    assert values["couponCode"] == ""
    assert values["conversionTimestamp"] == ""
    assert values["previousStatus"] == ""


def test_empty_coupon_list_and_unparsable_timestamp_render_empty() -> None:
    values = placeholder_values(_change(coupon_codes=[], created_at="yesterday"))
    assert values["couponCode"] == ""
    assert values["conversionTimestamp"] == ""
    assert values["conversionTime"] == "yesterday"


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("12.5", "12.5"),
        ("12.50", "12.5"),
        ("100", "100"),
        ("1E+2", "100"),
        ("0.01", "0.01"),
        ("0.000001", "0.000001"),
        ("-3.10", "-3.1"),
        ("0.00", "0"),
        ("NaN", ""),
    ],
)
def test_amounts_render_as_plain_decimals(amount: str, text: str) -> None:
    assert format_amount(Decimal(amount)) == text


_SCALED = st.builds(
    lambda digits, exponent: Decimal(f"{digits}E{exponent}"), st.integers(-(10**30), 10**30), st.integers(-40, 40)
)


@given(st.decimals(allow_nan=False, allow_infinity=False) | _SCALED)
def test_an_amount_is_its_normalised_value_in_fixed_point(amount: Decimal) -> None:
    text = format(amount.normalize(), "f")
    assert format_amount(amount) == ("0" if text == "-0" else text)


def test_unix_seconds_accepts_offsets_and_naive_utc() -> None:
    assert unix_seconds("1970-01-01T00:01:00Z") == "60"
    assert unix_seconds("1970-01-01T01:01:00+01:00") == "60"
    assert unix_seconds("1970-01-01T00:01:00.999") == "60"
    assert unix_seconds("") == ""


def test_values_are_percent_encoded_in_path_query_and_fragment() -> None:
    value = "a&b=c+d#e/f?g%h i\u00e9"
    url = render("https://t.example/p/{affS1}?x={affS1}&y=1#{affS1}", aff_s1=value)
    encoded = "a%26b%3Dc%2Bd%23e%2Ff%3Fg%25h%20i%C3%A9"
    assert url == f"https://t.example/p/{encoded}?x={encoded}&y=1#{encoded}"


def test_a_value_cannot_add_a_query_parameter() -> None:
    url = render("https://t.example/cb?click={affS1}&status=ok", aff_s1="x&admin=1")
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert query == {"click": ["x&admin=1"], "status": ["ok"]}


def test_a_value_cannot_traverse_the_path() -> None:
    url = render("https://t.example/a/{affS1}/b", aff_s1="../../admin")
    assert urlsplit(url).path == "/a/..%2F..%2Fadmin/b"


@pytest.mark.parametrize("value", ["..", "."])
def test_a_value_that_would_be_a_dot_segment_is_refused(value: str) -> None:
    with pytest.raises(RenderError):
        render("https://t.example/a/{affS1}/b", aff_s1=value)


def test_already_encoded_dots_are_encoded_again_and_stay_data() -> None:
    assert render("https://t.example/a/{affS1}/b", aff_s1="%2e%2e") == "https://t.example/a/%252e%252e/b"


def test_dots_inside_a_segment_are_kept() -> None:
    assert render("https://t.example/a/{affS1}", aff_s1="file.v1..txt") == "https://t.example/a/file.v1..txt"


def test_unknown_names_render_empty() -> None:
    assert render("https://t.example/cb?x={nope}") == "https://t.example/cb?x="


def test_render_refuses_a_value_that_changes_the_host() -> None:
    template = "https://example.com{affS1}/cb"
    assert render(template, aff_s1="") == "https://example.com/cb"
    for value in (".evil.com", "x", "@evil.com", ":8080"):
        with pytest.raises(RenderError):
            render(template, aff_s1=value)


def test_template_without_placeholders_is_returned_as_is() -> None:
    assert render("https://t.example/cb?x=1", aff_s1="v") == "https://t.example/cb?x=1"


_TEMPLATE = "https://tracker.example:8443/cb/p{affS1}?click={affS1}&sub={affS2}&fixed=1#f{affS3}"
_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@given(first=_text, second=_text, third=_text)
def test_arbitrary_values_never_change_the_target_or_parameter_names(first: str, second: str, third: str) -> None:
    url = render(_TEMPLATE, aff_s1=first, aff_s2=second, aff_s3=third)
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port) == ("https", "tracker.example", 8443)
    query = parse_qs(parts.query, keep_blank_values=True)
    assert set(query) == {"click", "sub", "fixed"}
    assert query["click"] == [first]
    assert query["sub"] == [second]
    assert parts.path.count("/") == 2
    assert unquote(parts.path.rsplit("/", 1)[1]) == "p" + first
    assert unquote(parts.fragment) == "f" + third
