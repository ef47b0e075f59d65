"""The core Server, in-process: listening, routing, limits, stopping, hooks (see inprocess.py).

A bare Server is given its routes; nothing of the app (chat, tick, the cluster) is involved.
"""

from __future__ import annotations

import socket

import pytest
from inprocess import Harness, client_frame, next_frames, raw_exchange, turns
from support import upgrade_request

from echo_server.core.connection import Connection
from echo_server.core.server import Server, ServerPhase
from echo_server.protocol.frames import CloseCode, Opcode
from echo_server.settings import Settings


class Echo(Connection):
    def handle(self) -> None:
        self.send_message(self.data)


def test_making_a_server_binds_nothing() -> None:
    server = Server(Settings(port=0), {"/": Echo})
    try:
        assert server.phase is ServerPhase.NEW
        with pytest.raises(RuntimeError, match="listen"):
            server.port  # noqa: B018 - the property is what is under test
    finally:
        server.close()
        server.loop.close()


def test_listen_binds_once_and_says_the_port(inproc: Harness) -> None:
    server = inproc.core_server({"/": Echo})
    assert server.listen() == server.port
    assert server.phase is ServerPhase.LISTENING
    with socket.create_connection(("127.0.0.1", server.port), 5):
        pass


def test_routes_can_be_a_function_of_the_path(inproc: Harness) -> None:
    server = inproc.core_server(lambda path: Echo if path.startswith("/any/") else None)
    client = inproc.connect(server, "/any/thing?x=1")
    client.send(client_frame(Opcode.TEXT, b"routed"))
    assert next_frames(server, client, "the echo") == [(Opcode.TEXT, b"routed")]
    answer = raw_exchange(server, b"GET /else HTTP/1.1\r\nHost: 127.0.0.1\r\n" + UPGRADE_REST)
    assert answer.startswith(b"HTTP/1.1 404 ")


UPGRADE_REST = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_past_max_connections_a_client_gets_503_at_once(inproc: Harness) -> None:
    server = inproc.core_server({"/": Echo}, max_connections=2)
    inproc.connect(server)
    inproc.connect(server)
    answer = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + UPGRADE_REST)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert server.stats.refused == 1


def test_with_select_max_connections_is_lowered_below_its_descriptor_limit() -> None:
    server = Server(Settings(port=0, selector="select", max_connections=5000), {"/": Echo})
    try:
        assert server.max_connections == 992
    finally:
        server.close()
        server.loop.close()


def test_shutdown_closes_every_client_with_1001_then_stops_the_loop(inproc: Harness) -> None:
    server = inproc.core_server({"/": Echo})
    clients = [inproc.connect(server) for _ in range(3)]
    server.shutdown()
    assert server.phase is ServerPhase.STOPPING
    for client in clients:
        (frame,) = next_frames(server, client, "the close frame")
        assert frame[0] == Opcode.CLOSE
        assert int.from_bytes(frame[1][:2], "big") == CloseCode.GOING_AWAY
        client.send(client_frame(Opcode.CLOSE, frame[1][:2]))
        client.sock.shutdown(socket.SHUT_WR)  # the closing handshake done: our end of TCP too
    turns(server, lambda: not server.connections, what="every client gone")


def test_while_stopping_a_new_websocket_client_is_refused_with_503(inproc: Harness) -> None:
    server = inproc.core_server({"/": Echo})
    inproc.connect(server)  # it never answers the close frame: the stop lasts
    server.shutdown()
    answer = raw_exchange(server, upgrade_request(server.port))
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"shutting down" in answer
    assert server.stats.handshakes_refused == {503: 1}


def test_the_port_stays_open_while_stopping_and_closes_with_close(inproc: Harness) -> None:
    server = inproc.core_server({"/": Echo})
    inproc.connect(server)
    server.shutdown()
    assert server.listener is not None
    assert server.listener.fileno() >= 0
    server.close()
    assert server.listener.fileno() < 0


def test_hooks_run_at_shutdown_and_at_close_once_each_and_a_failing_one_spares_the_others(
    inproc: Harness,
) -> None:
    server = inproc.core_server({"/": Echo})
    ran: list[str] = []

    def failing() -> None:
        raise RuntimeError("a hook's bug")

    server.on_shutdown(failing)
    server.on_shutdown(lambda: ran.append("shutdown"))
    server.on_close(failing)
    server.on_close(lambda: ran.append("close"))
    server.shutdown()
    server.shutdown()
    server.close()
    server.close()
    assert ran == ["shutdown", "close"]


def test_close_drops_every_client_at_once(inproc: Harness) -> None:
    server = inproc.core_server({"/": Echo})
    client = inproc.connect(server)
    server.close()
    client.sock.settimeout(5)
    assert client.sock.recv(10) == b""
    assert server.phase is ServerPhase.CLOSED
    assert not server.connections


def test_connection_count_counts_handshakes_and_connections(inproc: Harness) -> None:
    server = inproc.core_server({"/": Echo})
    inproc.connect(server)
    half_open = socket.create_connection(("127.0.0.1", server.port))
    try:
        turns(server, lambda: server.connection_count == 2, what="both counted")
        assert (len(server.connections), len(server.upgrades)) == (1, 1)
    finally:
        half_open.close()
