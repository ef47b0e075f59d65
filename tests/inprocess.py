"""In-process servers for the tests: a real server on a free port, raw client sockets, and the
loop driven turn by turn (`Loop.run_once`) instead of run in a thread or another process.

Driving the loop by hand makes the order of events observable without timing anything: what
the server did in one turn, and what it left for the next. Every drive is bounded in turns and
in time. `Client` is a raw socket that sends exact bytes and parses the server's frames itself,
independently of echo_server's codec (which is the server side).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from support import upgrade_request

from echo_server.app.app import App
from echo_server.core.server import Server
from echo_server.protocol.frames import Opcode, encode_frame
from echo_server.settings import Settings

MASK = b"\x37\xfa\x21\x3d"
MAX_TURNS = 10_000  # every drive of the loop is bounded, in turns and in time
MAX_DRIVE_S = 20.0


def client_frame(opcode: Opcode, payload: bytes = b"", *, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=MASK)


class Client:
    """A raw client socket on the in-process server: exact bytes out, frames parsed in."""

    def __init__(self, server: Server, path: str = "/", extra: str = "") -> None:
        self.server = server
        self.sock = socket.create_connection(("127.0.0.1", server.port))
        self.sock.setblocking(False)
        self.received = bytearray()
        self.sock.sendall(upgrade_request(server.port, path, extra))
        turns(server, self._has_head, what=f"the 101 for {path}")
        head, _, rest = bytes(self.received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.head = head.decode("latin-1")  # the 101 response, to read its headers
        self.received = bytearray(rest)

    def _has_head(self) -> bool:
        self.pump()
        return b"\r\n\r\n" in self.received

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def pump(self) -> None:
        """Take whatever the server has sent so far."""
        for _ in range(1000):
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            if not chunk:
                return
            self.received += chunk

    def frames(self) -> list[tuple[int, bytes]]:
        """Every complete frame received so far (opcode, payload), consumed."""
        return [(opcode, payload) for opcode, payload, _ in self.frames_with_rsv()]

    def frames_with_rsv(self) -> list[tuple[int, bytes, int]]:
        """As `frames`, with each frame's RSV bits (0x40: RSV1, compressed)."""
        self.pump()
        found = []
        data = self.received
        pos = 0
        while len(data) - pos >= 2:
            opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
            rsv = data[pos] & 0x70
            start = pos + 2
            if length == 126:
                length, start = int.from_bytes(data[start : start + 2], "big"), start + 2
            elif length == 127:
                length, start = int.from_bytes(data[start : start + 8], "big"), start + 8
            if len(data) < start + length:
                break
            found.append((opcode, bytes(data[start : start + length]), rsv))
            pos = start + length
        del data[:pos]
        return found

    def close(self) -> None:
        self.sock.close()


def turns(server: Server, done: Callable[[], bool], *, what: str) -> int:
    """Run loop turns until `done()`; return how many it took (bounded)."""
    deadline = time.monotonic() + MAX_DRIVE_S
    for count in range(1, MAX_TURNS + 1):
        server.loop.run_once(0.01)
        if done():
            return count
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"not within {MAX_TURNS} turns and {MAX_DRIVE_S} s: {what}")


def next_frames(server: Server, client: Client, what: str) -> list[tuple[int, bytes]]:
    """Run turns until `client` has received at least one frame; return what it received."""
    received: list[tuple[int, bytes]] = []

    def arrived() -> bool:
        received.extend(client.frames())
        return bool(received)

    turns(server, arrived, what=what)
    return received


def raw_exchange(server: Server, request: bytes) -> bytes:
    """Send raw bytes on a new socket; drive the loop until the server has closed; all it sent."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    sock.sendall(request)
    answer = bytearray()
    closed = False

    def done() -> bool:
        nonlocal closed
        for _ in range(1000):
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                return False
            if not chunk:
                closed = True
                return True
            answer.extend(chunk)
        return False

    try:
        turns(server, done, what="the server's answer and close")
    finally:
        sock.close()
    return bytes(answer)


class Harness:
    """What one test made in-process: servers and clients, all closed at the end."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self.clients: list[Client] = []

    def app_server(self, **settings: Any) -> Server:
        """The echo server as the command runs it (App: routes, hub, producers), listening."""
        server = App(Settings(port=0, **settings)).server
        return self._listening(server)

    def core_server(self, routes: Any, *, http: Any = None, **settings: Any) -> Server:
        """A bare core Server, given its routes (and plain-HTTP handler), listening."""
        return self._listening(Server(Settings(port=0, **settings), routes, http=http))

    def connect(self, server: Server, path: str = "/", extra: str = "") -> Client:
        """A raw client; `extra` is more request header lines (`"Name: value\\r\\n"`)."""
        client = Client(server, path, extra)
        self.clients.append(client)
        return client

    def _listening(self, server: Server) -> Server:
        server.listen()
        self.servers.append(server)
        return server

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for server in self.servers:
            server.close()
            server.loop.close()
