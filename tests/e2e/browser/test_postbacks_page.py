"""The Postbacks page in Chromium against the local stack (docs/contract.md §9)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from local.receiver import Receiver
from tests.e2e.browser.conftest import axe_violations, readable_affiliate, token_of
from tests.e2e.harness import Stack

pytestmark = pytest.mark.e2e


def _open_create_form(page: Page) -> None:
    page.get_by_role("button", name="Create new postback").click()
    expect(page.get_by_role("dialog", name="New postback")).to_be_visible()
    # The catalogue has arrived when the placeholder buttons are there.
    expect(page.get_by_role("button", name="{affS1}", exact=True)).to_be_visible()


def _add_tag(page: Page, label: str, value: str, key: str = "Enter") -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press(key)


def _open_postback_of(page: Page, affiliate: str) -> None:
    """Open the affiliate's postback from its own row.

    Other tests share the stack, so until the filtered list has arrived the page may still show
    their postbacks too: the button is looked for in the affiliate's row, never page-wide.
    """
    row = page.get_by_role("row").filter(has_text=affiliate)
    row.get_by_role("button", name=re.compile(r"^Open postback ")).click()


def _open_details_of(page: Page, affiliate: str) -> Any:
    page.get_by_label("Affiliate", exact=True).fill(affiliate)
    page.get_by_role("button", name="Apply filters").click()
    _open_postback_of(page, affiliate)
    return page.get_by_role("dialog", name="Postback details")


def test_create_a_global_postback_with_placeholders_and_see_its_delivery(
    admin_page: Page, web: Stack, receiver: Receiver, screenshots: Path
) -> None:
    page, affiliate = admin_page, readable_affiliate()
    expect(page.get_by_role("heading", name="Postbacks", level=1)).to_be_visible()
    _open_create_form(page)
    page.get_by_label("Source", exact=True).fill(affiliate)
    expect(page.get_by_role("radio", name="Global")).to_be_checked()
    _add_tag(page, "Offers", "offer-9")  # Enter adds the offer and never submits the form
    _add_tag(page, "Conversion types", "sale", key=",")
    _add_tag(page, "Conversion types", "lead")
    page.get_by_role("checkbox", name="approved", exact=True).check()
    page.get_by_role("checkbox", name="rejected", exact=True).check()
    url = page.get_by_label("URL", exact=True)
    url.fill(receiver.url("/cb?click=&status="))
    # Place the cursor after "click=" and insert there, then at the end.
    value = url.input_value()
    url.evaluate("(el, at) => el.setSelectionRange(at, at)", value.index("&status="))
    page.get_by_role("button", name="{affS1}", exact=True).click()
    url.press("End")
    page.get_by_role("button", name="{conversionStatus}", exact=True).click()
    expect(url).to_have_value(receiver.url("/cb?click={affS1}&status={conversionStatus}"))
    expect(page.get_by_role("button", name="{revenue}", exact=True)).to_have_class(re.compile("restricted"))
    expect(page.get_by_role("listitem").filter(has_text="offer-9")).to_be_visible()
    page.get_by_role("dialog").screenshot(path=str(screenshots / "form.png"))
    assert axe_violations(page) == []
    page.get_by_role("button", name="Save").click()

    details = page.get_by_role("dialog", name="Postback details")
    expect(details).to_contain_text("Global, except offer-9")
    expect(details).to_contain_text("No deliveries yet")
    page.get_by_role("button", name="Close").click()
    page.get_by_label("Affiliate", exact=True).fill(affiliate)
    page.get_by_role("button", name="Apply filters").click()
    row = page.get_by_role("row").filter(has_text=affiliate)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("sale")
    expect(row).to_contain_text("approved")
    expect(row).to_contain_text("{conversionStatus}")
    page.screenshot(path=str(screenshots / "list.png"))
    assert axe_violations(page) == []

    web.put_conversion(affiliate, "approved", offer_id="offer-1", aff_s1="click-abc")
    web.put_conversion(affiliate, "approved", offer_id="offer-9", aff_s1="excluded")
    (delivered,) = receiver.wait_for(1, "/cb", timeout=20)
    assert delivered.query == {"click": "click-abc", "status": "approved"}

    _open_postback_of(page, affiliate)
    log = page.get_by_role("region", name="Delivery log")
    for _ in range(40):
        if log.get_by_role("cell", name="200", exact=True).count():
            break
        log.get_by_role("button", name="Refresh log").click()
        page.wait_for_timeout(250)
    expect(log.get_by_role("cell", name="200", exact=True)).to_be_visible()
    expect(log).to_contain_text("delivered")
    expect(log).to_contain_text("click=click-abc")
    page.get_by_role("button", name="Test").click()
    result = page.get_by_role("region", name="Test fire")
    expect(result).to_contain_text("Delivered")
    expect(result).to_contain_text(receiver.url("/cb?click="))
    page.get_by_role("button", name="Refresh log").click()
    expect(log.get_by_text("test", exact=True)).to_be_visible()
    page.get_by_role("dialog").screenshot(path=str(screenshots / "log.png"))
    assert axe_violations(page) == []
    assert len(receiver.requests("/cb")) == 2  # the conversion on the excluded offer fired nothing


def test_field_errors_from_the_api_are_shown_at_their_fields(admin_page: Page) -> None:
    page = admin_page
    _open_create_form(page)
    page.get_by_label("Source", exact=True).fill(readable_affiliate())
    page.get_by_label("URL", exact=True).fill("ftp://tracker.example.com/cb?x={nope}")
    page.get_by_role("button", name="Save").click()

    for label in ("URL", "Conversion types"):
        field = page.get_by_label(label, exact=True)
        expect(field).to_have_attribute("aria-invalid", "true")
        described = field.get_attribute("aria-describedby") or ""
        messages = " ".join(page.locator(f"#{name}").inner_text() for name in described.split())
        assert "error" in described and messages.strip()
    expect(page.get_by_label("URL", exact=True)).to_have_accessible_description(re.compile("http"))
    expect(page.get_by_label("Conversion types", exact=True)).to_have_accessible_description(
        re.compile("at least one conversion type")
    )
    expect(page.get_by_role("checkbox", name="approved", exact=True)).to_have_attribute("aria-invalid", "true")
    assert axe_violations(page) == []


def test_a_stale_edit_says_changed_elsewhere_and_reloads_then_delete_asks_first(admin_page: Page, web: Stack) -> None:
    page, affiliate = admin_page, readable_affiliate()
    created = web.create_postback(affiliate, "https://tracker.example.com/cb?c={cid}")
    _open_details_of(page, affiliate)
    page.get_by_role("button", name="Edit").click()
    changed = web.api("PATCH", f"/postbacks/{created['id']}", {"url": "https://tracker.example.com/other?c={cid}"})
    assert changed.status_code == 200
    page.get_by_label("URL", exact=True).fill("https://tracker.example.com/mine?c={cid}")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("changed elsewhere")
    page.get_by_role("button", name="Reload").click()
    expect(page.get_by_label("URL", exact=True)).to_have_value("https://tracker.example.com/other?c={cid}")
    page.get_by_role("button", name="Save").click()
    details = page.get_by_role("dialog", name="Postback details")
    expect(details).to_contain_text("version 3")

    details.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("alertdialog")
    expect(confirm).to_contain_text("Delete this postback?")
    confirm.get_by_role("button", name="Keep it").click()
    assert web.api("GET", f"/postbacks/{created['id']}").status_code == 200
    details.get_by_role("button", name="Delete").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("status").filter(has_text="Postback deleted.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text=affiliate)).to_have_count(0)
    assert web.api("GET", f"/postbacks/{created['id']}").status_code == 404


def test_an_affiliate_sees_only_its_own_postbacks_and_no_source(web: Stack, new_context: Any) -> None:
    mine, theirs = readable_affiliate(), readable_affiliate()
    web.create_postback(mine, "https://mine.example.com/cb")
    web.create_postback(theirs, "https://theirs.example.com/cb")
    page: Page = new_context().new_page()
    page.goto(f"{web.web_url}/")
    page.get_by_label("Access token").fill(token_of(mine))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("https://mine.example.com/cb")).to_be_visible()
    expect(page.get_by_text("https://theirs.example.com/cb")).to_have_count(0)
    assert page.evaluate("() => Object.keys(sessionStorage)") == ["postbacks.token"]
    assert page.evaluate("() => localStorage.length") == 0
    expect(page.get_by_label("Affiliate", exact=True)).to_have_count(0)
    _open_create_form(page)
    expect(page.get_by_label("Source", exact=True)).to_have_count(0)


def _settle(page: Page) -> None:
    """Wait until the page's own API calls are done before the test calls the API itself.

    The local API server handles requests on threads, but a Chalice app holds one current request
    at a time: a call from the test while the page's are in flight could be answered for another.
    """
    page.wait_for_load_state("networkidle")


def test_show_the_signing_secret_and_rotate_it(admin_page: Page, web: Stack) -> None:
    page, affiliate = admin_page, readable_affiliate()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    _settle(page)
    created = web.create_postback(affiliate, "https://tracker.example.com/cb?ts={timestamp}&sig={signature}")
    secret_url = f"/postbacks/{created['id']}/signing-secret"
    details = _open_details_of(page, affiliate)
    section = details.get_by_role("region", name="Signing secret")
    expect(section.get_by_role("textbox", name="Signing secret")).to_have_count(0)  # not fetched until asked

    section.get_by_role("button", name="Show signing secret").click()
    field = section.get_by_role("textbox", name="Signing secret")
    expect(field).to_have_value(re.compile(r"^pbsec_"))
    expect(field).to_have_attribute("readonly", "")
    first = field.input_value()
    _settle(page)
    assert first == web.api("GET", secret_url).json()["secret"]
    expect(section.get_by_role("button", name="Copy")).to_be_visible()

    section.get_by_role("button", name="Rotate signing secret").click()
    confirm = page.get_by_role("alertdialog", name="Rotate the signing secret?")
    expect(confirm).to_contain_text("signed with the new secret")
    expect(confirm).to_contain_text("accept either for a while")
    assert axe_violations(page) == []
    confirm.get_by_role("button", name="Keep the current secret").click()
    assert web.api("GET", secret_url).json()["secret"] == first
    section.get_by_role("button", name="Rotate signing secret").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Yes, rotate").click()
    expect(section.get_by_role("status")).to_contain_text("rotated")
    expect(field).not_to_have_value(first)
    rotated = field.input_value()
    assert rotated.startswith("pbsec_")
    _settle(page)
    assert rotated == web.api("GET", secret_url).json()["secret"]

    # Hidden again on Hide and on close; never stored or logged.
    section.get_by_role("button", name="Hide signing secret").click()
    expect(field).to_have_count(0)
    section.get_by_role("button", name="Show signing secret").click()
    expect(field).to_have_value(rotated)
    page.get_by_role("button", name="Close").click()
    _open_postback_of(page, affiliate)
    expect(page.get_by_role("button", name="Show signing secret")).to_be_visible()
    expect(page.get_by_role("textbox", name="Signing secret")).to_have_count(0)
    assert page.evaluate("() => Object.keys(sessionStorage)") == ["postbacks.token"]
    assert page.evaluate("() => localStorage.length") == 0
    assert not [text for text in console if first in text or rotated in text]


def test_the_delay_round_trips_and_a_misplaced_signature_is_hinted(admin_page: Page, web: Stack) -> None:
    page, affiliate = admin_page, readable_affiliate()
    _open_create_form(page)
    page.get_by_label("Source", exact=True).fill(affiliate)
    _add_tag(page, "Conversion types", "sale")
    page.get_by_role("checkbox", name="approved", exact=True).check()
    delay = page.get_by_label("Delay (seconds)", exact=True)
    expect(delay).to_have_value("0")
    expect(delay).to_have_accessible_description(re.compile("no earlier than this after the match"))
    url = page.get_by_label("URL", exact=True)
    url.fill("https://tracker.example.com/cb?sig=")
    url.press("End")
    page.get_by_role("button", name="{signature}", exact=True).click()
    url.press("End")
    url.press_sequentially("&ts=")
    page.get_by_role("button", name="{timestamp}", exact=True).click()
    expect(url).to_have_value("https://tracker.example.com/cb?sig={signature}&ts={timestamp}")
    expect(url).to_have_accessible_description(re.compile("at the very end of the URL"))
    delay.fill("901")
    page.get_by_role("button", name="Save").click()

    # The API refuses both, and says so at each field.
    for field in (url, delay):
        expect(field).to_have_attribute("aria-invalid", "true")
    expect(delay).to_have_accessible_description(re.compile("900"))
    expect(url).to_have_accessible_description(re.compile("final query parameter"))
    assert axe_violations(page) == []

    url.fill("https://tracker.example.com/cb?ts={timestamp}&sig={signature}")
    expect(page.locator("#signature-hint")).to_have_count(0)
    delay.fill("30")
    page.get_by_role("button", name="Save").click()
    details = page.get_by_role("dialog", name="Postback details")
    expect(details).to_contain_text("30 s after the match")
    expect(details).to_contain_text("by local-admin")
    _settle(page)
    (saved,) = web.api("GET", f"/postbacks?affiliate_id={affiliate}").json()["items"]
    assert saved["delay_seconds"] == 30
    assert saved["created_by"] == saved["updated_by"] == "local-admin"
    details.get_by_role("button", name="Edit").click()
    expect(page.get_by_label("Delay (seconds)", exact=True)).to_have_value("30")
