"""Fixtures: real servers on free ports, started as processes and stopped by PID."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser import fresh_page, launch_chromium, page_functions
from inprocess import Harness
from playwright.sync_api import Browser, Page
from support import ServerProcess, start

StartServer = Callable[..., ServerProcess]


# Modules marked `pytestmark = pytest.mark.usefixtures("each_selector")` run once with the
# platform's best selector and once more with plain select() forced (ECHO_SERVER_SELECTOR, read
# by every server they start): the design's select loop must hold what the best one does.
SELECTORS_UNDER_TEST = (None, "select")


@pytest.fixture(scope="module", params=SELECTORS_UNDER_TEST, ids=["best", "select"])
def each_selector(request: pytest.FixtureRequest) -> Iterator[str | None]:
    name = "ECHO_SERVER_SELECTOR"
    before = os.environ.get(name)
    if request.param is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = request.param
    yield request.param
    if before is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = before


@pytest.fixture
def inproc() -> Iterator[Harness]:
    """In-process servers and raw clients, on a loop the test drives (see inprocess.py)."""
    harness = Harness()
    yield harness
    harness.close()


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start any `python -m echo_server ...` command; everything started is stopped at the end."""
    started: list[ServerProcess] = []

    def _start(*args: str, **options: Any) -> ServerProcess:
        server = start(args, **options)
        started.append(server)
        return server

    yield _start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def ws_server(start_server: StartServer) -> ServerProcess:
    """The WebSocket server on 127.0.0.1 and a free port."""
    return start_server("ws", "--port", "0")


@pytest.fixture
def web_server(start_server: StartServer, ws_server: ServerProcess) -> ServerProcess:
    """The page server on a free port, pointing the page at `ws_server`."""
    return start_server("web", "--port", "0", "--ws-port", str(ws_server.port))


# The browser tests: one pair of servers and one Chromium per module, a fresh page per test.


@pytest.fixture(scope="module")
def shared_ws_server() -> Iterator[ServerProcess]:
    server = start(["ws", "--port", "0"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_web_server(shared_ws_server: ServerProcess) -> Iterator[ServerProcess]:
    server = start(["web", "--port", "0", "--ws-port", str(shared_ws_server.port)])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from fresh_page(browser)


@pytest.fixture(scope="module")
def functions_page(browser: Browser) -> Iterator[Page]:
    yield from page_functions(browser)
