"""Restricted values in a sent URL read as `***` (functions.core.masking)."""

from __future__ import annotations

import pytest

from functions.core.masking import mask_everything_after_authority, mask_restricted_values
from functions.core.placeholders import RESTRICTED_NAMES
from functions.core.rendering import ChangeValues, render_change_url

pytestmark = pytest.mark.unit

HIDDEN = RESTRICTED_NAMES
VALUES = {
    "revenue": "12.5",
    "customerId": "cust/7&x=1",
    "advS1": "a.b",
    "affS1": "click 1",
    "payout": "3",
    "conversionStatus": "approved",
}


class _GivenValues(ChangeValues):
    """Fixed placeholder values instead of a conversion change's."""

    def __init__(self, values: dict[str, str]) -> None:
        dict.__init__(self, values)

    def __missing__(self, name: str) -> str:
        return ""


def render_url(template: str, values: dict[str, str]) -> str:
    return render_change_url(template, _GivenValues(values), postback_id="pb_1", delivery_id="dl_1")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("https://t.example/cb?rev={revenue}&c={affS1}", "https://t.example/cb?rev=***&c=click%201"),
        ("https://t.example/{revenue}/x?s={conversionStatus}", "https://t.example/***/x?s=approved"),
        ("https://t.example/cb?c=pre-{customerId}-post", "https://t.example/cb?c=pre-***-post"),
        ("https://t.example/cb?v={revenue}.{payout}", "https://t.example/cb?v=***"),
        ("https://t.example/cb?v={payout}{advS1}&p={payout}", "https://t.example/cb?v=***&p=3"),
        ("https://t.example/cb?p={payout}#{advS1}", "https://t.example/cb?p=3#***"),
        ("https://t.example/cb?{advS1}=1", "https://t.example/cb?***=1"),
        ("https://t.example/cb?p={payout}", "https://t.example/cb?p=3"),
    ],
)
def test_restricted_values_are_masked_where_the_template_put_them(template: str, expected: str) -> None:
    sent = render_url(template, VALUES)
    assert mask_restricted_values(sent, template, HIDDEN) == expected


def test_values_are_kept_when_nothing_is_hidden() -> None:
    template = "https://t.example/cb?rev={revenue}"
    sent = render_url(template, VALUES)
    assert mask_restricted_values(sent, template, frozenset()) == sent


def test_a_url_that_does_not_fit_the_template_is_masked_after_the_authority() -> None:
    sent = render_url("https://t.example:8443/old/{revenue}?r={revenue}#f", VALUES)
    expected = "https://t.example:8443/***/***?***=***#***"
    assert mask_restricted_values(sent, "https://t.example:8443/new?p={payout}", HIDDEN) == expected
    assert mask_restricted_values(sent, "https://t.example:8443/old/{revenue}?r={revenue}#g", HIDDEN) == expected
    assert mask_everything_after_authority("https://t.example") == "https://t.example"


def test_masking_is_linear_on_pathological_templates() -> None:
    template = "https://t.example/cb?v=" + ".".join(["{payout}"] * 40 + ["{revenue}"])
    sent = "https://t.example/cb?v=" + "3." * 4000 + "!"
    assert mask_restricted_values(sent, template, HIDDEN) == "https://t.example/***?***=***!"
    fitting = "https://t.example/cb?v=" + "3." * 4000 + "12.5"
    assert mask_restricted_values(fitting, template, HIDDEN) == "https://t.example/cb?v=***"
