"""Echo, checked by an independent client (the `websockets` package) against a real server."""

from __future__ import annotations

import contextlib
import os
import random

import pytest
from support import ServerProcess
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

# Every test here runs twice: with the best selector and with select() forced.
pytestmark = pytest.mark.usefixtures("each_selector")

MIB = 1024 * 1024
TIMEOUT_S = 10


def client(server: ServerProcess, path: str = "/") -> ClientConnection:
    return connect(
        server.url(path), max_size=2 * MIB, open_timeout=TIMEOUT_S, compression=None, proxy=None
    )


def test_text_message_comes_back_as_text(ws_server: ServerProcess) -> None:
    with client(ws_server) as ws:
        ws.send("hello, world")
        assert ws.recv(TIMEOUT_S) == "hello, world"


def test_binary_message_comes_back_as_binary_byte_for_byte(ws_server: ServerProcess) -> None:
    payload = bytes(range(256)) * 4
    with client(ws_server) as ws:
        ws.send(payload)
        echoed = ws.recv(TIMEOUT_S)
    assert isinstance(echoed, bytes)
    assert echoed == payload


def test_non_ascii_text_is_echoed_exactly(ws_server: ServerProcess) -> None:
    text = "Grüße, 世界 🌍 \u0000 end"
    with client(ws_server) as ws:
        ws.send(text)
        assert ws.recv(TIMEOUT_S) == text


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000, MIB])
def test_binary_messages_from_0_bytes_to_1_mib_are_echoed(
    ws_server: ServerProcess, size: int
) -> None:
    payload = os.urandom(size)
    with client(ws_server) as ws:
        ws.send(payload)
        assert ws.recv(TIMEOUT_S) == payload


@pytest.mark.parametrize("size", [0, 125, 126, 65536, MIB])
def test_text_messages_from_0_bytes_to_1_mib_are_echoed(
    ws_server: ServerProcess, size: int
) -> None:
    text = "".join(random.choices("abcdefghé€", k=size))[:size]
    text = text.encode()[:size].decode(errors="ignore")  # at most `size` bytes of UTF-8
    with client(ws_server) as ws:
        ws.send(text)
        assert ws.recv(TIMEOUT_S) == text


def test_fragmented_message_is_echoed_whole(ws_server: ServerProcess) -> None:
    with client(ws_server) as ws:
        ws.send(["frag", "ment", "ed"])
        assert ws.recv(TIMEOUT_S) == "fragmented"


def test_messages_come_back_in_order(ws_server: ServerProcess) -> None:
    with client(ws_server) as ws:
        for number in range(200):
            ws.send(str(number))
        assert [ws.recv(TIMEOUT_S) for _ in range(200)] == [str(n) for n in range(200)]


def test_several_clients_at_once_each_get_only_their_own_echo(ws_server: ServerProcess) -> None:
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(client(ws_server)) for _ in range(20)]
        for number, ws in enumerate(clients):
            ws.send(f"client {number}")
        for number, ws in enumerate(clients):
            assert ws.recv(TIMEOUT_S) == f"client {number}"


@pytest.mark.parametrize("path", ["/", "/echo", "/echo?x=1"])
def test_root_and_echo_paths_echo(ws_server: ServerProcess, path: str) -> None:
    with client(ws_server, path) as ws:
        ws.send(path)
        assert ws.recv(TIMEOUT_S) == path


def test_an_unknown_path_is_refused_with_404(ws_server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        client(ws_server, "/no/such/route")
    assert refused.value.response.status_code == 404


def test_ping_from_client_gets_pong(ws_server: ServerProcess) -> None:
    with client(ws_server) as ws:
        assert ws.ping(b"are you there").wait(TIMEOUT_S)


def test_client_close_is_answered_with_the_same_code(ws_server: ServerProcess) -> None:
    with client(ws_server) as ws:
        ws.close(code=4000, reason="bye")
        assert ws.protocol.close_rcvd is not None
        assert ws.protocol.close_rcvd.code == 4000


def test_normal_close_is_answered_with_1000(ws_server: ServerProcess) -> None:
    with client(ws_server) as ws:
        ws.close()
        assert ws.protocol.close_rcvd is not None
        assert ws.protocol.close_rcvd.code == 1000


def test_server_stop_closes_clients_with_1001(ws_server: ServerProcess) -> None:
    with client(ws_server) as ws:
        ws.send("before stop")
        assert ws.recv(TIMEOUT_S) == "before stop"
        assert ws_server.stop() == 0
        with pytest.raises(ConnectionClosed):
            ws.recv(TIMEOUT_S)
        assert ws.protocol.close_rcvd is not None
        assert ws.protocol.close_rcvd.code == 1001
