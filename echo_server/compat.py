"""A drop-in for simple-websocket-server 0.4.4: its handler classes, run on the hardened loop.

Change one line, `from simple_websocket_server import WebSocketServer, WebSocket` to
`from echo_server import WebSocketServer, WebSocket`, and a program written for upstream runs
here: `WebSocketServer(host, port, websocketclass, ...)` and `SSLWebSocketServer(...)` with
upstream's signatures, `serve_forever()`, `handle_request()`, and `close()`, which may also be
called from another thread or a signal handler. `WebSocket` *is* upstream's own class: handler
classes subclass it exactly as upstream documents, and its own `send_message`,
`send_fragment_start`/`send_fragment`/`send_fragment_end` run unchanged on top of this package.

What runs underneath is echo_server's, not upstream's: each handler instance is paired with a
core `Connection` (strict RFC 6455 frames, message and send limits with back-pressure, ping and
close timeouts, one epoll loop for 10,000 clients, no select() limit of 1024). A handler class is
given, below it and above upstream's class, the two methods through which upstream sends
(`_send_message` and `close`), so a handler's own overrides and its `super()` calls still work.
A handler sees upstream's attributes: `address`, `client`, `server` (with `connections`), `data`
(`str` for text, `bytearray` for binary), `opcode`, `request` (upstream's own `HTTPRequest`, a
`BaseHTTPRequestHandler` with `headers`, made from the request this package already checked),
`handshaked`, `usingssl`, `closed`; and one upstream lacks, `subprotocol` (the subprotocol the
handshake chose, from `subprotocols=(...)` among the server's options; None for none).

What differs from upstream, on purpose, is listed in the README ("Coming from
simple-websocket-server"): pages of other sites and pages opened from a file (Origin: null) are
refused unless allowed, messages over 1 MiB are closed with 1009, a handler exception closes
that client with 1011 (logged), and `close()` is graceful.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from collections.abc import Iterable
from typing import Any

import simple_websocket_server
from simple_websocket_server import HTTPRequest, WebSocket

from echo_server.core.connection import Connection, Host
from echo_server.core.loop import Loop
from echo_server.core.server import Server
from echo_server.protocol.frames import CloseCode, Opcode
from echo_server.protocol.http import Request
from echo_server.settings import Settings

__all__ = ["SSLWebSocketServer", "WebSocket", "WebSocketServer"]

log = logging.getLogger(__name__)

DEFAULT_SELECT_INTERVAL_S = 0.1  # upstream's default, used by handle_request()


class HardenedWebSocket(WebSocket):
    """Put under a handler class (above upstream's `WebSocket`): upstream's sending, routed to
    the connection that owns the socket."""

    _connection: Connection

    def __init__(self, server: Any, sock: socket.socket, address: Any) -> None:
        # Not upstream's __init__: it allocates the state of its own per-byte parser, unused here.
        self.server = server
        self.client = sock
        self.address = address
        self.handshaked = False
        self.data: str | bytearray = ""
        self.opcode = 0
        self.request: HTTPRequest | None = None
        self.usingssl = isinstance(sock, ssl.SSLSocket)
        self.subprotocol: str | None = None  # not upstream's: set before connected()

    @property
    def closed(self) -> bool:  # type: ignore[override]  # upstream's attribute, derived
        return self._connection.closed

    def _send_message(self, fin: bool, opcode: int, data: str | bytes | bytearray) -> None:
        # Upstream's `fin` means "more fragments follow".
        if opcode == simple_websocket_server.CLOSE:
            code, reason = _close_payload(data)
            self.close(code, reason)
            return
        payload = data.encode() if isinstance(data, str) else data
        self._connection.send_frame(Opcode(opcode), payload, fin=not fin)

    def close(self, status: int = CloseCode.NORMAL_CLOSURE, reason: str | bytes = "") -> None:
        if isinstance(reason, bytes | bytearray):
            reason = bytes(reason).decode(errors="replace")
        self._connection.close(status, reason)


def _close_payload(data: str | bytes | bytearray) -> tuple[int, str]:
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) < 2:
        return CloseCode.NORMAL_CLOSURE, ""
    (code,) = struct.unpack_from("!H", raw)
    return code, raw[2:].decode(errors="replace")


def hardened(websocketclass: type[WebSocket]) -> type[HardenedWebSocket]:
    """`websocketclass` with HardenedWebSocket between it and upstream's class."""
    if issubclass(websocketclass, HardenedWebSocket):
        return websocketclass
    if not issubclass(websocketclass, WebSocket):
        raise TypeError(
            f"{websocketclass.__name__} must subclass WebSocket (echo_server.WebSocket, which is "
            "simple_websocket_server.WebSocket)"
        )
    made: type[HardenedWebSocket] = type(
        websocketclass.__name__, (websocketclass, HardenedWebSocket), {}
    )
    return made


def upstream_request(request: Request) -> HTTPRequest:
    """Upstream's own request object, parsed by upstream from the head this package checked."""
    lines = [f"{request.method} {request.target} {request.version}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return HTTPRequest(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


class HandlerConnection(Connection):
    """The core connection of one handler instance: it calls the handler's methods."""

    handler: HardenedWebSocket
    facade: WebSocketServer

    def __init__(self, server: Host, sock: socket.socket, address: Any, request: Request) -> None:
        super().__init__(server, sock, address, request)
        handler = self.facade.websocketclass(self.facade, sock, address)
        handler._connection = self
        handler.handshaked = True
        handler.request = upstream_request(request)
        handler.usingssl = self.usingssl
        self.handler = handler

    def connected(self) -> None:
        self.facade.connections[self.fd] = self.handler
        self.handler.subprotocol = self.subprotocol
        self.handler.connected()

    def handle(self) -> None:
        data = self.data
        self.handler.data = data if isinstance(data, str) else bytearray(data)
        self.handler.opcode = int(self.opcode)
        self.handler.handle()

    def handle_close(self) -> None:
        self.facade.connections.pop(self.fd, None)
        self.handler.handle_close()


class WebSocketServer:
    """Upstream's server, on echo_server's loop and limits.

    `host` "" means 127.0.0.1, as upstream's does; `port` 0 picks a free port (read it from
    `serversocket.getsockname()`). With `certfile` and `keyfile`, or an `ssl_context`, it serves
    `wss://`. Keyword `options` are `Settings` fields (`allowed_origins={"null"}`,
    `max_message_bytes=...`, `max_connections=...`): the limits upstream does not have.
    """

    request_queue_size = 1024  # (upstream's 5 is what made it refuse clients under load)

    def __init__(  # noqa: PLR0917 - upstream's signature, positional arguments and all
        self,
        host: str,
        port: int,
        websocketclass: type[WebSocket],
        certfile: str | None = None,
        keyfile: str | None = None,
        ssl_version: int = ssl.PROTOCOL_TLS_SERVER,
        select_interval: float = DEFAULT_SELECT_INTERVAL_S,
        ssl_context: ssl.SSLContext | None = None,
        **options: Any,
    ) -> None:
        self.websocketclass = hardened(websocketclass)
        self.select_interval = select_interval
        self.connections: dict[int, WebSocket] = {}
        if "allowed_origins" in options:
            options["allowed_origins"] = _origins(options["allowed_origins"])
        if isinstance(options.get("subprotocols"), str):
            options["subprotocols"] = (options["subprotocols"],)
        if "subprotocols" in options:
            options["subprotocols"] = tuple(options["subprotocols"])
        self.settings = Settings(host=host or "127.0.0.1", port=port, **options)
        if ssl_context is None and certfile and keyfile:
            ssl_context = ssl.SSLContext(ssl_version)
            ssl_context.load_cert_chain(certfile, keyfile)
        factory = type("HandlerConnection", (HandlerConnection,), {"facade": self})
        self.loop = Loop(selector=self.settings.selector)
        self.server = Server(
            self.settings, lambda path: factory, loop=self.loop, tls_context=ssl_context
        )
        self.server.listen()  # as upstream: the port is taken (or the error raised) here
        assert self.server.listener is not None
        self.serversocket: socket.socket = self.server.listener

    def serve_forever(self) -> None:
        """Serve until close(); then return (upstream's never returned)."""
        try:
            self.server.serve_forever()
        finally:
            self.server.close()
            self.loop.close()

    def handle_request(self) -> None:
        """One round: wait at most `select_interval` for something to do, and do it."""
        self.loop.run_once(self.select_interval)

    def close(self) -> None:
        """Stop: every client gets a close frame (1001), then serve_forever() returns.

        Safe from any thread and from a signal handler: the loop does the work at its next
        turn.
        """
        self.loop.call_soon_threadsafe(self.server.shutdown)


class SSLWebSocketServer(WebSocketServer):
    """`wss://`: upstream's TLS server, with its argument names."""

    def __init__(  # noqa: PLR0917 - upstream's signature, positional arguments and all
        self,
        host: str,
        port: int,
        websocketclass: type[WebSocket],
        certfile: str | None = None,
        keyfile: str | None = None,
        version: int = ssl.PROTOCOL_TLS_SERVER,
        select_interval: float = DEFAULT_SELECT_INTERVAL_S,
        ssl_context: ssl.SSLContext | None = None,
        **options: Any,
    ) -> None:
        if ssl_context is None and not (certfile and keyfile):
            raise ValueError("SSLWebSocketServer needs certfile and keyfile, or an ssl_context")
        super().__init__(
            host,
            port,
            websocketclass,
            certfile,
            keyfile,
            ssl_version=version,
            select_interval=select_interval,
            ssl_context=ssl_context,
            **options,
        )


def _origins(origins: Iterable[str] | str) -> frozenset[str]:
    if isinstance(origins, str):
        origins = [origins]
    return frozenset(origin.rstrip("/").lower() for origin in origins)
