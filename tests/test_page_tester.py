"""The page's client-tester parts in a real Chromium: the Inspect tab, Echo's fault knobs, the
server's reason for a refusal, reconnecting by itself, binary and file messages, the message
history, and the repeated message.

What a person sees, driven through the page as they would drive it, against real servers on
free ports. Not here: the inspector's events and the knobs on the server's side (test_echo.py,
test_faults.py), the rest of the page (test_browser.py, test_browser_panels.py).
"""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from typing import Any

import pytest
from browser import WAIT_MS, Problems, edit_config_json, open_page
from conftest import StartServer
from playwright.sync_api import FilePayload, Page, expect
from support import ServerProcess, free_port, wait_until

RTT_RE = re.compile(r"^\d+(\.\d)? ms$")
RECONNECTING_RE = re.compile(r"reconnecting in \d+ s$")
MAX_INSPECT_ROWS = 200
MAX_HISTORY = 50


def connect(page: Page, prefix: str = "") -> None:
    if prefix:
        page.click(f"#tab-{prefix.rstrip('-')}")
    page.click(f"#{prefix}connect")
    expect(page.locator(f"#{prefix}status")).to_have_text("connected", timeout=WAIT_MS)


def quiet_echo(page: Page, web_server: ServerProcess, mode: str = "text") -> None:
    """The Echo tab connected without its repeated "*", sending in `mode`."""
    open_page(page, web_server)
    page.uncheck("#heartbeat")
    connect(page)
    page.select_option("#mode", mode)


def send(page: Page, text: str, box: str = "#message") -> None:
    page.fill(box, text)
    page.press(box, "Enter")


def inspect_path(page: Page, path: str) -> None:
    """Make config.json give the Inspect tab `path` (the knobs in its query)."""

    def edit(config: dict[str, Any]) -> None:
        config["tabs"]["inspect"] = path

    edit_config_json(page, edit)


def cells(page: Page, event: str) -> list[str]:
    """The cells of the first Inspect row of `event`, once there is one."""
    row = page.locator(f'#inspect-rows tr[data-event="{event}"]').first
    expect(row).to_be_visible(timeout=WAIT_MS)
    texts: list[str] = row.locator("td").all_text_contents()
    return texts


# The Inspect tab.


def test_the_inspect_tab_shows_the_handshake_the_browser_sent(
    page: Page, shared_web_server: ServerProcess, shared_ws_server: ServerProcess
) -> None:
    problems = Problems(page)
    open_page(page, shared_web_server, "#inspect")
    connect(page, "inspect-")
    block = page.locator("#inspect-handshake")
    facts = block.locator(".handshake-facts")

    def fact(name: str) -> Any:
        return facts.locator("div").filter(has=page.locator("dt", has_text=re.compile(f"^{name}$")))

    expect(fact("Method").locator("dd")).to_have_text("GET", timeout=WAIT_MS)
    expect(fact("Path").locator("dd")).to_have_text("/inspect")
    expect(fact("Client").locator("dd")).to_have_text(re.compile(r"^127\.0\.0\.1 port \d+$"))
    expect(fact("TLS").locator("dd")).to_have_text("no")
    expect(fact("Extensions offered").locator("dd")).to_contain_text("permessage-deflate")
    headers = block.locator(".handshake-headers li")
    expect(headers.first).to_have_text(f"Host: 127.0.0.1:{shared_ws_server.port}")
    sent = page.evaluate("window.echoPage.panels.inspect.handshake.headers")
    expect(headers).to_have_text([f"{name}: {value}" for name, value in sent])
    problems.assert_none()


def test_a_message_sent_from_the_inspect_tab_is_shown_as_its_frame_then_its_echo(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "#inspect")
    connect(page, "inspect-")
    send(page, "hello", "#inspect-message")
    _time, event, opcode, fin, rsv1, rsv2, rsv3, masked, length, payload, rtt, close = cells(
        page, "frame"
    )
    assert (event, opcode, fin, rsv2, rsv3, masked) == ("frame", "TEXT", "yes", "no", "no", "yes")
    # Chromium compresses (permessage-deflate is on by default): RSV1 says so, and the payload
    # is the deflated bytes, shown as hex, all of them (fewer than 64).
    assert rsv1 == "yes"
    assert payload.startswith("hex: ")
    assert len(payload.removeprefix("hex: ").split()) == int(length)
    assert (rtt, close) == ("", "")
    echo = cells(page, "echo")
    assert echo[1] == "echo" and echo[9] == "hello"
    events = page.locator("#inspect-rows tr").evaluate_all("rows => rows.map(r => r.dataset.event)")
    assert events == ["sent", "frame", "echo"]


