"""Fixtures: real servers on free ports, started as processes and stopped by PID."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import ServerProcess, start

StartServer = Callable[..., ServerProcess]


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
