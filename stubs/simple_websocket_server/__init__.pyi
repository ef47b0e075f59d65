# Type stub for simple-websocket-server 0.4.4: only the surface echo_server uses or overrides.
import socket
from collections import deque
from collections.abc import Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any

__all__ = ["WebSocket", "WebSocketServer"]

STREAM: int
TEXT: int
BINARY: int
CLOSE: int
PING: int
PONG: int

class HTTPRequest(BaseHTTPRequestHandler):
    headers: Message
    def __init__(self, request_text: bytes) -> None: ...

class WebSocket:
    server: Any
    client: socket.socket
    address: Any
    handshaked: bool
    data: Any
    opcode: int
    request: Any
    closed: bool
    sendq: deque[tuple[int, bytes]]
    def __init__(self, server: Any, sock: socket.socket, address: Any) -> None: ...
    def handle(self) -> None: ...
    def connected(self) -> None: ...
    def handle_close(self) -> None: ...
    def close(self, status: int = ..., reason: str = ...) -> None: ...
    def send_message(self, data: str | bytes | bytearray) -> None: ...
    def send_fragment_start(self, data: str | bytes | bytearray) -> None: ...
    def send_fragment(self, data: str | bytes | bytearray) -> None: ...
    def send_fragment_end(self, data: str | bytes | bytearray) -> None: ...
    def _send_message(self, fin: bool, opcode: int, data: str | bytes | bytearray) -> None: ...

class WebSocketServer:
    request_queue_size: int
    websocketclass: type[WebSocket]
    serversocket: socket.socket
    connections: Mapping[int, WebSocket]
    def __init__(
        self,
        host: str,
        port: int,
        websocketclass: type[WebSocket],
        certfile: str | None = ...,
        keyfile: str | None = ...,
        ssl_version: int = ...,
        select_interval: float = ...,
        ssl_context: Any = ...,
    ) -> None: ...
    def close(self) -> None: ...
    def handle_request(self) -> None: ...
    def serve_forever(self) -> None: ...
