"""A connection, in-process: a real server on a free port, real sockets, the loop driven by hand
(see inprocess.py): bounded work per turn, one send per turn, guards, what came with the
handshake.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import zlib

import pytest
from inprocess import MAX_TURNS, Client, Harness, client_frame, next_frames, turns
from support import upgrade_request

from echo_server import defaults
from echo_server.app.echo import Echo
from echo_server.app.routes import ROUTES
from echo_server.core.connection import Connection
from echo_server.core.server import Server
from echo_server.protocol.frames import CloseCode, Opcode, encode_frame


def test_a_chat_flood_is_handled_a_slice_per_turn_so_a_bystander_is_answered_first(
    inproc: Harness,
) -> None:
    server = inproc.app_server(rate_limit_per_s=0)
    subscriber = inproc.connect(server, "/chat")
    flooder = inproc.connect(server, "/chat")
    bystander = inproc.connect(server, "/echo")
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
    inproc: Harness,
) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo")
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


def test_the_echoes_of_one_turn_leave_in_order(inproc: Harness) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo")
    messages = [b"%d" % i for i in range(300)]
    client.send(b"".join(client_frame(Opcode.BINARY, m) for m in messages))
    received: list[bytes] = []

    def all_back() -> bool:
        received.extend(payload for _, payload in client.frames())
        return len(received) == len(messages)

    turns(server, all_back, what="every echo")
    assert received == messages


def test_a_valid_message_before_a_bad_frame_is_echoed_before_the_close(
    inproc: Harness,
) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo")
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
    inproc: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    server = inproc.app_server()
    server.routes["/buggy"] = BuggyRead
    victim = inproc.connect(server, "/buggy")
    bystander = inproc.connect(server, "/echo")
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
    inproc: Harness,
) -> None:
    server = inproc.app_server(ping_interval_s=0.01)
    server.routes["/buggy"] = BuggyTimer
    victim = inproc.connect(server, "/buggy")
    received = next_frames(server, victim, "the victim's close frame")
    assert received[0][0] == Opcode.CLOSE
    assert int.from_bytes(received[0][1][:2], "big") == CloseCode.INTERNAL_ERROR


class BuggyReceive(Connection):
    """The server's own parsing of what came in fails: a bug, not a handler exception."""

    def _receive(self, data: bytes | memoryview) -> None:
        raise RuntimeError("a bug while parsing")


def test_bytes_that_came_with_the_handshake_are_parsed_under_the_connections_guard(
    inproc: Harness,
) -> None:
    server = inproc.app_server()
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
    client = inproc.connect(server, "/echo")  # and the server goes on
    client.send(client_frame(Opcode.TEXT, b"ok"))
    assert next_frames(server, client, "an echo") == [(Opcode.TEXT, b"ok")]


def test_a_failing_route_constructor_costs_only_that_client(
    inproc: Harness,
) -> None:
    class Unbuildable(Connection):
        def __init__(self, *args: object) -> None:
            raise RuntimeError("cannot build")

    server = inproc.app_server()
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
    client = inproc.connect(server, "/echo")  # and the server goes on
    client.send(client_frame(Opcode.TEXT, b"ok"))
    assert next_frames(server, client, "an echo") == [(Opcode.TEXT, b"ok")]


def test_the_routes_table_is_not_changed_by_a_server(inproc: Harness) -> None:
    server = inproc.app_server()
    server.routes["/extra"] = Connection
    assert "/extra" not in ROUTES


class CloseThenSend(Connection):
    """Closes, then sends: what was sent after the close frame must never leave."""

    def handle(self) -> None:
        self.send_message("before")
        self.close(4000, "closing")
        self.send_message("after the close frame")
        assert self.closed


def test_send_message_after_close_sends_nothing(inproc: Harness) -> None:
    server = inproc.app_server()
    server.routes["/close-then-send"] = CloseThenSend
    client = inproc.connect(server, "/close-then-send")
    client.send(client_frame(Opcode.TEXT, b"go"))
    received: list[tuple[int, bytes]] = []

    def closed() -> bool:
        received.extend(client.frames())
        return any(opcode == Opcode.CLOSE for opcode, _ in received)

    turns(server, closed, what="the close frame")
    client.send(client_frame(Opcode.CLOSE, (4000).to_bytes(2, "big")))
    for _ in range(10):
        server.loop.run_once(0.01)
    received.extend(client.frames())
    assert received == [(Opcode.TEXT, b"before"), (Opcode.CLOSE, b"\x0f\xa0closing")]