def test_a_pong_is_shown_with_its_round_trip_time(
    page: Page, shared_web_server: ServerProcess
) -> None:
    inspect_path(page, "/inspect?ping=0.2")
    open_page(page, shared_web_server, "#inspect")
    connect(page, "inspect-")
    pong = cells(page, "pong")
    assert pong[9] == "1"  # the server's counter, as the payload
    assert RTT_RE.match(pong[10]), pong


def test_the_close_code_and_reason_are_shown(page: Page, shared_web_server: ServerProcess) -> None:
    inspect_path(page, "/inspect?close=4000:bye&after=1")
    open_page(page, shared_web_server, "#inspect")
    connect(page, "inspect-")
    send(page, "last", "#inspect-message")
    closed = cells(page, "closed")
    assert closed[11] == "4000 bye"


def test_the_inspect_table_keeps_only_the_newest_rows(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "#inspect")
    connect(page, "inspect-")
    # Three rows a message (sent, frame, echo): well past the bound.
    page.evaluate("for (let i = 0; i < 100; i++) window.echoPage.panels.inspect.send('m' + i)")
    last = page.locator('#inspect-rows tr[data-event="echo"]', has_text=re.compile(r"^.*m99"))
    expect(last).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#inspect-rows tr")).to_have_count(MAX_INSPECT_ROWS)
    expect(page.locator("#inspect-rows tr").first.locator("td").nth(9)).not_to_have_text("m0")


# Echo's fault knobs, and the server's reason for a refusal.


