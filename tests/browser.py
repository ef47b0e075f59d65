"""What the browser tests share: Debian's Chromium driven by Playwright, and a fresh page.

Chromium is /usr/bin/chromium, never one downloaded by `playwright install`. Without it the
browser tests skip with the reason, except in CI (CI set), where they fail. The fixtures built
on these live in conftest.py; screenshots go to tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Route,
    ViewportSize,
    expect,
    sync_playwright,
)
from support import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
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
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WWW = Path(__file__).resolve().parent.parent / "echo_server" / "www"
WAIT_MS = 10_000
DESKTOP: ViewportSize = {"width": 1100, "height": 900}
PHONE: ViewportSize = {"width": 360, "height": 740}

# Runs before the page's own script; collects what the Content-Security-Policy blocked.
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.violatedDirective + " blocked " + event.blockedURI);
});
"""


def launch_chromium() -> Iterator[Browser]:
    """One Chromium, closed when the generator ends."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install chromium); the page is untested"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def fresh_page(browser: Browser) -> Iterator[Page]:
    """A page in a context of its own (cookies, storage, cache), closed at the end."""
    context = browser.new_context(viewport=DESKTOP, color_scheme="light")
    context.set_default_timeout(WAIT_MS)
    yield context.new_page()
    context.close()


def page_functions(browser: Browser) -> Iterator[Page]:
    """The page from file://, loaded once: enough to call its pure functions with `call`."""
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    opened.goto((WWW / "index.html").as_uri())
    expect(opened.locator("html")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    yield opened
    context.close()


def open_page(page: Page, web_server: ServerProcess, address: str = "") -> None:
    """Load the page (address: "?query#hash") and wait until its script is ready."""
    page.goto(web_server.url("/" + address))
    expect(page.locator("html")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)


def served_config(page: Page, web_server: ServerProcess) -> dict[str, Any]:
    """The page server's /config.json, fetched over HTTP as the page fetches it."""
    config: dict[str, Any] = page.request.get(web_server.url("/config.json")).json()
    return config


def edit_config_json(page: Page, edit: Callable[[dict[str, Any]], None]) -> None:
    """Give `page` the page server's own /config.json with `edit` applied on the way.

    For the tests that show the page uses what config.json says rather than what it would have
    guessed: the real server says the same as the page's built-in defaults, so a test must make
    it say something else to tell them apart.
    """

    def handle(route: Route) -> None:
        response = route.fetch()
        config = response.json()
        edit(config)
        route.fulfill(response=response, json=config)

    page.route("**/config.json", handle)


def call(page: Page, function: str, *args: Any) -> Any:
    """Call window.echoPage[function](...args) in the page and return its result."""
    return page.evaluate("([name, args]) => window.echoPage[name](...args)", [function, list(args)])


class Problems:
    """Console errors and warnings, page errors and CSP violations seen on a page."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.seen: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.seen.append(f"page error: {error}"))
        page.add_init_script(RECORD_CSP_VIOLATIONS)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.seen.append(f"console {message.type}: {message.text}")

    def assert_none(self) -> None:
        assert self.page.evaluate("window.cspViolations") == []
        assert self.seen == []
