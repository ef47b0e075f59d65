"""The echo routes' fault knobs, the inspector, and a refused client's reason, end to end.

A real server process; `websockets` as the independent client (it joins fragments, times pings,
reports close codes), raw sockets where the frames themselves are the point.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from typing import Any

import pytest
from conftest import StartServer
from support import ServerProcess, read_frame, recv_exactly, upgrade_request
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from echo_server.protocol.frames import encode_frame

TIMEOUT_S = 10.0
MASK = b"\x0b\xad\xf0\x0d"


def client(server: ServerProcess, path: str, **options: Any) -> ClientConnection:
    ws: ClientConnection = connect(
        server.url(path), open_timeout=TIMEOUT_S, proxy=None, compression=None, **options
    )
    return ws


def events(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    found = []
    for _ in range(count):
        message = ws.recv(TIMEOUT_S)
        assert isinstance(message, str)
        found.append(json.loads(message))
    return found


# Fault knobs.


def test_delay_sends_each_echo_that_late_in_order(ws_server: ServerProcess) -> None:
    with client(ws_server, "/?delay=300") as ws:
        sent = time.monotonic()
        ws.send("one")
        ws.send("two")
        assert ws.recv(TIMEOUT_S) == "one"
        assert time.monotonic() - sent >= 0.3
        assert ws.recv(TIMEOUT_S) == "two"


def test_close_after_n_messages_closes_with_that_code_and_reason(
    ws_server: ServerProcess,
) -> None:
    with client(ws_server, "/echo?close=4001:enough%20now&after=2") as ws:
        ws.send("a")
        ws.send("b")
        assert [ws.recv(TIMEOUT_S), ws.recv(TIMEOUT_S)] == ["a", "b"]
        with pytest.raises(ConnectionClosed):
            ws.recv(TIMEOUT_S)
    assert (ws.close_code, ws.close_reason) == (4001, "enough now")


def test_close_after_0_closes_at_once(ws_server: ServerProcess) -> None:
    with client(ws_server, "/?close=1013:try%20later") as ws, pytest.raises(ConnectionClosed):
        ws.recv(TIMEOUT_S)
    assert ws.close_code == 1013


def test_drop_resets_the_connection_with_no_close_frame(ws_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", ws_server.port), TIMEOUT_S) as sock:
        sock.sendall(upgrade_request(ws_server.port, "/?drop&after=1"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        sock.sendall(encode_frame(0x1, b"last", mask=MASK))
        assert read_frame(sock) == (0x1, b"last")
        with pytest.raises(ConnectionResetError):
            for _ in range(100):  # read until the reset: no close frame comes first
                data = sock.recv(65536)
                assert not data.startswith(b"\x88"), "a close frame came before the reset"
                if not data:
                    pytest.fail("an orderly end (FIN), not a reset")


def test_fragment_sends_each_echo_in_fragments_of_that_size(ws_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", ws_server.port), TIMEOUT_S) as sock:
        sock.sendall(upgrade_request(ws_server.port, "/?fragment=4"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        sock.sendall(encode_frame(0x2, b"0123456789", mask=MASK))
        frames = [recv_exactly(sock, 2) for _ in range(1)]
        first = frames[0] + recv_exactly(sock, 4)
        second = recv_exactly(sock, 6)
        third = recv_exactly(sock, 4)
    assert first == bytes([0x02, 4]) + b"0123"  # binary, FIN off
    assert second == bytes([0x00, 4]) + b"4567"  # continuation, FIN off
    assert third == bytes([0x80, 2]) + b"89"  # continuation, FIN on


def test_repeat_echoes_each_message_k_times(ws_server: ServerProcess) -> None:
    with client(ws_server, "/?repeat=3") as ws:
        ws.send(b"\x01\x02")
        assert [ws.recv(TIMEOUT_S) for _ in range(3)] == [b"\x01\x02"] * 3


def test_repeat_past_4_mib_of_echoes_is_closed_with_1009(ws_server: ServerProcess) -> None:
    with client(ws_server, "/?repeat=16", max_size=None) as ws:
        ws.send(b"x" * (512 * 1024))
        with pytest.raises(ConnectionClosed):
            ws.recv(TIMEOUT_S)
    assert ws.close_code == 1009


def test_ping_pings_every_interval_with_a_counter(ws_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", ws_server.port), TIMEOUT_S) as sock:
        sock.sendall(upgrade_request(ws_server.port, "/?ping=0.1"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert [read_frame(sock) for _ in range(3)] == [(0x9, b"1"), (0x9, b"2"), (0x9, b"3")]


def test_push_sends_messages_of_that_size_on_a_timer(ws_server: ServerProcess) -> None:
    with client(ws_server, "/?push=100&every=20") as ws:
        pushed = [ws.recv(TIMEOUT_S) for _ in range(3)]
    assert all(isinstance(message, str) and len(message) == 100 for message in pushed)
    assert [str(message)[:8] for message in pushed] == ["00000001", "00000002", "00000003"]


def test_a_bad_knob_is_refused_with_400_before_the_upgrade(ws_server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        client(ws_server, "/?repeat=99")
    assert refused.value.response.status_code == 400
    assert b"repeat=99 is not within 1 to 16" in refused.value.response.body


def test_knobs_work_on_the_inspector_too(ws_server: ServerProcess) -> None:
    with client(ws_server, "/inspect?repeat=2") as ws:
        events(ws, 1)  # the handshake
        ws.send("twice")
        assert events(ws, 1)[0]["event"] == "frame"
        assert [ws.recv(TIMEOUT_S), ws.recv(TIMEOUT_S)] == ["twice", "twice"]


# The inspector.


def test_the_inspector_first_describes_the_handshake(ws_server: ServerProcess) -> None:
    with client(
        ws_server,
        "/inspect?x=1",
        subprotocols=[Subprotocol("ocpp1.6"), Subprotocol("mqtt")],
        additional_headers={"X-Test": "yes"},
    ) as ws:
        (handshake,) = events(ws, 1)
    assert handshake["event"] == "handshake"
    assert (handshake["method"], handshake["path"], handshake["query"]) == (
        "GET",
        "/inspect",
        "x=1",
    )
    assert handshake["http_version"] == "HTTP/1.1"
    names = [name for name, _ in handshake["headers"]]
    assert names[:2] == ["Host", "Upgrade"]  # in the order sent
    assert ["X-Test", "yes"] in handshake["headers"]
    assert handshake["client"]["address"] == "127.0.0.1"
    assert handshake["tls"] is False
    assert handshake["subprotocols_offered"] == ["ocpp1.6", "mqtt"]


def test_the_inspector_shows_the_subprotocol_and_compression_agreed(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0", "--subprotocol", "mqtt")
    with connect(
        server.url("/inspect"),
        open_timeout=TIMEOUT_S,
        proxy=None,
        subprotocols=[Subprotocol("ocpp1.6"), Subprotocol("mqtt")],
    ) as ws:  # websockets offers permessage-deflate by default
        (handshake,) = events(ws, 1)
        ws.send("hello " * 20)
        (frame,) = events(ws, 1)
    assert handshake["subprotocol"] == "mqtt"
    assert handshake["extensions_offered"][0].startswith("permessage-deflate")
    (agreed,) = handshake["extensions"]
    assert agreed.startswith("permessage-deflate")
    assert frame["rsv"] == [True, False, False]  # compressed: RSV1 on the frame
    assert frame["length"] < 120  # what came on the wire, not the inflated message


def test_the_inspector_describes_each_frame_before_the_echo(ws_server: ServerProcess) -> None:
    with client(ws_server, "/inspect") as ws:
        events(ws, 1)
        ws.send("hello")
        (frame,) = events(ws, 1)
        assert ws.recv(TIMEOUT_S) == "hello"
    assert frame["opcode"] == "TEXT"
    assert (frame["fin"], frame["rsv"], frame["masked"]) == (True, [False, False, False], True)
    assert len(frame["mask"]) == 8
    assert (frame["length"], frame["payload"]) == (5, {"text": "hello"})


def test_the_inspector_shows_binary_as_hex_and_only_the_first_64_bytes(
    ws_server: ServerProcess,
) -> None:
    with client(ws_server, "/inspect") as ws:
        events(ws, 1)
        payload = bytes(range(255, 55, -1))  # not UTF-8: shown as hex
        ws.send(payload)
        (frame,) = events(ws, 1)
    assert frame["length"] == 200
    assert frame["payload"] == {"hex": payload[:64].hex()}


def test_the_inspector_shows_each_fragment_and_the_client_pings(ws_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", ws_server.port), TIMEOUT_S) as sock:
        sock.sendall(upgrade_request(ws_server.port, "/inspect"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        read_frame(sock)  # the handshake event
        sock.sendall(
            encode_frame(0x1, b"ab", fin=False, mask=MASK)
            + encode_frame(0x9, b"ping!", mask=MASK)
            + encode_frame(0x0, b"cd", mask=MASK)
        )
        seen = []
        for _ in range(10):  # the pong answering our ping comes among the events
            opcode, payload = read_frame(sock)
            if opcode == 0x1:
                seen.append(json.loads(payload))
            if len(seen) == 3:
                break
    assert [(e["opcode"], e["fin"]) for e in seen] == [
        ("TEXT", False),
        ("PING", True),
        ("CONTINUATION", True),
    ]


def test_the_inspector_times_the_round_trip_of_its_pings(ws_server: ServerProcess) -> None:
    with client(ws_server, "/inspect?ping=0.1") as ws:
        found = events(ws, 3)  # handshake, then the pong's frame and its round trip
    pong = next(event for event in found if event["event"] == "pong")
    assert pong["payload"] == {"text": "1"}
    assert 0 <= pong["rtt_ms"] < TIMEOUT_S * 1000


# Why a client was refused.


def refusal(server: ServerProcess, origin: str | None = None) -> tuple[dict[str, Any], Any]:
    request = urllib.request.Request(server.url("/refusal").replace("ws://", "http://"))
    if origin is not None:
        request.add_header("Origin", origin)
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return json.load(response), response.headers


def test_a_refused_client_can_ask_why_for_a_minute(ws_server: ServerProcess) -> None:
    assert refusal(ws_server)[0] == {"refused": False}
    with pytest.raises(InvalidStatus):
        client(ws_server, "/nowhere")
    answer, _ = refusal(ws_server)
    assert answer["refused"] is True
    assert (answer["status"], answer["path"]) == (404, "/nowhere")
    assert "No WebSocket route here" in answer["message"]


def test_a_page_of_another_site_refused_is_told_why_only_if_it_is_this_host(
    ws_server: ServerProcess,
) -> None:
    with pytest.raises(InvalidStatus):
        connect(ws_server.url(), origin=Origin("http://evil.example"), proxy=None)
    _, foreign = refusal(ws_server, "http://evil.example")
    assert "Access-Control-Allow-Origin" not in foreign
    same_host = "http://127.0.0.1:8000"
    answer, headers = refusal(ws_server, same_host)
    assert headers["Access-Control-Allow-Origin"] == same_host
    assert answer["status"] == 403
