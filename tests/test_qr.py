"""The QR code of the page's LAN address: drawn on a terminal, and served as /qr.svg.

A code is checked by reading it back with an independent decoder (zxing-cpp), the way a phone's
camera app would, not by comparing it with what segno made. The terminal drawing is read back
on a dark and on a light terminal; the served SVG is drawn by Chromium in tests/test_browser_lan.py.

The page server runs with --lan in a namespace of our own joined to this one (tests/netns.py),
so its LAN address is known and the same on every machine; --no-mdns, so nothing is announced.
"""

from __future__ import annotations

import json
import math
import os
import pty
import re
import select
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import zxingcpp
from conftest import StartServer
from netns import namespace_beside_this_one
from support import ECHO_SERVER, REPO, ServerProcess

from echo_server import qr

URL = "http://192.168.1.20:8000/"
TIMEOUT_S = 20.0
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# A pair of modules from a half block: (top dark, bottom dark).
PAIRS = {" ": (False, False), "▀": (True, False), "▄": (False, True), "█": (True, True)}
PIXELS_PER_MODULE = 6


def modules(lines: list[str]) -> np.ndarray:
    """The module matrix drawn by terminal lines (escapes stripped): True for dark."""
    rows: list[list[bool]] = []
    for line in lines:
        pairs = [PAIRS[char] for char in ANSI_RE.sub("", line)]
        rows.append([top for top, _ in pairs])
        rows.append([bottom for _, bottom in pairs])
    return np.array(rows, dtype=bool)


def read_code(dark: np.ndarray, surround_dark: bool) -> list[str]:
    """What a reader finds in a matrix drawn on a terminal of that background."""
    pixels = np.where(dark, 0, 255).astype(np.uint8)
    pixels = np.kron(pixels, np.ones((PIXELS_PER_MODULE, PIXELS_PER_MODULE), dtype=np.uint8))
    margin = 8 * PIXELS_PER_MODULE
    image = np.pad(pixels, margin, constant_values=0 if surround_dark else 255)
    return [found.text for found in zxingcpp.read_barcodes(image)]


def test_the_terminal_code_reads_back_on_a_dark_and_on_a_light_terminal() -> None:
    drawn = modules(qr.terminal_lines(URL))
    assert read_code(drawn, surround_dark=True) == [URL]
    assert read_code(drawn, surround_dark=False) == [URL]


def test_the_terminal_code_is_black_on_white_whatever_the_terminal_colours() -> None:
    for line in qr.terminal_lines(URL):
        assert line.startswith(qr.BLACK_ON_WHITE)
        assert line.endswith(qr.RESET)


def test_without_colour_the_code_is_the_same_blocks() -> None:
    coloured, plain = qr.terminal_lines(URL), qr.terminal_lines(URL, colour=False)
    assert [ANSI_RE.sub("", line) for line in coloured] == plain


def test_the_svg_is_black_on_white_with_its_url_as_title() -> None:
    image = qr.svg(URL).decode()
    assert image.startswith("<svg ")
    assert f"<title>{URL}</title>" in image
    assert 'fill="#fff"' in image
    assert 'stroke="#000"' in image


# The page server with --lan, in a namespace beside this one.


@pytest.fixture
def lan_host() -> Iterator[tuple[str, str]]:
    """A namespace to run the page server in: (its name, its address, reachable from here)."""
    with namespace_beside_this_one("qr") as (name, _, there):
        yield name, there


def in_namespace(name: str) -> list[str]:
    return ["ip", "netns", "exec", name, *ECHO_SERVER]


def fetch(url: str) -> tuple[int, str, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_with_lan_the_page_server_serves_a_qr_code_of_its_lan_url(
    start_server: StartServer, lan_host: tuple[str, str]
) -> None:
    name, address = lan_host
    server = start_server("web", "--lan", "--no-mdns", "--port", "0", command=in_namespace(name))
    lan_url = f"http://{address}:{server.port}/"
    status, _, body = fetch(lan_url + "config.json")
    assert status == 200
    config = json.loads(body)
    assert (config["lan_url"], config["mdns_url"]) == (lan_url, None)
    status, content_type, image = fetch(lan_url + "qr.svg")
    assert (status, content_type) == (200, "image/svg+xml")
    assert image == qr.svg(lan_url)  # the code of that very address (read back in Chromium)


def test_without_lan_there_is_no_lan_url_and_no_qr_code(web_server: ServerProcess) -> None:
    status, _, body = fetch(web_server.url("/config.json"))
    assert status == 200
    assert json.loads(body)["lan_url"] is None
    assert fetch(web_server.url("/qr.svg"))[0] == 404


def read_terminal(master: int, deadline: float) -> list[str]:
    """Lines a program prints to our pseudo-terminal, until a whole QR code has come (its
    lines are the coloured ones; a code is square, two module rows a line) or the deadline."""
    output = b""
    while time.monotonic() < deadline:
        lines = output.decode(errors="replace").split("\n")[:-1]  # complete lines
        drawn = [line for line in lines if qr.BLACK_ON_WHITE in line]
        # The width inside the colours: the code's own spaces are part of it.
        if drawn and len(drawn) >= math.ceil(len(ANSI_RE.sub("", drawn[0].strip())) / 2):
            return lines
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # the program has gone: its side of the terminal is closed
            chunk = b""
        if not chunk:
            break
        output += chunk
    raise AssertionError(f"no whole QR code on the terminal:\n{output.decode(errors='replace')}")


def test_on_a_terminal_lan_prints_a_qr_code_of_the_lan_url(lan_host: tuple[str, str]) -> None:
    name, address = lan_host
    master, slave = pty.openpty()
    command = [*in_namespace(name), "web", "--lan", "--no-mdns", "--port", "0"]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=REPO
    )
    os.close(slave)
    try:
        lines = read_terminal(master, time.monotonic() + TIMEOUT_S)
    finally:
        process.terminate()
        status = process.wait(TIMEOUT_S)
        os.close(master)
    assert status == 0
    port = re.search(r"listening on http://\S+:(\d+)/", lines[0])
    assert port is not None, lines
    lan_url = f"http://{address}:{port.group(1)}/"
    assert f"open from other machines: {lan_url}" in lines[1]
    assert lines[3].strip() == f"scan to open {lan_url} on a phone:"
    drawn = [line.strip() for line in lines if qr.BLACK_ON_WHITE in line]
    assert read_code(modules(drawn), surround_dark=True) == [lan_url]


def test_without_a_terminal_no_code_is_drawn(
    start_server: StartServer, lan_host: tuple[str, str]
) -> None:
    name, _ = lan_host
    server = start_server("web", "--lan", "--no-mdns", "--port", "0", command=in_namespace(name))
    server.wait_for_output("anyone on this network can connect")
    assert "scan to open" not in server.output()
    assert "▀" not in server.output()


def test_the_readmes_first_screen_shows_a_code_that_reads_as_its_url() -> None:
    readme = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(readme) if "scan to open" in line)
    url = re.search(r"scan to open (\S+) on a phone", readme[start])
    assert url is not None
    drawn = []
    for line in readme[start + 1 :]:
        if line.startswith("  on this network") or line.startswith("```"):
            break
        drawn.append(line[2:])
    assert read_code(modules(drawn), surround_dark=False) == [url.group(1)]