# What the handshake negotiated: the subprotocol, permessage-deflate (rules: test_deflate.py).

DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
SYNC_FLUSH_TAIL = b"\x00\x00\xff\xff"


class SaysSubprotocol(Connection):
    def connected(self) -> None:
        self.send_message(repr(self.subprotocol))


def next_frames_and_rsv(server: Server, client: Client, what: str) -> list[tuple[int, bytes, int]]:
    """As `next_frames`, with each frame's RSV bits (0x40: compressed)."""
    received: list[tuple[int, bytes, int]] = []

    def arrived() -> bool:
        received.extend(client.frames_with_rsv())
        return bool(received)

    turns(server, arrived, what=what)
    return received


def inflated(payload: bytes, inflater: zlib._Decompress | None = None) -> bytes:
    inflater = inflater or zlib.decompressobj(wbits=-15)
    return inflater.decompress(payload + SYNC_FLUSH_TAIL)


def test_the_handler_sees_the_chosen_subprotocol_from_connected_on(inproc: Harness) -> None:
    server = inproc.core_server({"/": SaysSubprotocol}, subprotocols=("ocpp2.0.1", "ocpp1.6"))
    client = inproc.connect(server, extra="Sec-WebSocket-Protocol: ocpp1.6, ocpp2.0.1\r\n")
    assert "\r\nSec-WebSocket-Protocol: ocpp1.6" in client.head
    assert next_frames(server, client, "the subprotocol") == [(Opcode.TEXT, b"'ocpp1.6'")]


def test_the_handler_sees_none_when_no_subprotocol_was_chosen(inproc: Harness) -> None:
    server = inproc.core_server({"/": SaysSubprotocol}, subprotocols=("mqtt",))
    client = inproc.connect(server, extra="Sec-WebSocket-Protocol: ocpp1.6\r\n")
    assert "Sec-WebSocket-Protocol" not in client.head
    assert next_frames(server, client, "the subprotocol") == [(Opcode.TEXT, b"None")]


def test_with_deflate_agreed_a_message_goes_out_compressed_and_inflates_back(
    inproc: Harness,
) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo", extra=DEFLATE_OFFER)
    assert "\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12" in (
        client.head
    )
    message = b'{"sensor": "kitchen", "temperature": 21.5, "humidity": 40}'
    client.send(client_frame(Opcode.TEXT, message))
    received = next_frames_and_rsv(server, client, "echo")
    ((opcode, payload, rsv),) = received
    assert (opcode, rsv) == (Opcode.TEXT, 0x40)
    assert inflated(payload) == message


