"""The test page's tabs and push panels (Chat, Tick, Live, Stats) in a real Chromium.

What a person sees: a tab bar that the mouse, the keyboard and the address's #hash all work; two
pages chatting through /chat; the Tick counter advancing with the server's clock; the Live chart
drawing the /stream value on its canvas; the Stats table counting this page's own connections.
How the page is put together: its scripts, run in the order index.html lists them (from a file
too), and every panel's head stamped from the one <template>.
The formatting functions behind the panels are also called directly, through window.echoPage,
with values a test server could not produce in reasonable time (a day of uptime, a gigabyte).

Not here: the Echo panel and the WebSocket address (tests/test_browser.py), and the routes
themselves (tests/test_routes.py).

Chromium is Debian's /usr/bin/chromium, never one downloaded by `playwright install`. Screenshots
of each panel go to tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from browser import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    WAIT_MS,
    WWW,
    Problems,
    call,
    fresh_page,
    open_page,
)
from playwright.sync_api import (
    Browser,
    Page,
    expect,
)
from support import ServerProcess

TABS = ["echo", "inspect", "chat", "tick", "live", "stats"]
PUSH_TABS = ["chat", "tick", "live", "stats"]
MAX_TAB_PRESSES = 20
CLOCK_RE = re.compile(r"^\d\d:\d\d:\d\d$")
# The page and the server share this machine's clock: well under a second apart.
SAME_CLOCK_RE = re.compile(r"^(in step|\d{1,3} ms (ahead|behind))$")
# Pixels this close to the chart's line colour, in each channel, count as the line.
COLOUR_TOLERANCE = 8
MIN_LINE_PIXELS = 100
SCRIPT_SRC_RE = re.compile(r'<script src="([^"]+)" defer></script>')
# What each panel's head is stamped with: its id prefix and its title.
PANEL_HEADS = {
    "echo": ("", "Echo"),
    "inspect": ("inspect-", "Inspect: what the server saw"),
    "chat": ("chat-", "Chat"),
    "tick": ("tick-", "Tick: one clock for everyone"),
    "live": ("live-", "Live: numbers over the last ten minutes"),
    "stats": ("stats-", "Server statistics"),
}


@pytest.fixture
def second_page(browser: Browser) -> Iterator[Page]:
    """Another person's browser: its own context, so nothing is shared with `page`."""
    yield from fresh_page(browser)


def connect(page: Page, panel: str) -> None:
    """Show `panel`'s tab, press its Connect and wait until it says connected."""
    page.click(f"#tab-{panel}")
    page.click(f"#{panel}-connect")
    expect(page.locator(f"#{panel}-status")).to_have_text("connected", timeout=WAIT_MS)


def expect_tab_shown(page: Page, name: str) -> None:
    """`name`'s tab is the selected one and its panel the only one on show."""
    for tab in TABS:
        chosen = tab == name
        expect(page.locator(f"#tab-{tab}")).to_have_attribute("aria-selected", str(chosen).lower())
        panel = page.locator(f"#{tab}-panel")
        if chosen:
            expect(panel).to_be_visible()
        else:
            expect(panel).to_be_hidden()


def number_in(page: Page, selector: str) -> int:
    """The whole number an element shows, thousands separators and all."""
    expect(page.locator(selector)).to_have_text(re.compile(r"\d"), timeout=WAIT_MS)
    return int(re.sub(r"\D", "", page.locator(selector).inner_text()))


def chat(page: Page, text: str) -> None:
    page.fill("#chat-message", text)
    page.press("#chat-message", "Enter")


# Tabs.


