"""The browser test page (www/) in a real Chromium, served by the real page server.

What a person sees: Connect and Disconnect, the status, the log with its echoed stars and their
round-trip times, the message box, the notice when the WebSocket server cannot be reached, and the
WebSocket address the page works out from its own. What the page takes from /config.json (the
port, each tab's path, the routes' and close codes' names), and the built-in defaults it falls
back on when there is none (a page opened from a file). The address functions are also called
directly, through window.echoPage, with location objects a test server could not produce (https,
IPv6).

Not here: the WebSocket protocol and the page server's own headers and files (their own tests).

Chromium is Debian's /usr/bin/chromium, never one downloaded by `playwright install`. Screenshots
go to tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import datetime

import pytest
from browser import (
    ARTIFACTS,
    PHONE,
    WAIT_MS,
    WWW,
    Problems,
    call,
    edit_config_json,
    open_page,
    served_config,
)
from conftest import StartServer
from playwright.sync_api import (
    Browser,
    Page,
    expect,
)
from support import ServerProcess, start

from echo_server import defaults

MAX_TAB_PRESSES = 20
RTT_RE = re.compile(r"^\d+(\.\d)? ms$")
STAMP_RE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$")


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: bound by us to get a free one, then closed again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def connect(page: Page) -> None:
    page.click("#connect")
    expect(page.locator("#status")).to_have_text("connected", timeout=WAIT_MS)


def wait_for_count(page: Page, selector: str, at_least: int) -> None:
    page.wait_for_function(
        "([selector, count]) => document.querySelectorAll(selector).length >= count",
        arg=[selector, at_least],
        timeout=WAIT_MS,
    )


# Connecting, echoing, disconnecting.


def test_nothing_connects_until_connect_is_pressed(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    expect(page.locator("#status")).to_have_text("disconnected")
    expect(page.locator("#log .entry")).to_have_count(0)


def test_connect_shows_connected_and_an_echoed_star_with_its_round_trip_time(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    connect(page)
    echoed = page.locator("#log .entry.received").first
    expect(echoed.locator(".text")).to_have_text("*", timeout=WAIT_MS)
    expect(echoed.locator(".rtt")).to_have_text(RTT_RE)
    expect(page.locator("#log .entry.sent .text").first).to_have_text("*")
    page.screenshot(path=ARTIFACTS / "echo-connected.png", full_page=True)


def test_a_star_is_sent_every_second_while_connected(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    connect(page)
    wait_for_count(page, "#log .entry.sent", 3)
    stamps = page.locator("#log .entry.sent .stamp").all_text_contents()[:3]
    first, third = (datetime.strptime(stamp, "%H:%M:%S.%f") for stamp in (stamps[0], stamps[2]))
    assert 1.6 <= (third - first).total_seconds() <= 4.0, stamps


def test_log_entries_show_a_time_stamp_and_a_direction(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    connect(page)
    received = page.locator("#log .entry.received").first
    expect(received).to_be_visible(timeout=WAIT_MS)
    sent = page.locator("#log .entry.sent").first
    expect(sent.locator(".stamp")).to_have_text(STAMP_RE)
    expect(sent.locator(".direction")).to_have_text("↑ sent")
    expect(received.locator(".stamp")).to_have_text(STAMP_RE)
    expect(received.locator(".direction")).to_have_text("↓ received")


def test_typed_text_is_sent_and_comes_back(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server)
    connect(page)
    page.fill("#message", "hello, echo")
    page.press("#message", "Enter")
    expect(page.locator("#log .entry.sent .text", has_text="hello, echo")).to_have_count(1)
    echoed = page.locator("#log .entry.received", has_text="hello, echo")
    expect(echoed.locator(".rtt")).to_have_text(RTT_RE, timeout=WAIT_MS)
    expect(page.locator("#message")).to_have_value("")


def test_received_text_is_shown_as_text_never_as_markup(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    connect(page)
    markup = '<img src="x" alt="injected">'
    page.fill("#message", markup)
    page.click("#send")
    expect(page.locator("#log .entry.received .text", has_text=markup)).to_have_count(1)
    expect(page.locator("#log img")).to_have_count(0)


def test_disconnect_shows_disconnected_with_code_1000(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    connect(page)
    page.click("#disconnect")
    expect(page.locator("#status")).to_have_text("disconnected (1000 Normal Closure)")
    expect(page.locator("#notice")).to_be_hidden()
    page.screenshot(path=ARTIFACTS / "echo-disconnected.png", full_page=True)


def test_only_the_buttons_that_make_sense_are_enabled(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    expect(page.locator("#connect")).to_be_enabled()
    expect(page.locator("#disconnect")).to_be_disabled()
    expect(page.locator("#send")).to_be_disabled()
    connect(page)
    expect(page.locator("#connect")).to_be_disabled()
    expect(page.locator("#disconnect")).to_be_enabled()
    expect(page.locator("#send")).to_be_enabled()


def test_autoconnect_query_connects_at_once(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server, "?autoconnect=1")
    expect(page.locator("#status")).to_have_text("connected", timeout=WAIT_MS)


def test_clear_empties_the_log(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server)
    connect(page)
    page.uncheck("#heartbeat")
    expect(page.locator("#log .entry").first).to_be_visible()
    page.click("#clear")
    expect(page.locator("#log .entry")).to_have_count(0)


def test_log_keeps_at_most_500_entries(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server)
    connect(page)
    page.uncheck("#heartbeat")
    # Through the panel's own send(): 600 clicks on Send would test the speed of forms instead.
    page.evaluate(
        """(count) => {
          for (let i = 0; i < count; i += 1) {
            window.echoPage.panels.echo.send("message " + i);
          }
        }""",
        600,
    )
    last = page.locator("#log .entry.received .text", has_text=re.compile(r"^message 599$"))
    expect(last).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#log .entry")).to_have_count(500)


# When the server is not there.


def test_unreachable_server_is_reported_in_the_notice(
    page: Page, shared_web_server: ServerProcess, closed_port: int
) -> None:
    open_page(page, shared_web_server, f"?ws={closed_port}")
    page.click("#connect")
    notice = page.locator("#notice")
    expect(notice).to_contain_text(
        f"Could not reach the WebSocket server at ws://127.0.0.1:{closed_port}/. Is it running?",
        timeout=WAIT_MS,
    )
    expect(notice).to_contain_text("make ws")
    expect(page.locator("#status")).to_have_text(re.compile(r"^disconnected \(1006 "))
    expect(page.locator("#connect")).to_be_enabled()
    page.screenshot(path=ARTIFACTS / "echo-unreachable.png", full_page=True)


def test_a_lost_connection_is_told_apart_from_a_failed_connect(
    page: Page, start_server: StartServer
) -> None:
    own_ws = start_server("ws", "--port", "0")
    own_web = start_server("web", "--port", "0", "--ws-port", str(own_ws.port))
    open_page(page, own_web)
    connect(page)
    own_ws.stop()
    notice = page.locator("#notice")
    expect(notice).to_contain_text(
        re.compile(r"The (server closed the connection|connection to the server was lost)"),
        timeout=WAIT_MS,
    )
    expect(notice).not_to_contain_text("Could not reach")
    expect(page.locator("#status")).to_have_text(re.compile(r"^disconnected \(\d{4}"))
    page.screenshot(path=ARTIFACTS / "echo-lost.png", full_page=True)


# The WebSocket address.


def test_the_ws_port_comes_from_config_json(
    page: Page, shared_web_server: ServerProcess, shared_ws_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    expect(page.locator("#ws-url")).to_have_text(f"ws://127.0.0.1:{shared_ws_server.port}/")


def test_a_ws_query_overrides_the_port(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server, "?ws=4321")
    expect(page.locator("#ws-url")).to_have_text("ws://127.0.0.1:4321/")


def test_a_path_query_chooses_the_path(
    page: Page, shared_web_server: ServerProcess, shared_ws_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "?path=/echo")
    expect(page.locator("#ws-url")).to_have_text(f"ws://127.0.0.1:{shared_ws_server.port}/echo")


def test_an_https_page_gets_a_wss_address(functions_page: Page) -> None:
    location = {"protocol": "https:", "hostname": "pi.local", "search": ""}
    assert call(functions_page, "wsUrlFor", location, 8001, "/") == "wss://pi.local:8001/"


def test_an_http_page_gets_a_ws_address_on_the_ws_port(functions_page: Page) -> None:
    location = {"protocol": "http:", "hostname": "192.168.1.20", "search": ""}
    assert call(functions_page, "wsUrlFor", location, 9001, "/") == "ws://192.168.1.20:9001/"


@pytest.mark.parametrize("hostname", ["[::1]", "::1"])
def test_an_ipv6_literal_host_is_bracketed_once(functions_page: Page, hostname: str) -> None:
    location = {"protocol": "http:", "hostname": hostname, "search": ""}
    assert call(functions_page, "wsUrlFor", location, 8001, "/") == "ws://[::1]:8001/"


def test_a_page_from_file_uses_localhost(functions_page: Page) -> None:
    expect(functions_page.locator("#ws-url")).to_have_text("ws://localhost:8001/")


@pytest.mark.parametrize(
    ("search", "port"),
    [
        ("?ws=9001", 9001),
        ("?autoconnect=1&ws=1", 1),
        ("?ws=65535", 65535),
        ("?ws=0", None),
        ("?ws=65536", None),
        ("?ws=80abc", None),
        ("?ws=", None),
        ("", None),
    ],
)
def test_the_ws_query_must_be_a_port_number(
    functions_page: Page, search: str, port: int | None
) -> None:
    assert call(functions_page, "wsPortFromSearch", search) == port


@pytest.mark.parametrize(
    ("search", "path"),
    [("", "/"), ("?path=/echo", "/echo"), ("?path=chat", "/chat"), ("?path=/a%20b", None)],
)
def test_the_path_query_must_be_a_path(functions_page: Page, search: str, path: str | None) -> None:
    assert call(functions_page, "pathFromSearch", search) == path


# What the page takes from /config.json, and what it does without one.


def test_the_page_uses_the_config_json_it_is_served(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    in_use = page.evaluate("window.echoPage.config")
    assert in_use == {"source": "/config.json", "values": served_config(page, shared_web_server)}
    expect(page.locator("#log .entry")).to_have_count(0)


def test_a_close_code_is_shown_with_the_name_config_json_gives_it(
    page: Page, start_server: StartServer
) -> None:
    own_ws = start_server("ws", "--port", "0", "--rate-limit", "1")
    own_web = start_server("web", "--port", "0", "--ws-port", str(own_ws.port))
    name = served_config(page, own_web)["close_codes"]["1008"]
    assert name == "Policy Violation"
    open_page(page, own_web, "#chat")
    page.click("#chat-connect")
    expect(page.locator("#chat-status")).to_have_text("connected", timeout=WAIT_MS)
    # Over the rate limit (1 a second, bursts of 2): the server closes with 1008.
    page.evaluate(
        "() => { for (let i = 0; i < 10; i += 1) window.echoPage.panels.chat.send('m' + i); }"
    )
    expect(page.locator("#chat-status")).to_have_text(
        f"disconnected (1008 {name}: rate limit: over 1 messages/s)", timeout=WAIT_MS
    )


def test_close_code_names_come_from_config_json_not_from_the_page(
    page: Page, shared_web_server: ServerProcess
) -> None:
    edit_config_json(page, lambda config: config["close_codes"].update({"1000": "All Done"}))
    open_page(page, shared_web_server)
    connect(page)
    page.click("#disconnect")
    expect(page.locator("#status")).to_have_text("disconnected (1000 All Done)")


def test_each_tab_connects_to_the_path_config_json_gives_it(
    page: Page, shared_web_server: ServerProcess, shared_ws_server: ServerProcess
) -> None:
    edit_config_json(page, lambda config: config["tabs"].update({"echo": "/echo"}))
    open_page(page, shared_web_server)
    expect(page.locator("#ws-url")).to_have_text(f"ws://127.0.0.1:{shared_ws_server.port}/echo")
    connect(page)
    expect(page.locator("#log .entry.received .rtt").first).to_have_text(RTT_RE, timeout=WAIT_MS)


def test_the_stats_table_names_each_route_as_config_json_does(
    page: Page, shared_web_server: ServerProcess
) -> None:
    edit_config_json(page, lambda config: config["routes"].update({"/tick": "the clock"}))
    open_page(page, shared_web_server, "#stats")
    page.click("#stats-connect")
    row = page.locator('#stats-table tr[data-route="/tick"]')
    expect(row.locator(".route-name")).to_have_text("the clock", timeout=WAIT_MS)


def test_a_page_that_cannot_fetch_config_json_says_so_and_uses_the_defaults(
    page: Page, shared_web_server: ServerProcess
) -> None:
    page.route("**/config.json", lambda route: route.abort("connectionrefused"))
    open_page(page, shared_web_server)
    expect(page.locator("#log .entry.info .text")).to_have_text(
        [re.compile(r"^Using the built-in defaults: could not fetch /config\.json \(.+\)$")]
    )
    expect(page.locator("#ws-url")).to_have_text(f"ws://127.0.0.1:{defaults.WS_PORT}/")


def test_an_unusable_part_of_config_json_is_replaced_by_the_default_and_said(
    page: Page, shared_web_server: ServerProcess, shared_ws_server: ServerProcess
) -> None:
    edit_config_json(page, lambda config: config.update({"close_codes": ["not", "a", "map"]}))
    open_page(page, shared_web_server)
    expect(page.locator("#log .entry.info .text")).to_have_text(
        ["Using the built-in close_codes: /config.json has none that is usable"]
    )
    expect(page.locator("#ws-url")).to_have_text(f"ws://127.0.0.1:{shared_ws_server.port}/")
    connect(page)
    page.click("#disconnect")
    expect(page.locator("#status")).to_have_text("disconnected (1000 Normal Closure)")


def test_the_built_in_defaults_are_what_the_page_server_sends(
    functions_page: Page, shared_web_server: ServerProcess
) -> None:
    served = served_config(functions_page, shared_web_server)
    built_in = functions_page.evaluate("window.echoPage.DEFAULT_CONFIG")
    assert built_in == {**served, "ws_port": defaults.WS_PORT}


def test_a_page_from_a_file_says_it_uses_the_built_in_defaults(functions_page: Page) -> None:
    assert functions_page.evaluate("window.echoPage.config.source") == "built-in defaults"
    expect(functions_page.locator("#log .entry.info .text")).to_have_text(
        [
            "Using the built-in defaults: a page opened from a file has no page server to ask "
            "for /config.json"
        ]
    )


def test_a_page_from_a_file_works_with_the_server_its_ws_query_names(
    page: Page, start_server: StartServer
) -> None:
    # A page from a file sends "Origin: null", which the server refuses unless told otherwise.
    own_ws = start_server("ws", "--port", "0", "--allow-origin", "null")
    problems = Problems(page)
    page.goto((WWW / "index.html").as_uri() + f"?ws={own_ws.port}")
    expect(page.locator("html")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    expect(page.locator("#ws-url")).to_have_text(f"ws://localhost:{own_ws.port}/")
    connect(page)
    expect(page.locator("#log .entry.received .rtt").first).to_have_text(RTT_RE, timeout=WAIT_MS)
    page.click("#disconnect")
    expect(page.locator("#status")).to_have_text("disconnected (1000 Normal Closure)")
    page.click("#tab-tick")
    page.click("#tick-connect")
    expect(page.locator("#tick-value")).to_have_text(re.compile(r"\d"), timeout=WAIT_MS)
    problems.assert_none()


# Everyone can use it.


def test_no_console_errors_and_no_csp_violations_in_a_session(
    page: Page, shared_web_server: ServerProcess
) -> None:
    problems = Problems(page)
    open_page(page, shared_web_server)
    connect(page)
    page.fill("#message", "hello")
    page.press("#message", "Enter")
    expect(page.locator("#log .entry.received .text", has_text="hello")).to_have_count(1)
    page.click("#clear")
    page.click("#disconnect")
    expect(page.locator("#status")).to_have_text("disconnected (1000 Normal Closure)")
    problems.assert_none()


def test_the_keyboard_alone_can_connect_and_send(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    for _ in range(MAX_TAB_PRESSES):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "connect":
            break
    else:
        pytest.fail(f"Connect was not reached in {MAX_TAB_PRESSES} presses of Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text("connected", timeout=WAIT_MS)
    page.focus("#message")
    page.keyboard.type("typed")
    page.keyboard.press("Enter")
    expect(page.locator("#log .entry.received .text", has_text="typed")).to_have_count(1)


def test_the_page_fits_a_phone_screen_in_dark_mode(
    browser: Browser, shared_web_server: ServerProcess
) -> None:
    context = browser.new_context(viewport=PHONE, color_scheme="dark", is_mobile=True)
    context.set_default_timeout(WAIT_MS)
    try:
        phone = context.new_page()
        open_page(phone, shared_web_server)
        connect(phone)
        expect(phone.locator("#log .entry.received .rtt").first).to_be_visible(timeout=WAIT_MS)
        overflow = phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        phone.screenshot(path=ARTIFACTS / "echo-phone-dark.png", full_page=True)
    finally:
        context.close()


# Subprotocols: the Echo panel's field, and the one the server chose.


@pytest.fixture(scope="module")
def mqtt_web_server() -> Iterator[ServerProcess]:
    """A WebSocket server that speaks mqtt (--subprotocol mqtt), and its page server."""
    ws = start(["ws", "--port", "0", "--subprotocol", "mqtt"])
    web = start(["web", "--port", "0", "--ws-port", str(ws.port)])
    yield web
    web.stop()
    ws.stop()


def test_the_subprotocol_the_server_chose_is_shown(
    page: Page, mqtt_web_server: ServerProcess
) -> None:
    problems = Problems(page)
    open_page(page, mqtt_web_server)
    expect(page.locator("#subprotocol")).to_have_text("none")
    page.fill("#subprotocols", "ocpp1.6, mqtt")
    connect(page)
    expect(page.locator("#subprotocol")).to_have_text("mqtt")
    expect(page.locator("#log .entry.info .text").last).to_have_text(
        "Subprotocol chosen by the server: mqtt", timeout=WAIT_MS
    )
    expect(page.locator("#subprotocols")).to_be_disabled()
    # The page's own record of the socket, which the browser filled from the 101 response.
    assert page.evaluate("window.echoPage.panels.echo.socket.protocol") == "mqtt"
    page.click("#disconnect")
    expect(page.locator("#subprotocols")).to_be_enabled(timeout=WAIT_MS)
    problems.assert_none()


def test_a_server_that_speaks_none_of_the_offer_fails_in_a_browser_and_the_page_says_why(
    page: Page, mqtt_web_server: ServerProcess
) -> None:
    # The server answers 101 with no Sec-WebSocket-Protocol (RFC 6455 lets a client go on);
    # browsers fail the connection instead (WHATWG WebSockets), and the page sees only 1006.
    open_page(page, mqtt_web_server)
    page.fill("#subprotocols", "graphql-transport-ws")
    page.click("#connect")
    expect(page.locator("#status")).to_have_text(re.compile(r"^disconnected \(1006 "))
    expect(page.locator("#notice")).to_contain_text(
        "browsers fail the connection when the server picks none of the offered subprotocols",
        timeout=WAIT_MS,
    )
    expect(page.locator("#notice")).to_contain_text("graphql-transport-ws")
    expect(page.locator("#subprotocol")).to_have_text("none")


def test_a_name_that_is_not_a_subprotocol_is_refused_before_connecting(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    page.fill("#subprotocols", "ocpp1.6, two words")
    page.click("#connect")
    expect(page.locator("#notice")).to_contain_text("is not a subprotocol name")
    expect(page.locator("#status")).to_have_text("disconnected")
    page.fill("#subprotocols", "mqtt, mqtt")
    page.click("#connect")
    expect(page.locator("#notice")).to_contain_text("offered twice")
    expect(page.locator("#status")).to_have_text("disconnected")