def test_the_knobs_make_the_query_of_the_echo_url_shown(
    page: Page, shared_web_server: ServerProcess, shared_ws_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    page.fill("#knob-delay", "200")
    page.fill("#knob-close", "4000:bye now")
    page.fill("#knob-after", "2")
    expect(page.locator("#ws-url")).to_have_text(
        f"ws://127.0.0.1:{shared_ws_server.port}/?delay=200&close=4000:bye%20now&after=2"
    )
    page.fill("#knob-close", "")
    page.fill("#knob-after", "")
    page.check("#knob-drop")
    expect(page.locator("#ws-url")).to_have_text(
        f"ws://127.0.0.1:{shared_ws_server.port}/?delay=200&drop"
    )


def test_a_knob_changes_what_the_server_does(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server)
    page.uncheck("#heartbeat")
    page.fill("#knob-repeat", "3")
    connect(page)
    expect(page.locator("#knob-repeat")).to_be_disabled()
    send(page, "thrice")
    expect(page.locator("#log .entry.received .text", has_text="thrice")).to_have_count(3)


def test_a_bad_knob_is_refused_and_the_server_s_reason_is_shown(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    page.fill("#knob-delay", "soon")
    page.click("#connect")
    expect(page.locator("#status")).to_have_text(re.compile(r"^disconnected \(1006 "))
    expect(page.locator("#notice")).to_contain_text(
        "refused: 400 Bad fault knob: delay='soon' is not a whole number", timeout=WAIT_MS
    )
    expect(page.locator("#log .entry.error .text").last).to_have_text(
        re.compile(r"^refused: 400 Bad fault knob")
    )


def test_a_path_the_server_has_no_route_for_is_refused_with_its_reason(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server, "?path=/nowhere")
    page.click("#connect")
    expect(page.locator("#notice")).to_contain_text(
        "refused: 404 No WebSocket route here", timeout=WAIT_MS
    )


def refusal_age_s(ws: ServerProcess) -> float:
    """How old the server says this address's last refusal is (0 for none)."""
    url = f"http://127.0.0.1:{ws.port}/refusal"
    with urllib.request.urlopen(url, timeout=WAIT_MS / 1000) as reply:
        answer = json.load(reply)
    return float(answer.get("age_s", 0.0))


def test_an_older_refusal_is_not_taken_for_this_attempt_s(
    page: Page, start_server: StartServer
) -> None:
    ws = start_server("ws", "--port", "0")
    web = start_server("web", "--port", "0", "--ws-port", str(ws.port))
    open_page(page, web)
    page.fill("#knob-delay", "soon")
    page.click("#connect")
    expect(page.locator("#notice")).to_contain_text("refused: 400", timeout=WAIT_MS)
    # The refusal stays on record for a minute; let it grow older than the next attempt. (Asked
    # from here, on the page's address: a browser-side wait_for_function would not await a
    # fetch's promise, and would go on at once.)
    wait_until(lambda: refusal_age_s(ws) >= 1.0, WAIT_MS / 1000, "the refusal a second old")
    page.fill("#knob-delay", "")
    page.fill("#subprotocols", "nope")  # this server speaks none: the browser fails it
    page.click("#connect")
    expect(page.locator("#notice")).to_contain_text("picks none of the offered", timeout=WAIT_MS)
    expect(page.locator("#notice")).not_to_contain_text("refused: 400")


# Reconnecting by itself.


@pytest.fixture
def servers_on_a_known_port(start_server: StartServer) -> tuple[ServerProcess, ServerProcess]:
    """A WebSocket server on a free port another can take again, and its page server."""
    ws_port = free_port()
    ws = start_server("ws", "--port", str(ws_port))
    web = start_server("web", "--port", "0", "--ws-port", str(ws_port))
    return ws, web


def test_the_tick_tab_reconnects_by_itself_after_the_server_is_killed(
    page: Page, start_server: StartServer, servers_on_a_known_port: tuple[ServerProcess, ...]
) -> None:
    ws, web = servers_on_a_known_port
    open_page(page, web, "#tick")
    expect(page.locator("#tick-reconnect")).to_be_checked()
    connect(page, "tick-")
    ws.stop(signal.SIGKILL)
    status = page.locator("#tick-status")
    expect(status).to_have_text(RECONNECTING_RE, timeout=WAIT_MS)
    expect(page.locator("#tick-notice")).to_contain_text("Reconnecting by itself")
    start_server("ws", "--port", str(ws.port))
    expect(status).to_have_text("connected", timeout=3 * WAIT_MS)
    expect(page.locator("#tick-value")).to_have_text(re.compile(r"\d"), timeout=WAIT_MS)
    assert page.evaluate("window.echoPage.panels.tick.reconnects") >= 1


def test_echo_does_not_reconnect_unless_asked(
    page: Page, servers_on_a_known_port: tuple[ServerProcess, ...]
) -> None:
    ws, web = servers_on_a_known_port
    open_page(page, web)
    expect(page.locator("#reconnect")).not_to_be_checked()
    connect(page)
    ws.stop(signal.SIGKILL)
    expect(page.locator("#notice")).to_contain_text("Press Connect to connect again.")
    expect(page.locator("#status")).to_have_text(re.compile(r"^disconnected \(1006 [^;]*\)$"))
    assert page.evaluate("window.echoPage.panels.echo.retryTimer") is None


def test_echo_reconnects_when_its_box_is_ticked(
    page: Page, start_server: StartServer, servers_on_a_known_port: tuple[ServerProcess, ...]
) -> None:
    ws, web = servers_on_a_known_port
    open_page(page, web)
    page.check("#reconnect")
    connect(page)
    ws.stop(signal.SIGKILL)
    expect(page.locator("#status")).to_have_text(RECONNECTING_RE, timeout=WAIT_MS)
    start_server("ws", "--port", str(ws.port))
    expect(page.locator("#status")).to_have_text("connected", timeout=3 * WAIT_MS)


def test_disconnect_stops_reconnecting(
    page: Page, servers_on_a_known_port: tuple[ServerProcess, ...]
) -> None:
    ws, web = servers_on_a_known_port
    open_page(page, web, "#stats")
    connect(page, "stats-")
    ws.stop(signal.SIGKILL)
    status = page.locator("#stats-status")
    expect(status).to_have_text(RECONNECTING_RE, timeout=WAIT_MS)
    expect(page.locator("#stats-connect")).to_be_enabled()
    page.click("#stats-disconnect")
    expect(status).to_have_text(re.compile(r"^disconnected \(1006 [^;]*\)$"))
    expect(page.locator("#stats-log, #stats-disconnect")).to_be_disabled()
    assert page.evaluate("window.echoPage.panels.stats.retryTimer") is None
    assert page.evaluate("window.echoPage.panels.stats.retrying") is False


def test_the_waits_double_from_half_a_second_to_30_s(functions_page: Page) -> None:
    waits = functions_page.evaluate(
        "() => { const b = new echoPage.Backoff(() => 0.5);"
        " return Array.from({length: 9}, () => b.next()); }"
    )
    assert waits == [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]


def test_the_waits_are_jittered_by_a_fifth_either_way(functions_page: Page) -> None:
    shortest, longest = functions_page.evaluate(
        "() => [new echoPage.Backoff(() => 0).next(), new echoPage.Backoff(() => 1).next()]"
    )
    assert (shortest, longest) == (400, 600)


def test_a_connection_starts_the_waits_again_from_the_shortest(functions_page: Page) -> None:
    wait = functions_page.evaluate(
        "() => { const b = new echoPage.Backoff(() => 0.5); b.next(); b.next(); b.reset();"
        " return b.next(); }"
    )
    assert wait == 500


# Binary messages: from hex, from a file; shown as hex.


def test_bytes_typed_in_hex_are_sent_as_binary_and_their_echo_shown_as_hex(
    page: Page, shared_web_server: ServerProcess
) -> None:
    quiet_echo(page, shared_web_server, "hex")
    send(page, "01 02ff")
    echoed = page.locator("#log .entry.received")
    expect(echoed.locator(".text")).to_have_text("binary, 3 bytes: 01 02 ff")
    expect(echoed.locator(".rtt")).to_have_text(RTT_RE)


def test_text_that_is_not_hex_is_explained_and_nothing_is_sent(
    page: Page, shared_web_server: ServerProcess
) -> None:
    quiet_echo(page, shared_web_server, "hex")
    send(page, "01 0g")
    expect(page.locator("#notice")).to_contain_text('Not hex: "g" in "0g"')
    expect(page.locator("#notice")).to_contain_text("Nothing was sent.")
    send(page, "123")
    expect(page.locator("#notice")).to_contain_text("odd number of hex digits")
    expect(page.locator("#log .entry.sent")).to_have_count(0)
    expect(page.locator("#message")).to_have_value("123")


def test_a_file_is_sent_as_one_binary_message_and_long_ones_shown_in_part(
    page: Page, shared_web_server: ServerProcess
) -> None:
    quiet_echo(page, shared_web_server, "file")
    expect(page.locator("#message")).to_be_hidden()
    content = bytes(range(256)) + b"\xff" * 44
    page.set_input_files("#file", files=FilePayload(name="data.bin", mimeType="", buffer=content))
    page.click("#send")
    text = page.locator("#log .entry.received .text")
    first = " ".join(f"{byte:02x}" for byte in range(256))
    expect(text).to_have_text(f"binary, 300 bytes, the first 256: {first} …", timeout=WAIT_MS)


def test_a_file_over_the_message_size_is_not_sent(
    page: Page, shared_web_server: ServerProcess
) -> None:
    quiet_echo(page, shared_web_server, "file")
    big = b"x" * (1024 * 1024 + 1)
    page.set_input_files("#file", files=FilePayload(name="big.bin", mimeType="", buffer=big))
    page.click("#send")
    expect(page.locator("#notice")).to_contain_text("big.bin is 1.0 MiB: at most 1.0 MiB")
    expect(page.locator("#log .entry.sent")).to_have_count(0)


# The message history.


def test_the_arrow_keys_bring_back_the_messages_sent(
    page: Page, shared_web_server: ServerProcess
) -> None:
    quiet_echo(page, shared_web_server)
    send(page, "one")
    send(page, "two")
    box = page.locator("#message")
    box.fill("draft")
    for key, shown in [("ArrowUp", "two"), ("ArrowUp", "one"), ("ArrowUp", "one")]:
        box.press(key)
        expect(box).to_have_value(shown)
    for key, shown in [("ArrowDown", "two"), ("ArrowDown", "draft")]:
        box.press(key)
        expect(box).to_have_value(shown)


def test_the_chat_box_has_the_history_too(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server, "#chat")
    connect(page, "chat-")
    send(page, "hello all", "#chat-message")
    page.press("#chat-message", "ArrowUp")
    expect(page.locator("#chat-message")).to_have_value("hello all")


def test_the_history_keeps_the_last_50_messages(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    history = page.evaluate(
        "() => { const p = window.echoPage.panels.echo;"
        " for (let i = 0; i < 60; i++) p.remember('m' + i); return p.history; }"
    )
    assert history == [f"m{i}" for i in range(10, 60)]


# The repeated message.


def test_the_repeated_message_has_its_own_text_and_interval(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    page.fill("#repeat-text", "beat")
    page.fill("#repeat-interval", "50")
    connect(page)
    sent = page.locator("#log .entry.sent .text", has_text="beat")
    page.wait_for_function(
        "() => document.querySelectorAll('#log .entry.received .rtt').length >= 10"
    )
    assert sent.count() >= 10
    expect(page.locator("#log .entry.sent .text", has_text="*")).to_have_count(0)


def test_stop_ends_the_repeat(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server)
    page.fill("#repeat-interval", "20")
    connect(page)
    stop = page.locator("#repeat-stop")
    expect(stop).to_be_enabled()
    stop.click()
    expect(stop).to_be_disabled()
    expect(page.locator("#heartbeat")).not_to_be_checked()
    assert page.evaluate("window.echoPage.panels.echo.heartbeatTimer") is None


def test_the_interval_is_at_least_10_ms(page: Page, shared_web_server: ServerProcess) -> None:
    open_page(page, shared_web_server)
    page.fill("#repeat-interval", "1")
    connect(page)
    expect(page.locator("#repeat-interval")).to_have_value("10")