def test_the_echo_tab_is_shown_when_the_address_has_no_hash(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    expect_tab_shown(page, "echo")


@pytest.mark.parametrize("name", PUSH_TABS)
def test_a_hash_in_the_address_opens_that_tab(
    page: Page, shared_web_server: ServerProcess, name: str
) -> None:
    open_page(page, shared_web_server, f"#{name}")
    expect_tab_shown(page, name)


def test_an_unknown_hash_leaves_the_echo_tab_shown(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "#nothing-here")
    expect_tab_shown(page, "echo")


def test_clicking_a_tab_shows_its_panel_and_puts_it_in_the_address(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    page.click("#tab-stats")
    expect_tab_shown(page, "stats")
    assert page.evaluate("window.location.hash") == "#stats"


def test_changing_the_hash_changes_the_tab(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server)
    page.evaluate("window.location.hash = '#tick'")
    expect_tab_shown(page, "tick")


def test_arrow_keys_home_and_end_move_between_tabs(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    page.focus("#tab-echo")
    steps = [
        ("ArrowRight", "inspect"),
        ("ArrowRight", "chat"),
        ("ArrowLeft", "inspect"),
        ("End", "stats"),
        ("ArrowRight", "echo"),  # wraps around
        ("ArrowLeft", "stats"),  # and back
        ("Home", "echo"),
    ]
    for key, name in steps:
        page.keyboard.press(key)
        expect_tab_shown(page, name)
        assert page.evaluate("document.activeElement.id") == f"tab-{name}", key


def test_only_the_chosen_tab_is_in_the_tab_order(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "#live")
    for _ in range(MAX_TAB_PRESSES):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('role')") == "tab":
            break
    else:
        pytest.fail(f"no tab reached in {MAX_TAB_PRESSES} presses of Tab")
    assert page.evaluate("document.activeElement.id") == "tab-live"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('role')") != "tab"


def test_tabs_work_in_a_page_opened_from_a_file(browser: Browser) -> None:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    try:
        opened = context.new_page()
        opened.on("pageerror", lambda error: errors.append(str(error)))
        opened.goto((WWW / "index.html").as_uri() + "#chat")
        expect(opened.locator("html")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
        expect_tab_shown(opened, "chat")
        opened.click("#tab-tick")
        expect_tab_shown(opened, "tick")
    finally:
        context.close()
    assert errors == []


# How the page is put together.


def script_sources(index: Path) -> list[str]:
    """The scripts index.html loads, in its order."""
    return SCRIPT_SRC_RE.findall(index.read_text())


def open_file_page(browser: Browser, index: Path, errors: list[str]) -> Page:
    """`index` opened from file:// in a context of its own; page errors go to `errors`."""
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(index.as_uri())
    return opened


def test_the_scripts_run_in_the_order_index_html_lists_them_from_a_file(
    browser: Browser,
) -> None:
    sources = script_sources(WWW / "index.html")
    assert sources[0] == "js/page.js"
    assert sources[-1] == "js/start.js"
    errors: list[str] = []
    opened = open_file_page(browser, WWW / "index.html", errors)
    try:
        expect(opened.locator("html")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
        loaded = opened.evaluate("window.echoPage.loaded")
        assert ["js/page.js"] + [f"js/{name}.js" for name in loaded] == sources
        assert opened.locator("script:not([src])").count() == 0
    finally:
        opened.context.close()
    assert errors == []


def test_a_script_run_too_early_stops_the_page_saying_which_it_needs(
    browser: Browser, tmp_path: Path
) -> None:
    copy = tmp_path / "www"
    shutil.copytree(WWW, copy)
    index = copy / "index.html"
    html = index.read_text()
    log_tag = '<script src="js/log.js" defer></script>'
    format_tag = '<script src="js/format.js" defer></script>'
    index.write_text(
        html.replace(format_tag, "FORMAT").replace(log_tag, format_tag).replace("FORMAT", log_tag)
    )
    errors: list[str] = []
    opened = open_file_page(browser, index, errors)
    try:
        opened.wait_for_load_state("load")
        assert opened.get_attribute("html", "data-ready") is None
    finally:
        opened.context.close()
    assert any("js/log.js needs js/format.js to run first" in error for error in errors), errors


def test_every_panel_head_is_stamped_from_the_one_template(
    page: Page, shared_web_server: ServerProcess
) -> None:
    html = (WWW / "index.html").read_text()
    assert html.count('<template id="panel-head"') == 1
    assert html.count('class="panel-head"') == 1
    assert html.count('data-role="connect"') == 1
    open_page(page, shared_web_server)
    # The other template is the Live tab's card of a series.
    assert page.locator("template").count() == 2
    assert page.locator('template[data-role="series-template"]').count() == 1
    assert page.locator("slot").count() == 0
    assert page.locator(".panel-head").count() == len(PANEL_HEADS)
    for name, (prefix, title) in PANEL_HEADS.items():
        panel = page.locator(f"#{name}-panel")
        head = panel.locator(":scope > .panel-head")
        expect(head.locator("h2")).to_have_text(title)
        expect(head.locator(f"#{prefix}status")).to_have_text("disconnected")
        expect(panel.locator(f"#{prefix}connect")).to_be_enabled()
        expect(panel.locator(f"#{prefix}disconnect")).to_be_disabled()
        expect(panel.locator(".panel-intro")).to_have_count(1)
        expect(panel.locator(f"#{prefix}notice")).to_be_hidden()
    # Echo's own control joins the stamped ones.
    expect(page.locator("#echo-panel .controls label:has(#heartbeat)")).to_have_count(1)


# Panels connect on their own.


def test_autoconnect_connects_the_tab_in_the_address(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "?autoconnect=1#tick")
    expect(page.locator("#tick-status")).to_have_text("connected", timeout=WAIT_MS)
    expect(page.locator("#status")).to_have_text("disconnected")


def test_each_panel_connects_and_disconnects_on_its_own(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    connect(page, "chat")
    connect(page, "tick")
    page.click("#tick-disconnect")
    expect(page.locator("#tick-status")).to_have_text("disconnected (1000 Normal Closure)")
    expect(page.locator("#chat-status")).to_have_text("connected")
    expect(page.locator("#status")).to_have_text("disconnected")


def test_the_tab_of_a_connected_panel_shows_it_from_another_tab(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    connect(page, "tick")
    page.click("#tab-echo")
    expect(page.locator("#tab-tick")).to_have_attribute("data-state", "connected")
    expect(page.locator("#tab-chat")).to_have_attribute("data-state", "disconnected")


# Chat.


def test_a_message_typed_in_one_page_appears_in_both(
    page: Page, second_page: Page, shared_web_server: ServerProcess
) -> None:
    for person, name in ((page, "Ada"), (second_page, "Bob")):
        open_page(person, shared_web_server, "#chat")
        person.fill("#chat-name", name)
        connect(person, "chat")

    chat(page, "hello from Ada")
    said = "Ada: hello from Ada"
    expect(page.locator("#chat-log .entry.sent.delivered .text")).to_have_text([said])
    expect(second_page.locator("#chat-log .entry.received .text")).to_have_text([said])

    chat(second_page, "hi Ada")
    answer = "Bob: hi Ada"
    expect(second_page.locator("#chat-log .entry.sent.delivered .text")).to_have_text([answer])
    expect(page.locator("#chat-log .entry.received .text")).to_have_text([answer])
    expect(page.locator("#chat-message")).to_have_value("")
    page.screenshot(path=ARTIFACTS / "chat.png", full_page=True)


def test_a_chat_message_without_a_name_is_sent_as_typed(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "#chat")
    connect(page, "chat")
    chat(page, "no name here")
    expect(page.locator("#chat-log .entry.sent.delivered .text")).to_have_text(["no name here"])


def test_an_empty_chat_message_is_not_sent(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server, "#chat")
    connect(page, "chat")
    chat(page, "   ")
    chat(page, "after the empty one")
    expect(page.locator("#chat-log .entry.sent .text")).to_have_text(["after the empty one"])


def test_chat_text_is_shown_as_text_never_as_markup(
    page: Page, second_page: Page, shared_web_server: ServerProcess
) -> None:
    for person in (page, second_page):
        open_page(person, shared_web_server, "#chat")
        connect(person, "chat")
    markup = '<img src="x" alt="injected">'
    chat(page, markup)
    expect(second_page.locator("#chat-log .entry.received .text")).to_have_text([markup])
    expect(second_page.locator("#chat-log img")).to_have_count(0)


# Tick.


# The tick and its server time, read in one go: a tick may land between two separate reads.
READ_TICK = """() => {
  const time = document.querySelector("#tick-time");
  return {
    tick: Number(document.querySelector("#tick-value").textContent.replace(/\\D/g, "")),
    text: time.textContent,
    time: time.dateTime,
  };
}"""


def wait_for_tick(page: Page, at_least: int) -> tuple[int, str, datetime]:
    """Wait until the Tick panel shows `at_least`; return the tick, the time shown, its stamp."""
    page.wait_for_function(
        """(wanted) => {
          const text = document.querySelector("#tick-value").textContent;
          return /\\d/.test(text) && Number(text.replace(/\\D/g, "")) >= wanted;
        }""",
        arg=at_least,
        timeout=WAIT_MS,
    )
    reading = page.evaluate(READ_TICK)
    return int(reading["tick"]), str(reading["text"]), datetime.fromisoformat(reading["time"])


def test_the_tick_advances_once_a_second(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server, "#tick")
    connect(page, "tick")
    greeted = number_in(page, "#tick-value")
    # The greeting is stamped when it was sent, a tick when it fired: compare ticks only, and by
    # the server's stamps, which a busy browser handling two ticks at once cannot bunch up.
    first, _, first_time = wait_for_tick(page, greeted + 1)
    second, _, second_time = wait_for_tick(page, first + 2)
    elapsed_s = (second_time - first_time).total_seconds()
    assert abs(elapsed_s - (second - first)) < 0.5, (first, second, elapsed_s)
    page.screenshot(path=ARTIFACTS / "tick.png", full_page=True)


def test_the_tick_panel_shows_the_server_time_as_local_time(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "#tick")
    connect(page, "tick")
    _, text, stamp = wait_for_tick(page, 0)
    assert CLOCK_RE.match(text), text
    assert abs((stamp - datetime.now(UTC)).total_seconds()) < 5
    assert text == stamp.astimezone().strftime("%H:%M:%S")


def test_the_tick_panel_shows_how_far_the_clock_is_from_the_server(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "#tick")
    connect(page, "tick")
    expect(page.locator("#tick-offset")).to_have_text(SAME_CLOCK_RE, timeout=WAIT_MS)


# Live.

# Counts the canvas pixels drawn in the line's colour (the canvas's CSS `color`), fully opaque.
COUNT_LINE_PIXELS = """
([selector, tolerance]) => {
  const canvas = document.querySelector(selector);
  const line = getComputedStyle(canvas).color.match(/\\d+/g).slice(0, 3).map(Number);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    const near = line.every((value, channel) => Math.abs(data[i + channel] - value) <= tolerance);
    if (near && data[i + 3] >= 250) {
      count += 1;
    }
  }
  return count;
}
"""


DEMO_CARD = '[data-series="demo"]'


def line_pixels(page: Page, card: str = DEMO_CARD) -> int:
    count: int = page.evaluate(COUNT_LINE_PIXELS, [f"{card} canvas", COLOUR_TOLERANCE])
    return count


def live_points(page: Page, series: str = "demo") -> list[dict[str, float]]:
    points: list[dict[str, float]] = page.evaluate(
        "(name) => window.echoPage.panels.live.series[name]?.points ?? []", series
    )
    return points


def wait_for_points(page: Page, at_least: int, series: str = "demo") -> None:
    page.wait_for_function(
        "([name, count]) => "
        "(window.echoPage.panels.live.series[name]?.points.length ?? 0) >= count",
        arg=[series, at_least],
        timeout=WAIT_MS,
    )


def test_the_live_tab_has_no_chart_before_connect(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "#live")
    assert live_points(page) == []
    expect(page.locator(".series-card")).to_have_count(0)
    expect(page.locator("#live-summary")).to_have_text("No series yet. Press Connect.")


def test_the_live_chart_draws_the_demo_series_as_it_arrives(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "#live")
    connect(page, "live")
    wait_for_points(page, 3)
    points = live_points(page)
    values = [point["v"] for point in points]
    assert values == sorted(values), "the demo value only grows"
    times = [point["t"] for point in points]
    assert times == sorted(times), "points are kept oldest first"
    assert number_in(page, f'{DEMO_CARD} [data-role="value"]') >= values[-1]
    page.wait_for_function(
        f"(args) => ({COUNT_LINE_PIXELS})(args) >= {MIN_LINE_PIXELS}",
        arg=[f"{DEMO_CARD} canvas", COLOUR_TOLERANCE],
        timeout=WAIT_MS,
    )
    expect(page.locator(f'{DEMO_CARD} [data-role="summary"]')).to_have_text(
        re.compile(r"values? in the last ten minutes")
    )
    # A few more steps, for a picture worth looking at.
    wait_for_points(page, 8)
    page.screenshot(path=ARTIFACTS / "live.png", full_page=True)


def test_the_live_chart_is_sized_in_device_pixels(
    browser: Browser, shared_web_server: ServerProcess
) -> None:
    context = browser.new_context(viewport=DESKTOP, device_scale_factor=2)
    context.set_default_timeout(WAIT_MS)
    try:
        dense = context.new_page()
        open_page(dense, shared_web_server, "#live")
        connect(dense, "live")
        wait_for_points(dense, 2)
        size = dense.wait_for_function(
            """() => {
              const canvas = document.querySelector('[data-series="demo"] canvas');
              return canvas.width === Math.round(canvas.clientWidth * 2) &&
                canvas.height === Math.round(canvas.clientHeight * 2) &&
                [canvas.width, canvas.clientWidth];
            }""",
            timeout=WAIT_MS,
        ).json_value()
        assert size[0] == 2 * size[1] > 0
    finally:
        context.close()


def test_a_new_live_connection_starts_again_from_the_servers_history(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "#live")
    connect(page, "live")
    wait_for_points(page, 2)
    page.click("#live-disconnect")
    expect(page.locator("#live-status")).to_have_text("disconnected (1000 Normal Closure)")
    last_before = live_points(page)[-1]["t"]
    page.click("#live-connect")
    expect(page.locator("#live-status")).to_have_text("connected", timeout=WAIT_MS)
    # The greeting is the whole history, the time before the disconnect included, and then
    # the points made while this page was away.
    wait_for_points(page, 1)
    assert live_points(page)[0]["t"] <= last_before
    page.wait_for_function(
        "(last) => window.echoPage.panels.live.series.demo.points.at(-1).t > last",
        arg=last_before,
        timeout=WAIT_MS,
    )


# Stats.


def route_row(page: Page, route: str) -> Any:
    return page.locator(f'#stats-table tr[data-route="{route}"]')


def test_stats_count_this_page_s_own_connections(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    connect(page, "tick")
    connect(page, "stats")
    for route in ("/stats", "/tick"):
        row = route_row(page, route)
        expect(row.locator(".own")).to_have_text("this page: 1", timeout=WAIT_MS)
        assert number_in(page, f'#stats-table tr[data-route="{route}"] .count') >= 1
    expect(route_row(page, "/chat").locator(".own")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "stats.png", full_page=True)


def test_stats_show_uptime_and_traffic(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server, "#stats")
    connect(page, "stats")
    table = page.locator("#stats-table")
    expect(table.locator("tr", has_text="Uptime").locator("td")).to_have_text(
        re.compile(r"^\d+ (s|min \d\d s|h \d\d min|d \d\d h)$"), timeout=WAIT_MS
    )
    for label in ("Open", "Connections accepted", "Messages in", "Messages out"):
        expect(table.locator("tr", has_text=label).locator("td")).to_have_text(re.compile(r"\d"))
    for label in ("Bytes in", "Bytes out"):
        cell = table.locator("tr", has_text=label).locator("td")
        expect(cell).to_have_text(re.compile(r"^\d+(\.\d)? (B|KiB|MiB|GiB|TiB)$"))


def test_stats_are_updated_every_second(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server, "#stats")
    connect(page, "stats")
    updated = page.locator("#stats-updated")
    expect(updated).to_have_text(re.compile(r"^Updated \d\d:\d\d:\d\d"), timeout=WAIT_MS)
    first = updated.inner_text()
    expect(updated).not_to_have_text(first, timeout=WAIT_MS)


# Formatting, through the page's own pure functions.


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (42.9, "42 s"),
        (185, "3 min 05 s"),
        (7380, "2 h 03 min"),
        (4 * 86400 + 2 * 3600 + 59, "4 d 02 h"),
    ],
)
def test_uptime_is_shown_in_the_largest_two_units(
    functions_page: Page, seconds: float, text: str
) -> None:
    assert call(functions_page, "formatDuration", seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (300 * 1024, "300 KiB"),
        (5 * 1024**3, "5.0 GiB"),
    ],
)
def test_byte_counts_are_shown_in_powers_of_1024(
    functions_page: Page, size: int, text: str
) -> None:
    assert call(functions_page, "formatBytes", size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0001, "in step"),
        (0.012, "12 ms ahead"),
        (-0.25, "250 ms behind"),
        (-3.24, "3.2 s behind"),
        (125, "2 min 05 s ahead"),
    ],
)
def test_the_clock_difference_says_ahead_or_behind(
    functions_page: Page, seconds: float, text: str
) -> None:
    assert call(functions_page, "formatOffset", seconds) == text


@pytest.mark.parametrize(
    ("rough", "step"),
    [(0, 1), (0.3, 1), (3, 5), (7, 10), (12, 20), (180, 200), (4500, 5000)],
)
def test_chart_labels_step_by_1_2_or_5_times_a_power_of_ten(
    functions_page: Page, rough: float, step: int
) -> None:
    assert call(functions_page, "niceStep", rough) == step


# Everyone can use it.


def test_no_console_errors_and_no_csp_violations_across_the_panels(
    page: Page, shared_web_server: ServerProcess
) -> None:
    problems = Problems(page)
    open_page(page, shared_web_server)
    for panel in PUSH_TABS:
        connect(page, panel)
    page.click("#tab-chat")
    chat(page, "hello")
    expect(page.locator("#chat-log .entry.sent.delivered")).to_have_count(1)
    number_in(page, "#tick-value")
    wait_for_points(page, 2)
    expect(route_row(page, "/stats")).to_have_count(1, timeout=WAIT_MS)
    for panel in PUSH_TABS:
        page.click(f"#tab-{panel}")
        page.click(f"#{panel}-disconnect")
        expect(page.locator(f"#{panel}-status")).to_have_text("disconnected (1000 Normal Closure)")
    problems.assert_none()


def test_every_tab_fits_a_phone_screen_in_dark_mode(
    browser: Browser, shared_web_server: ServerProcess
) -> None:
    context = browser.new_context(
        viewport=PHONE, color_scheme="dark", is_mobile=True, device_scale_factor=2
    )
    context.set_default_timeout(WAIT_MS)
    try:
        phone = context.new_page()
        open_page(phone, shared_web_server, "#live")
        connect(phone, "live")
        wait_for_points(phone, 2)
        for name in TABS:
            phone.click(f"#tab-{name}")
            expect_tab_shown(phone, name)
            overflow = phone.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, name
        phone.click("#tab-live")
        phone.screenshot(path=ARTIFACTS / "live-phone-dark.png", full_page=True)
    finally:
        context.close()
