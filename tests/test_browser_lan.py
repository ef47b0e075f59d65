"""The LAN demo in a real Chromium: the "open on your phone" QR code, your own series drawn on
the Live tab, and kiosk mode coming back by itself after the server restarts.

The QR code is read back from a screenshot with an independent decoder (zxing-cpp), as a
phone's camera would. The page server that shows it runs with --lan (and --no-mdns) in a
network namespace of our own beside this one (tests/netns.py), so its LAN address is known;
Chromium, here, opens the page at that address.
"""

from __future__ import annotations

import io
import json
import re
import signal
from collections.abc import Iterator

import numpy as np
import pytest
import zxingcpp
from browser import ARTIFACTS, WAIT_MS, Problems, open_page
from conftest import StartServer
from netns import namespace_beside_this_one
from PIL import Image
from playwright.sync_api import Page, expect
from support import ECHO_SERVER, ServerProcess, free_port, publish_point

TIMEOUT_S = 10.0


def card(name: str) -> str:
    return f'[data-series="{name}"]'


# The QR code.


@pytest.fixture
def lan_page_server(start_server: StartServer) -> Iterator[tuple[ServerProcess, str]]:
    """The page server with --lan in a namespace beside this one, and its LAN URL."""
    with namespace_beside_this_one("qrweb") as (name, _, there):
        server = start_server(
            "web",
            "--lan",
            "--no-mdns",
            "--port",
            "0",
            command=["ip", "netns", "exec", name, *ECHO_SERVER],
        )
        yield server, f"http://{there}:{server.port}/"


def test_with_lan_the_page_shows_a_qr_code_a_phone_reads_as_the_lan_url(
    page: Page, lan_page_server: tuple[ServerProcess, str]
) -> None:
    _, lan_url = lan_page_server
    problems = Problems(page)
    page.goto(lan_url)
    expect(page.locator("html")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    box = page.locator("#phone-qr")
    expect(box).to_be_visible()
    expect(page.locator("#phone-qr-url")).to_have_text(lan_url)
    image = page.locator("#phone-qr-image")
    page.wait_for_function(
        "() => document.getElementById('phone-qr-image').naturalWidth > 0", timeout=WAIT_MS
    )
    shot = Image.open(io.BytesIO(image.screenshot())).convert("L")
    found = [code.text for code in zxingcpp.read_barcodes(np.array(shot))]
    assert found == [lan_url]
    box.screenshot(path=ARTIFACTS / "phone-qr.png")
    problems.assert_none()


def test_without_lan_the_page_shows_no_qr_code(
    page: Page, shared_web_server: ServerProcess
) -> None:
    open_page(page, shared_web_server)
    expect(page.locator("#phone-qr")).to_be_hidden()


# Your own series on the Live tab.


def test_published_series_are_drawn_each_on_its_chart_with_its_unit(
    page: Page, shared_ws_server: ServerProcess, shared_web_server: ServerProcess
) -> None:
    # Published before the page opens: it gets the history at once.
    for value in ("20.5", "21", "21.5"):
        publish_point(
            shared_ws_server, "greenhouse", json.dumps({"value": float(value), "unit": "°C"})
        )
    problems = Problems(page)
    open_page(page, shared_web_server, "#live")
    page.click("#live-connect")
    expect(page.locator(f'{card("greenhouse")} [data-role="value"]')).to_have_text("21.5 °C")
    expect(page.locator(f'{card("greenhouse")} [data-role="name"]')).to_have_text("greenhouse (°C)")
    points = page.evaluate("window.echoPage.panels.live.series.greenhouse.points")
    assert [point["v"] for point in points[-3:]] == [20.5, 21, 21.5]
    # A new point while connected, and a second series.
    publish_point(shared_ws_server, "greenhouse", "22.25")
    publish_point(shared_ws_server, "door", "1")
    expect(page.locator(f'{card("greenhouse")} [data-role="value"]')).to_have_text("22.25 °C")
    expect(page.locator(f'{card("door")} [data-role="value"]')).to_have_text("1")
    expect(page.locator(".series-card").first).to_have_attribute("data-series", "demo")
    page.wait_for_function(
        """(selector) => {
          const canvas = document.querySelector(selector);
          const line = getComputedStyle(canvas).color.match(/\\d+/g).slice(0, 3).map(Number);
          const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
          let count = 0;
          for (let i = 0; i < data.length; i += 4) {
            if (line.every((v, c) => Math.abs(data[i + c] - v) <= 8) && data[i + 3] >= 250) {
              count += 1;
            }
          }
          return count >= 20;
        }""",
        arg=f"{card('greenhouse')} canvas",
        timeout=WAIT_MS,
    )
    page.screenshot(path=ARTIFACTS / "live-series.png", full_page=True)
    problems.assert_none()


# Kiosk mode.


def test_kiosk_shows_one_tab_large_with_no_controls(
    page: Page, shared_web_server: ServerProcess
) -> None:
    problems = Problems(page)
    open_page(page, shared_web_server, "?kiosk#tick")
    expect(page.locator("#tick-status")).to_have_text("connected", timeout=WAIT_MS)
    expect(page.locator("#tick-value")).to_have_text(re.compile(r"\d"), timeout=WAIT_MS)
    for hidden in (".site-header", ".tabbar", ".site-footer", "#tick-connect", ".panel-intro"):
        expect(page.locator(hidden).first).to_be_hidden()
    tick_px = page.evaluate(
        "parseFloat(getComputedStyle(document.getElementById('tick-value')).fontSize)"
    )
    assert tick_px >= 96
    # Headless Chromium grants the screen wake lock to a visible page.
    expect(page.locator("html")).to_have_attribute("data-wake-lock", "held")
    page.screenshot(path=ARTIFACTS / "kiosk-tick.png")
    problems.assert_none()


def test_kiosk_reconnects_by_itself_after_the_server_restarts(
    page: Page, start_server: StartServer
) -> None:
    ws_port = free_port()
    ws_server = start_server("ws", "--port", str(ws_port))
    web_server = start_server("web", "--port", "0", "--ws-port", str(ws_port))
    open_page(page, web_server, "?kiosk#live")
    status = page.locator("#live-status")
    expect(status).to_have_text("connected", timeout=WAIT_MS)
    expect(page.locator(card("demo"))).to_be_visible()
    assert ws_server.stop(signal.SIGTERM) == 0
    expect(status).to_have_text(
        re.compile(
            r"^disconnected \(1001 Going Away: server shutting down\); reconnecting in \d+ s$"
        )
    )
    start_server("ws", "--port", str(ws_port))  # a new server: the demo starts again at 0
    # The first retries come 1, 2 and 4 s after the close: well within this.
    expect(status).to_have_text("connected", timeout=3 * WAIT_MS)
    assert page.evaluate("window.echoPage.kiosk.current.reconnects") >= 1
    page.wait_for_function(
        "() => (window.echoPage.panels.live.series.demo?.points.length ?? 0) >= 2",
        timeout=WAIT_MS,
    )