def test_a_compressed_message_from_the_client_is_inflated_and_echoed(inproc: Harness) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo", extra=DEFLATE_OFFER)
    compressor = zlib.compressobj(wbits=-12)
    payload = compressor.compress(b"x" * 10_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    client.send(encode_frame(Opcode.BINARY, payload[:-4], mask=b"abcd", rsv=4))
    received = next_frames_and_rsv(server, client, "echo")
    ((opcode, echoed, rsv),) = received
    assert (opcode, rsv) == (Opcode.BINARY, 0x40)
    assert inflated(echoed) == b"x" * 10_000


def test_a_message_under_32_bytes_goes_out_uncompressed(inproc: Harness) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo", extra=DEFLATE_OFFER)
    client.send(client_frame(Opcode.TEXT, b"21.5"))
    received = next_frames_and_rsv(server, client, "echo")
    assert received == [(Opcode.TEXT, b"21.5", 0)]


def test_a_broadcast_goes_out_uncompressed_to_a_compressed_connection(inproc: Harness) -> None:
    server = inproc.app_server()
    listener = inproc.connect(server, "/chat", extra=DEFLATE_OFFER)
    sender = inproc.connect(server, "/chat")
    message = b"a chat line long enough to be worth compressing, if it were sent alone"
    sender.send(client_frame(Opcode.TEXT, message))
    received = next_frames_and_rsv(server, listener, "it")
    assert received == [(Opcode.TEXT, message, 0)]


def test_with_compression_off_an_offer_gets_no_extension(inproc: Harness) -> None:
    server = inproc.app_server(compression=False)
    client = inproc.connect(server, "/echo", extra=DEFLATE_OFFER)
    assert "Sec-WebSocket-Extensions" not in client.head
    message = b"x" * 1000
    client.send(client_frame(Opcode.BINARY, message))
    received = next_frames_and_rsv(server, client, "echo")
    assert received == [(Opcode.BINARY, message, 0)]
    client.send(encode_frame(Opcode.BINARY, b"\x02\x00", mask=b"abcd", rsv=4))  # RSV1
    ((opcode, payload),) = next_frames(server, client, "the close")
    assert opcode == Opcode.CLOSE
    assert int.from_bytes(payload[:2], "big") == CloseCode.PROTOCOL_ERROR


# The echo fast path (Connection.echoes): plain echoes skip handle(), nothing else changes.


def received_within(server: Server, client: Client, count: int) -> list[tuple[int, bytes]]:
    """Run turns until `client` has `count` frames; return them."""
    received: list[tuple[int, bytes]] = []

    def arrived() -> bool:
        received.extend(client.frames())
        return len(received) >= count

    turns(server, arrived, what=f"{count} frames")
    return received


def test_plain_echoes_are_counted_in_the_statistics(inproc: Harness) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo")
    before_in, before_out = server.stats.messages_in, server.stats.messages_out
    bytes_before = server.stats.bytes_out
    client.send(b"".join(client_frame(Opcode.TEXT, b"%d" % i) for i in range(10)))
    assert received_within(server, client, 10) == [(Opcode.TEXT, b"%d" % i) for i in range(10)]
    assert server.stats.messages_in - before_in == 10
    assert server.stats.messages_out - before_out == 10
    assert server.stats.bytes_out - bytes_before == 10  # payload bytes, as send_frame counts


def test_an_echo_subclass_that_overrides_handle_is_called_for_every_message(
    inproc: Harness,
) -> None:
    class Shout(Echo):
        def handle(self) -> None:
            assert isinstance(self.data, str)
            self.send_message(self.data.upper())

    server = inproc.core_server({"/": Shout})
    client = inproc.connect(server, "/")
    client.send(client_frame(Opcode.TEXT, b"hey") + client_frame(Opcode.TEXT, b"you"))
    assert received_within(server, client, 2) == [(Opcode.TEXT, b"HEY"), (Opcode.TEXT, b"YOU")]


def test_echoes_read_with_a_close_go_out_before_the_answer_to_it(inproc: Harness) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo")
    close = client_frame(Opcode.CLOSE, (1000).to_bytes(2, "big"))
    client.send(client_frame(Opcode.TEXT, b"last") + close)
    assert received_within(server, client, 2) == [
        (Opcode.TEXT, b"last"),
        (Opcode.CLOSE, (1000).to_bytes(2, "big")),
    ]


def test_an_echo_with_invalid_utf8_after_good_ones_is_closed_with_1007(inproc: Harness) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo")
    client.send(client_frame(Opcode.TEXT, b"fine") + client_frame(Opcode.TEXT, b"\xff"))
    received = received_within(server, client, 2)
    assert received[0] == (Opcode.TEXT, b"fine")
    assert received[1][0] == Opcode.CLOSE
    assert int.from_bytes(received[1][1][:2], "big") == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_echoes_the_kernel_cannot_take_at_once_are_queued_and_arrive_in_order(
    inproc: Harness,
) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo")
    # Small socket buffers both ways, so that the kernel soon takes only part of a send.
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    (connection,) = server.connections.values()
    connection.client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    count = 1_000  # 130 KB of echoes: far more than those buffers hold while nobody reads
    frames = [client_frame(Opcode.BINARY, b"%05d" % i + b"." * 120) for i in range(count)]
    pending = b"".join(frames)
    for _ in range(MAX_TURNS):
        if not pending:
            break
        with contextlib.suppress(BlockingIOError):
            pending = pending[client.sock.send(pending) :]
        server.loop.run_once(0.001)
    assert not pending
    received = received_within(server, client, count)
    assert [payload[:5] for _, payload in received] == [b"%05d" % i for i in range(count)]
