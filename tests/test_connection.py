"""A connection, in-process: a real server on a free port, real sockets, the loop driven by hand.

Driving the loop one turn at a time (`Loop.run_once`) makes the order of events observable
without timing anything: what the server did in one turn, and what it left for the next.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from support import upgrade_request

from echo_server import defaults
from echo_server.app.app import App
from echo_server.app.routes import ROUTES
from echo_server.core.connection import Connection
from echo_server.core.server import Server
from echo_server.protocol.frames import CloseCode, Opcode, encode_frame
from echo_server.settings import Settings

MASK = b"\x37\xfa\x21\x3d"
MAX_TURNS = 10_000  # every drive of the loop is bounded, in turns and in time
MAX_DRIVE_S = 20.0


def client_frame(opcode: Opcode, payload: bytes = b"", *, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=MASK)


class Client:
    """A raw client socket on the in-process server: exact bytes out, frames parsed in."""

    def __init__(self, server: Server, path: str = "/") -> None:
        self.server = server
        self.sock = socket.create_connection(("127.0.0.1", server.port))
        self.sock.setblocking(False)
        self.received = bytearray()
        self.sock.sendall(upgrade_request(server.port, path))
        turns(server, self._has_head, what=f"the 101 for {path}")
        head, _, rest = bytes(self.received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
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
        self.pump()
        found = []
        data = self.received
        pos = 0
        while len(data) - pos >= 2:
            opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                length, start = int.from_bytes(data[start : start + 2], "big"), start + 2
            elif length == 127:
                length, start = int.from_bytes(data[start : start + 8], "big"), start + 8
            if len(data) < start + length:
                break
            found.append((opcode, bytes(data[start : start + length])))
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


CLIENTS: list[Client] = []


@pytest.fixture
def make_server() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def _make(**settings: object) -> Server:
        server = App(Settings(port=0, **settings)).server  # type: ignore[arg-type]
        server.listen()
        made.append(server)
        return server

    yield _make
    for client in CLIENTS:
        client.close()
    CLIENTS.clear()
    for server in made:
        server.close()
        server.loop.close()


def next_frames(server: Server, client: Client, what: str) -> list[tuple[int, bytes]]:
    """Run turns until `client` has received at least one frame; return what it received."""
    received: list[tuple[int, bytes]] = []

    def arrived() -> bool:
        received.extend(client.frames())
        return bool(received)

    turns(server, arrived, what=what)
    return received


def connect(server: Server, path: str = "/") -> Client:
    client = Client(server, path)
    CLIENTS.append(client)
    return client


def test_a_chat_flood_is_handled_a_slice_per_turn_so_a_bystander_is_answered_first(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(rate_limit_per_s=0)
    subscriber = connect(server, "/chat")
    flooder = connect(server, "/chat")
    bystander = connect(server, "/echo")
    flood_count = 5_000  # 35 KB: it fits in the socket buffers, so it is all there at once
    flooder.send(b"".join(client_frame(Opcode.TEXT, b"x") for _ in range(flood_count)))
    bystander.send(client_frame(Opcode.TEXT, b"are you there?"))
    delivered = 0
    answered: list[tuple[int, bytes]] = []

    def echoed() -> bool:
        nonlocal delivered
        delivered += len(subscriber.frames())
        answered.extend(bystander.frames())
        return bool(answered)

    def flood_delivered() -> bool:
        nonlocal delivered
        delivered += len(subscriber.frames())
        return delivered >= flood_count

    turns(server, echoed, what="the bystander's echo")
    assert answered == [(Opcode.TEXT, b"are you there?")]
    assert delivered < flood_count / 10  # the flood waits its turn: most of it comes later
    turns(server, flood_delivered, what="the rest of the flood")
    assert delivered == flood_count


def test_one_turn_parses_at_most_frames_per_turn_from_one_client(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    client = connect(server, "/echo")
    client.send(b"".join(client_frame(Opcode.TEXT, b"%d" % i) for i in range(1000)))
    counts = []
    echoed = 0
    for _ in range(MAX_TURNS):
        if echoed == 1000:
            break
        server.loop.run_once(0.05)
        count = len(client.frames())
        if count:
            counts.append(count)
        echoed += count
    assert echoed == 1000
    assert max(counts) <= defaults.FRAMES_PER_TURN


def test_the_echoes_of_one_turn_leave_in_order(make_server: Callable[..., Server]) -> None:
    server = make_server()
    client = connect(server, "/echo")
    messages = [b"%d" % i for i in range(300)]
    client.send(b"".join(client_frame(Opcode.BINARY, m) for m in messages))
    received: list[bytes] = []

    def all_back() -> bool:
        received.extend(payload for _, payload in client.frames())
        return len(received) == len(messages)

    turns(server, all_back, what="every echo")
    assert received == messages


def test_a_valid_message_before_a_bad_frame_is_echoed_before_the_close(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    client = connect(server, "/echo")
    client.send(client_frame(Opcode.TEXT, b"first") + encode_frame(Opcode.TEXT, b"unmasked"))
    received: list[tuple[int, bytes]] = []

    def closed() -> bool:
        received.extend(client.frames())
        return any(opcode == Opcode.CLOSE for opcode, _ in received)

    turns(server, closed, what="the close frame")
    assert received[0] == (Opcode.TEXT, b"first")
    assert received[1][0] == Opcode.CLOSE
    assert int.from_bytes(received[1][1][:2], "big") == CloseCode.PROTOCOL_ERROR


class BuggyRead(Connection):
    """Echoes, but the server's own read path fails once: a bug, not a handler exception."""

    def _read(self) -> None:
        raise RuntimeError("a bug in the read path")


