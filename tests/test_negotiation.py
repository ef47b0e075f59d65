"""End to end: subprotocols and permessage-deflate, a real server process and real clients.

The `websockets` package is the independent client (it offers permessage-deflate by default);
raw sockets send what it never would (a zip bomb, RSV1 on a control frame). One server process
per configuration, shared by the tests of this module.
"""

from __future__ import annotations

import socket
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from support import (
    ServerProcess,
    peak_rss_bytes,
    read_close_code,
    read_frame,
    recv_exactly,
    rss_bytes,
    start,
    upgrade_request,
)
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from echo_server.protocol.frames import CloseCode, Opcode, encode_frame

MIB = 1024 * 1024
MASK = b"abcd"
TIMEOUT_S = 10.0
SYNC_FLUSH_TAIL = b"\x00\x00\xff\xff"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """As it ships: compression on, no subprotocols, a 1 MiB message limit."""
    process = start(["ws", "--port", "0"])
    yield process
    process.stop()


@pytest.fixture(scope="module")
def ocpp_server() -> Iterator[ServerProcess]:
    process = start(["ws", "--port", "0", "--subprotocol", "ocpp1.6", "--subprotocol", "mqtt"])
    yield process
    process.stop()


@pytest.fixture(scope="module")
def any_subprotocol_server() -> Iterator[ServerProcess]:
    process = start(["ws", "--port", "0", "--subprotocol", "*"])
    yield process
    process.stop()


@pytest.fixture(scope="module")
def uncompressed_server() -> Iterator[ServerProcess]:
    process = start(["ws", "--port", "0", "--compression", "off"])
    yield process
    process.stop()


def websockets_client(server: ServerProcess, **options: Any) -> ClientConnection:
    ws: ClientConnection = connect(
        server.url("/echo"), open_timeout=TIMEOUT_S, max_size=4 * MIB, **options
    )
    return ws


def extensions_answer(ws: ClientConnection) -> str | None:
    assert ws.response is not None
    return ws.response.headers.get("Sec-WebSocket-Extensions")


def echo(ws: ClientConnection, message: str | bytes) -> str | bytes:
    ws.send(message)
    return ws.recv(timeout=TIMEOUT_S)


