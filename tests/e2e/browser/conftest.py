"""Browser tests of the Postbacks page: Playwright driving the system's Chromium against the shared stack.

Playwright cannot download a browser here: it launches /usr/bin/chromium (`make install` installs
it where missing). The page is built by `make test` (`make web`); `ensure_built` makes running
this folder alone work too. Screenshots go to a temporary folder, or to docs/screenshots with
`POSTBACKS_SCREENSHOTS=1` (`make screenshots`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from functions.settings import load_settings
from local.tokens import affiliate_token
from local.web_build import WEB, ensure_built
from tests.e2e.harness import Stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make install` (it installs Debian's chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1360, "height": 860}}


@pytest.fixture(scope="session")
def web(stack: Stack) -> Stack:
    ensure_built(log=False)
    return stack


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    if os.environ.get("POSTBACKS_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SCREENSHOTS
    return tmp_path


@pytest.fixture
def admin_page(page: Page, web: Stack) -> Page:
    page.set_default_timeout(10_000)
    page.goto(f"{web.web_url}/#token={web.token}")
    return page


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Any]:
    contexts: list[BrowserContext] = []

    def _new() -> BrowserContext:
        context = browser.new_context(viewport={"width": 1360, "height": 860})
        contexts.append(context)
        return context

    yield _new
    for context in contexts:
        context.close()


def token_of(affiliate_id: str) -> str:
    return affiliate_token(load_settings({"POSTBACKS_STAGE": "local"}), affiliate_id)


def readable_affiliate() -> str:
    return f"aff-{uuid.uuid4().hex[:6]}"


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate("async () => await axe.run(document)")
    return [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]