def test_a_bug_in_a_connections_callback_closes_it_with_1011_and_logs_once(
    make_server: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    server.routes["/buggy"] = BuggyRead
    victim = connect(server, "/buggy")
    bystander = connect(server, "/echo")
    victim.send(client_frame(Opcode.TEXT, b"anything"))
    with caplog.at_level(logging.ERROR):
        received = next_frames(server, victim, "the victim's close frame")
    assert received[0][0] == Opcode.CLOSE
    assert int.from_bytes(received[0][1][:2], "big") == CloseCode.INTERNAL_ERROR
    assert caplog.text.count("RuntimeError: a bug in the read path") == 1
    bystander.send(client_frame(Opcode.TEXT, b"still here"))
    assert next_frames(server, bystander, "an echo") == [(Opcode.TEXT, b"still here")]


class BuggyTimer(Connection):
    """Its keepalive timer fails: a bug in a timer callback of one connection."""

    def _send_ping(self) -> None:
        raise RuntimeError("a bug in a timer")


def test_a_bug_in_a_connections_timer_closes_it_with_1011(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(ping_interval_s=0.01)
    server.routes["/buggy"] = BuggyTimer
    victim = connect(server, "/buggy")
    received = next_frames(server, victim, "the victim's close frame")
    assert received[0][0] == Opcode.CLOSE
    assert int.from_bytes(received[0][1][:2], "big") == CloseCode.INTERNAL_ERROR


class BuggyReceive(Connection):
    """The server's own parsing of what came in fails: a bug, not a handler exception."""

    def _receive(self, data: bytes | memoryview) -> None:
        raise RuntimeError("a bug while parsing")


def test_bytes_that_came_with_the_handshake_are_parsed_under_the_connections_guard(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    server.routes["/buggy"] = BuggyReceive
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    # The first frame travels in the same packet as the upgrade request.
    sock.sendall(upgrade_request(server.port, "/buggy") + client_frame(Opcode.TEXT, b"early"))
    answer = bytearray()

    def closed() -> bool:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return False
        answer.extend(chunk)
        return not chunk

    try:
        turns(server, closed, what="the close")
    finally:
        sock.close()
    head, _, frames = bytes(answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert frames[0] == 0x80 | Opcode.CLOSE
    assert int.from_bytes(frames[2:4], "big") == CloseCode.INTERNAL_ERROR
    client = connect(server, "/echo")  # and the server goes on
    client.send(client_frame(Opcode.TEXT, b"ok"))
    assert next_frames(server, client, "an echo") == [(Opcode.TEXT, b"ok")]


def test_a_failing_route_constructor_costs_only_that_client(
    make_server: Callable[..., Server],
) -> None:
    class Unbuildable(Connection):
        def __init__(self, *args: object) -> None:
            raise RuntimeError("cannot build")

    server = make_server()
    server.routes["/unbuildable"] = Unbuildable
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    sock.sendall(upgrade_request(server.port, "/unbuildable"))
    answer = bytearray()

    def answered() -> bool:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return False
        answer.extend(chunk)
        return not chunk  # closed

    try:
        turns(server, answered, what="the refusal")
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 500 ")
    client = connect(server, "/echo")  # and the server goes on
    client.send(client_frame(Opcode.TEXT, b"ok"))
    assert next_frames(server, client, "an echo") == [(Opcode.TEXT, b"ok")]


def test_the_routes_table_is_not_changed_by_a_server(make_server: Callable[..., Server]) -> None:
    server = make_server()
    server.routes["/extra"] = Connection
    assert "/extra" not in ROUTES