def raw_deflate_socket(server: ServerProcess, offer: str = "permessage-deflate") -> socket.socket:
    """A blocking socket upgraded with permessage-deflate agreed (the 101 read, nothing more)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S)
    sock.sendall(upgrade_request(server.port, "/echo", f"Sec-WebSocket-Extensions: {offer}\r\n"))
    head = b""
    while b"\r\n\r\n" not in head:
        head += recv_exactly(sock, 1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"Sec-WebSocket-Extensions: permessage-deflate" in head
    return sock


# permessage-deflate with websockets' client.


def test_the_websockets_client_gets_compression_by_default(server: ServerProcess) -> None:
    with websockets_client(server) as ws:
        assert extensions_answer(ws) == (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        )
        assert [type(extension).__name__ for extension in ws.protocol.extensions] == [
            "PerMessageDeflate"
        ]


@pytest.mark.parametrize("size", [0, 1, 31, 32, 125, 126, 4096, 65536, MIB - 1, MIB])
def test_messages_of_every_size_come_back_compressed_both_ways(
    server: ServerProcess, size: int
) -> None:
    text = ("Grüße, κόσμε! " * (size // 10 + 1)).encode()[:size].decode(errors="ignore")
    binary = bytes(range(256)) * (size // 256) + bytes(size % 256)
    with websockets_client(server) as ws:
        assert echo(ws, text) == text
        assert echo(ws, binary) == binary


def test_many_messages_in_turn_keep_both_contexts_in_step(server: ServerProcess) -> None:
    with websockets_client(server) as ws:
        for index in range(200):
            message = f'{{"tick": {index}, "sensor": "kitchen", "t": {20 + index % 7}.5}}'
            assert echo(ws, message) == message


@pytest.mark.parametrize(
    "factory",
    [
        ClientPerMessageDeflateFactory(server_no_context_takeover=True),
        ClientPerMessageDeflateFactory(client_no_context_takeover=True),
        ClientPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True
        ),
        ClientPerMessageDeflateFactory(server_max_window_bits=9, client_max_window_bits=9),
        ClientPerMessageDeflateFactory(server_max_window_bits=15, client_max_window_bits=15),
        ClientPerMessageDeflateFactory(client_max_window_bits=None),
    ],
    ids=["server-no-takeover", "client-no-takeover", "no-takeover", "bits-9", "bits-15", "plain"],
)
def test_every_parameter_the_client_offers_is_honoured(
    server: ServerProcess, factory: ClientPerMessageDeflateFactory
) -> None:
    with websockets_client(server, extensions=[factory], compression=None) as ws:
        answer = extensions_answer(ws)
        assert answer is not None
        for name, value in factory.get_request_params():
            if name.endswith("no_context_takeover"):
                assert name in answer
            elif name == "server_max_window_bits":
                assert f"server_max_window_bits={min(int(str(value)), 12)}" in answer
        for index in range(20):
            message = "a message that repeats, more or less " * 3 + str(index)
            assert echo(ws, message) == message


def test_with_compression_off_nothing_is_negotiated(uncompressed_server: ServerProcess) -> None:
    with websockets_client(uncompressed_server) as ws:
        assert extensions_answer(ws) is None
        assert ws.protocol.extensions == []
        assert echo(ws, "x" * 1000) == "x" * 1000


# What websockets would never send.


def test_our_compressed_echo_has_rsv1_and_inflates_back(server: ServerProcess) -> None:
    message = b'{"sensor": "kitchen", "temperature": 21.5, "humidity": 40}' * 10
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    with raw_deflate_socket(server) as sock:
        sock.sendall(encode_frame(Opcode.BINARY, payload[:-4], mask=MASK, rsv=4))
        first = recv_exactly(sock, 1)[0]
        assert first == 0x80 | 0x40 | Opcode.BINARY  # FIN, RSV1, binary
        length = recv_exactly(sock, 1)[0]
        if length == 126:
            length = int.from_bytes(recv_exactly(sock, 2), "big")
        echoed = recv_exactly(sock, length)
    assert zlib.decompressobj(wbits=-12).decompress(echoed + SYNC_FLUSH_TAIL) == message


def test_rsv1_on_a_control_frame_closes_with_1002(server: ServerProcess) -> None:
    with raw_deflate_socket(server) as sock:
        sock.sendall(encode_frame(Opcode.PING, b"", mask=MASK, rsv=4))
        assert read_close_code(sock) == CloseCode.PROTOCOL_ERROR


def test_a_zip_bomb_is_closed_with_1009_without_inflating_it(server: ServerProcess) -> None:
    # Under 1 MiB on the wire that inflates to 1000 MiB of zeros; each MiB after the first
    # compresses to the same bytes, so it is made in milliseconds.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    steady = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = first + steady * 999
    assert len(bomb) < MIB  # within the limit on the wire: only inflating can find it out
    peak_before = peak_rss_bytes(server.pid)
    with raw_deflate_socket(server) as sock:
        sock.sendall(encode_frame(Opcode.BINARY, bomb, mask=MASK, rsv=4))
        assert read_close_code(sock) == CloseCode.MESSAGE_TOO_BIG
    # The server never held more than its 1 MiB limit's worth (and the bomb) at once.
    assert peak_rss_bytes(server.pid) - peak_before < 32 * MIB
    with websockets_client(server) as ws:  # and it goes on serving
        assert echo(ws, "still here") == "still here"


def test_compressed_data_that_does_not_inflate_closes_with_1007(server: ServerProcess) -> None:
    with raw_deflate_socket(server) as sock:
        sock.sendall(encode_frame(Opcode.TEXT, b"\xff\xff\xff\xff", mask=MASK, rsv=4))
        assert read_close_code(sock) == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_an_idle_compressed_connection_costs_no_zlib_memory(server: ServerProcess) -> None:
    # zlib state is made on first use: compressed connections that exchange nothing cost about
    # what plain ones do (5 KiB; made at once, a compressor and a decompressor would be 49 KiB).
    sockets = [raw_deflate_socket(server) for _ in range(100)]
    try:
        before = rss_bytes(server.pid)
        more = [raw_deflate_socket(server) for _ in range(200)]
        sockets += more
        per_connection = (rss_bytes(server.pid) - before) / len(more)
        assert per_connection < 16 * 1024
        for sock in more[:3]:  # and they work
            sock.sendall(encode_frame(Opcode.TEXT, b"ok", mask=MASK))
            assert read_frame(sock) == (Opcode.TEXT, b"ok")
    finally:
        for sock in sockets:
            sock.close()


# Subprotocols.


def test_the_first_offered_subprotocol_the_server_speaks_is_chosen(
    ocpp_server: ServerProcess,
) -> None:
    offered = [Subprotocol("ocpp2.0.1"), Subprotocol("mqtt"), Subprotocol("ocpp1.6")]
    with websockets_client(ocpp_server, subprotocols=offered) as ws:
        assert ws.subprotocol == "mqtt"
        assert echo(ws, "hello") == "hello"


def test_star_accepts_whatever_the_client_offers_first(
    any_subprotocol_server: ServerProcess,
) -> None:
    offered = [Subprotocol("graphql-transport-ws"), Subprotocol("graphql-ws")]
    with websockets_client(any_subprotocol_server, subprotocols=offered) as ws:
        assert ws.subprotocol == "graphql-transport-ws"


def test_with_no_subprotocol_in_common_websockets_opens_without_one(
    ocpp_server: ServerProcess,
) -> None:
    # RFC 6455 leaves the decision to the client: websockets goes on, with no subprotocol, and
    # an application that insists must check `subprotocol` and close (as browsers leave it too).
    with websockets_client(ocpp_server, subprotocols=[Subprotocol("ocpp2.0.1")]) as ws:
        assert ws.subprotocol is None
        assert ws.response is not None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers


def test_a_server_without_subprotocols_chooses_none(server: ServerProcess) -> None:
    with websockets_client(server, subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        assert ws.subprotocol is None
