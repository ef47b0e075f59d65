"""echo_server: a WebSocket echo and push server on one select loop, with a browser test page.

The public API, for programs that use it as a library:

- the drop-in for simple-websocket-server 0.4.4 (see compat.py): `WebSocketServer`,
  `SSLWebSocketServer`, and `WebSocket`, which is upstream's own handler class;
- the native API: `Server` (given `Settings` and routes: paths to `Connection` subclasses),
  `Connection` (the handler API: `connected`, `handle`, `handle_close`, `send_message`,
  `close`), `Settings`, `CloseCode`.

Names are imported when first used, so that `python -m echo_server` starts with nothing but its
own first line (see __main__.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "CloseCode",
    "Connection",
    "SSLWebSocketServer",
    "Server",
    "Settings",
    "WebSocket",
    "WebSocketServer",
]

_WHERE = {
    "CloseCode": "echo_server.protocol.frames",
    "Connection": "echo_server.core.connection",
    "SSLWebSocketServer": "echo_server.compat",
    "Server": "echo_server.core.server",
    "Settings": "echo_server.settings",
    "WebSocket": "echo_server.compat",
    "WebSocketServer": "echo_server.compat",
}

if TYPE_CHECKING:
    from echo_server.compat import SSLWebSocketServer, WebSocket, WebSocketServer
    from echo_server.core.connection import Connection
    from echo_server.core.server import Server
    from echo_server.protocol.frames import CloseCode
    from echo_server.settings import Settings


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'echo_server' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
