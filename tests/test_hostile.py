"""Hostile peers against the running WebSocket server, end to end, over real sockets.

Each test starts `python -m echo_server ws` (or tests/servers/faulty.py) on a free port and speaks
to it with exact bytes: bad handshakes, foreign origins, every kind of bad frame, silent and
unresponsive peers, a failing handler, stop signals with data in flight, and TLS peers that never
start or botch their handshake. The point is what the running server does with what an attacker
can send: the status or close code it answers, and that it then lets go of the socket and goes
on serving everyone else.

This is not the codec's or the handshake's specification (tests/test_frames.py and
tests/test_handshake.py test those rules without sockets), nor a load test (10,000 clients,
descriptor exhaustion and slow readers are in tests/test_hostile_load.py).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shlex
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import StartServer
from support import (
    ServerProcess,
    holds_socket,
    http_exchange,
    open_websocket,
    read_close_code,
    read_frame,
    recv_until,
    server_side_inode,
    start,
    status_of,
    upgrade_request,
    wait_until,
)
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from echo_server import defaults
from echo_server.protocol.frames import Opcode, encode_frame, frame_header, is_valid_close_code

# Every test here runs twice: with the best selector and with select() forced.
pytestmark = pytest.mark.usefixtures("each_selector")

REPLY_TIMEOUT_S = 10.0
# Added to every deadline the server must meet, for a loaded machine; a test waits no longer.
SLACK_S = 5.0
MASK = b"\x37\xfa\x21\x3d"  # any 4 bytes; fixed so that a failing frame can be replayed by hand
# Lines every upgrade request here carries (Host, Upgrade, Connection, key, version).
UPGRADE_HEADER_LINES = 5
FAULTY_SERVER = (sys.executable, "tests/servers/faulty.py")
BOOM_ERROR = "boom: this handler fails on purpose"  # as raised in tests/servers/faulty.py
TIMER_ERROR = "timer-bug: this timer fails on purpose"
MAX_RESPONSE_HEAD_BYTES = 64 * 1024


# Raw client helpers.


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """One client frame, masked unless told otherwise."""
    return encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=MASK if masked else None)


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(Opcode.CLOSE, struct.pack("!H", code) + reason)


def assert_echoes(sock: socket.socket, text: str = "still echoing") -> None:
    sock.sendall(frame(Opcode.TEXT, text.encode()))
    assert read_frame(sock) == (Opcode.TEXT, text.encode())


def assert_serving(port: int) -> None:
    """A new, well-behaved client is upgraded and gets its message back."""
    with open_websocket(port) as sock:
        assert_echoes(sock, "a new client")


def assert_server_closes_tcp(sock: socket.socket, timeout_s: float = REPLY_TIMEOUT_S) -> None:
    """Nothing follows the server's close frame but its FIN: a clean end of stream, no reset."""
    sock.settimeout(timeout_s)
    assert sock.recv(65536) == b""


def read_until_dropped(sock: socket.socket, timeout_s: float) -> None:
    """Read and discard until the server closes (FIN or reset); fail if it does not in time."""
    deadline = time.monotonic() + timeout_s
    for _ in range(10_000):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return
        except ConnectionResetError:
            return
        except TimeoutError:
            break
    raise AssertionError(f"the server did not drop the connection within {timeout_s} s")


def is_open(sock: socket.socket) -> bool:
    """Whether the peer has neither closed nor reset the connection, asked without waiting."""
    timeout_s = sock.gettimeout()
    sock.settimeout(0.0)  # with a timeout, Python would first wait that long for readability
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.settimeout(timeout_s)


def read_response_head(sock: socket.socket) -> bytes:
    """The HTTP response head, read a byte at a time so that no frame bytes are eaten with it."""
    head = b""
    for _ in range(MAX_RESPONSE_HEAD_BYTES):
        byte = sock.recv(1)
        if not byte:
            raise AssertionError(f"closed during handshake: {head!r}")
        head += byte
        if head.endswith(b"\r\n\r\n"):
            return head
    raise AssertionError(f"no end of the response head in {MAX_RESPONSE_HEAD_BYTES} bytes")


# 1. The opening handshake: each bad request gets its exact status and headers.


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, list[str]]  # lower-cased name -> every value, in order
    body: bytes


def parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return Reply(status_of(status_line.encode()), headers, body)


RFC_SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3


def handshake_request(
    port: int,
    request_line: str = "GET / HTTP/1.1",
    *,
    without: tuple[str, ...] = (),
    replace: tuple[tuple[str, str], ...] = (),
    extra_lines: tuple[str, ...] = (),
) -> bytes:
    """A valid upgrade request, then changed: another request line, headers left out or replaced,
    lines added at the end."""
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_SAMPLE_KEY,
        "Sec-WebSocket-Version": "13",
    }
    headers.update(replace)
    lines = [request_line]
    lines += [f"{name}: {value}" for name, value in headers.items() if name not in without]
    lines += extra_lines
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


BuildRequest = Callable[[int], bytes]
WEBSOCKET_HEADERS = ("Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version")
SHORT_KEY = base64.b64encode(b"fifteen bytes!!").decode()  # 15 bytes, not 16
NON_BASE64_KEY = "%%%%%%%%%%%%%%%%%%%%%%=="  # 24 characters, like a real key, but not base64
OVER_HEAD_LIMIT = (f"X-Padding: {'a' * defaults.MAX_REQUEST_HEAD_BYTES}",)
# Header lines added to the upgrade request's own to reach exactly this many.
FILLER_LINES_TO_101 = tuple(
    f"X-Filler-{n}: {n}" for n in range(defaults.MAX_HEADER_LINES + 1 - UPGRADE_HEADER_LINES)
)

BAD_HANDSHAKES = [
    pytest.param(
        lambda port: handshake_request(port, "POST / HTTP/1.1"),
        405,
        {"allow": "GET"},
        id="POST",
    ),
    pytest.param(
        lambda port: handshake_request(port, without=WEBSOCKET_HEADERS),
        426,
        {"upgrade": "websocket", "sec-websocket-version": "13"},
        id="plain-GET",
    ),
    pytest.param(
        lambda port: handshake_request(port, replace=(("Connection", "keep-alive"),)),
        400,
        {},
        id="Connection-without-upgrade",
    ),
    pytest.param(
        lambda port: handshake_request(port, replace=(("Sec-WebSocket-Version", "8"),)),
        426,
        {"sec-websocket-version": "13"},
        id="version-8",
    ),
    pytest.param(
        lambda port: handshake_request(port, without=("Sec-WebSocket-Key",)),
        400,
        {},
        id="missing-key",
    ),
    pytest.param(
        lambda port: handshake_request(port, replace=(("Sec-WebSocket-Key", SHORT_KEY),)),
        400,
        {},
        id="short-key",
    ),
    pytest.param(
        lambda port: handshake_request(port, replace=(("Sec-WebSocket-Key", NON_BASE64_KEY),)),
        400,
        {},
        id="non-base64-key",
    ),
    pytest.param(
        lambda port: handshake_request(port, extra_lines=OVER_HEAD_LIMIT),
        431,
        {},
        id="head-over-8-KiB",
    ),
    pytest.param(
        lambda port: handshake_request(port, extra_lines=FILLER_LINES_TO_101),
        431,
        {},
        id="101-header-lines",
    ),
    pytest.param(
        lambda port: handshake_request(port, "HELLO, IS IT ME YOU'RE LOOKING FOR?"),
        400,
        {},
        id="garbage-request-line",
    ),
    pytest.param(
        lambda port: handshake_request(port, "GET / HTTP/1.0"),
        400,
        {},
        id="HTTP/1.0",
    ),
]


@pytest.mark.parametrize(("build", "status", "headers"), BAD_HANDSHAKES)
def test_a_bad_handshake_gets_its_status_and_headers(
    ws_server: ServerProcess, build: BuildRequest, status: int, headers: dict[str, str]
) -> None:
    reply = parse_reply(http_exchange(ws_server.port, build(ws_server.port)))
    assert reply.status == status, reply
    for name, value in headers.items():
        assert reply.headers.get(name) == [value], reply


@pytest.mark.parametrize(("build", "status", "headers"), BAD_HANDSHAKES)
def test_the_server_still_serves_after_refusing_a_bad_handshake(
    ws_server: ServerProcess, build: BuildRequest, status: int, headers: dict[str, str]
) -> None:
    http_exchange(ws_server.port, build(ws_server.port))
    assert_serving(ws_server.port)


def test_a_request_with_100_header_lines_is_upgraded(ws_server: ServerProcess) -> None:
    fillers = FILLER_LINES_TO_101[:-1]
    request = handshake_request(ws_server.port, extra_lines=fillers)
    with socket.create_connection(("127.0.0.1", ws_server.port), REPLY_TIMEOUT_S) as sock:
        sock.sendall(request)
        assert status_of(read_response_head(sock)) == 101


# 2. Origin: pages from elsewhere are refused unless allowed.


@pytest.mark.parametrize(
    ("allow", "origin", "status"),
    [
        pytest.param((), None, 101, id="no-Origin"),
        pytest.param((), "http://127.0.0.1:8000", 101, id="same-host-other-port"),
        pytest.param((), "http://evil.example", 403, id="foreign"),
        pytest.param(("http://evil.example",), "http://evil.example", 101, id="foreign-allowed"),
        pytest.param(("*",), "http://evil.example", 101, id="any-allowed"),
    ],
)
def test_origin_decides_the_upgrade(
    start_server: StartServer, allow: tuple[str, ...], origin: str | None, status: int
) -> None:
    options = [arg for entry in allow for arg in ("--allow-origin", entry)]
    server = start_server("ws", "--port", "0", *options)
    extra = "" if origin is None else f"Origin: {origin}\r\n"
    with socket.create_connection(("127.0.0.1", server.port), REPLY_TIMEOUT_S) as sock:
        sock.sendall(upgrade_request(server.port, extra=extra))
        head = recv_until(sock, b"\r\n\r\n", REPLY_TIMEOUT_S)
    assert status_of(head) == status, head


def test_a_browser_page_on_another_port_of_localhost_may_connect(ws_server: ServerProcess) -> None:
    url = f"ws://localhost:{ws_server.port}/"
    with connect(url, origin=Origin("http://localhost:1234"), open_timeout=REPLY_TIMEOUT_S) as ws:
        ws.send("from the test page")
        assert ws.recv(timeout=REPLY_TIMEOUT_S) == "from the test page"


def test_a_browser_page_from_a_foreign_site_is_refused(ws_server: ServerProcess) -> None:
    url = f"ws://localhost:{ws_server.port}/"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=Origin("http://evil.example"), open_timeout=REPLY_TIMEOUT_S)
    assert refused.value.response.status_code == 403


# 3. Frames: each bad frame gets its exact close code, then the server closes TCP.

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
RSV1, RSV2, RSV3 = 0b100, 0b010, 0b001

BAD_FRAMES = [
    pytest.param(frame(Opcode.TEXT, b"hi", masked=False), PROTOCOL_ERROR, id="unmasked"),
    pytest.param(frame(Opcode.TEXT, b"hi", rsv=RSV1), PROTOCOL_ERROR, id="RSV1"),
    pytest.param(frame(Opcode.TEXT, b"hi", rsv=RSV2), PROTOCOL_ERROR, id="RSV2"),
    pytest.param(frame(Opcode.TEXT, b"hi", rsv=RSV3), PROTOCOL_ERROR, id="RSV3"),
    pytest.param(frame(0x3, b"x"), PROTOCOL_ERROR, id="opcode-0x3"),
    pytest.param(frame(0x7, b"x"), PROTOCOL_ERROR, id="opcode-0x7"),
    pytest.param(frame(0xB, b"x"), PROTOCOL_ERROR, id="opcode-0xB"),
    pytest.param(frame(0xF, b"x"), PROTOCOL_ERROR, id="opcode-0xF"),
    pytest.param(frame(Opcode.PING, b"p" * 126), PROTOCOL_ERROR, id="ping-of-126-bytes"),
    pytest.param(frame(Opcode.PING, b"p", fin=False), PROTOCOL_ERROR, id="fragmented-ping"),
    pytest.param(
        frame(Opcode.CONTINUATION, b"orphan"), PROTOCOL_ERROR, id="continuation-without-start"
    ),
    pytest.param(
        frame(Opcode.TEXT, b"first", fin=False) + frame(Opcode.TEXT, b"second"),
        PROTOCOL_ERROR,
        id="text-inside-fragmented-message",
    ),
    pytest.param(frame(Opcode.TEXT, b"caf\xff"), INVALID_DATA, id="invalid-UTF-8"),
    pytest.param(
        # "\xce" opens a two-byte character; "(" cannot continue it.
        frame(Opcode.TEXT, b"caf\xce", fin=False) + frame(Opcode.CONTINUATION, b"("),
        INVALID_DATA,
        id="invalid-UTF-8-across-fragments",
    ),
    pytest.param(
        frame(Opcode.TEXT, b"caf", fin=False) + frame(Opcode.CONTINUATION, b"\xc3"),
        INVALID_DATA,
        id="text-ending-inside-a-character",
    ),
    pytest.param(close_frame(1000, b"bye\xff"), INVALID_DATA, id="close-reason-invalid-UTF-8"),
    pytest.param(frame(Opcode.CLOSE, b"\x03"), PROTOCOL_ERROR, id="close-payload-of-1-byte"),
]


@pytest.mark.parametrize(("frames", "code"), BAD_FRAMES)
def test_a_bad_frame_gets_its_close_code(
    ws_server: ServerProcess, frames: bytes, code: int
) -> None:
    with open_websocket(ws_server.port) as sock:
        sock.sendall(frames)
        assert read_close_code(sock) == code


@pytest.mark.parametrize(("frames", "code"), BAD_FRAMES)
def test_the_server_closes_tcp_after_failing_a_bad_frame(
    ws_server: ServerProcess, frames: bytes, code: int
) -> None:
    with open_websocket(ws_server.port) as sock:
        sock.sendall(frames)
        read_close_code(sock)
        assert_server_closes_tcp(sock)


# 1012-1014 were registered after RFC 6455; whichever way the codec rules, the server must follow.
REGISTERED_LATER = (1012, 1013, 1014)
VALID_CLOSE_CODES = [1000, 1001, 3000, 3001, 3999, 4001, 4998, 4999] + [
    code for code in REGISTERED_LATER if is_valid_close_code(code)
]
INVALID_CLOSE_CODES = [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] + [
    code for code in REGISTERED_LATER if not is_valid_close_code(code)
]


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_an_invalid_close_code_is_a_protocol_error(ws_server: ServerProcess, code: int) -> None:
    with open_websocket(ws_server.port) as sock:
        sock.sendall(close_frame(code))
        assert read_close_code(sock) == PROTOCOL_ERROR
        assert_server_closes_tcp(sock)


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_a_valid_close_code_is_echoed(ws_server: ServerProcess, code: int) -> None:
    with open_websocket(ws_server.port) as sock:
        sock.sendall(close_frame(code, b"bye"))
        assert read_close_code(sock) == code
        assert_server_closes_tcp(sock)


def test_an_empty_close_is_answered_with_an_empty_close(ws_server: ServerProcess) -> None:
    with open_websocket(ws_server.port) as sock:
        sock.sendall(frame(Opcode.CLOSE))
        assert read_frame(sock) == (Opcode.CLOSE, b"")
        assert_server_closes_tcp(sock)


SMALL_MESSAGE_LIMIT_BYTES = 1000


@pytest.fixture
def small_message_server(start_server: StartServer) -> ServerProcess:
    return start_server("ws", "--port", "0", "--max-message-size", str(SMALL_MESSAGE_LIMIT_BYTES))


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(frame(Opcode.BINARY, bytes(SMALL_MESSAGE_LIMIT_BYTES + 1)), id="one-frame"),
        pytest.param(
            frame(Opcode.BINARY, bytes(600), fin=False) + frame(Opcode.CONTINUATION, bytes(600)),
            id="600+600-fragments",
        ),
    ],
)
def test_a_message_over_the_size_limit_is_closed_with_1009(
    small_message_server: ServerProcess, frames: bytes
) -> None:
    with open_websocket(small_message_server.port) as sock:
        sock.sendall(frames)
        assert read_close_code(sock) == MESSAGE_TOO_BIG
        assert_server_closes_tcp(sock)


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(frame(Opcode.BINARY, bytes(SMALL_MESSAGE_LIMIT_BYTES)), id="one-frame"),
        pytest.param(
            frame(Opcode.BINARY, bytes(500), fin=False) + frame(Opcode.CONTINUATION, bytes(500)),
            id="500+500-fragments",
        ),
    ],
)
def test_a_message_of_exactly_the_size_limit_is_echoed(
    small_message_server: ServerProcess, frames: bytes
) -> None:
    with open_websocket(small_message_server.port) as sock:
        sock.sendall(frames)
        assert read_frame(sock) == (Opcode.BINARY, bytes(SMALL_MESSAGE_LIMIT_BYTES))


def test_a_header_announcing_2_to_the_62_bytes_is_closed_with_1009_at_once(
    ws_server: ServerProcess,
) -> None:
    # The header alone, masked: no payload follows, so only a check of the header can answer.
    header = bytes([0x80 | Opcode.BINARY, 0x80 | 127]) + (2**62).to_bytes(8, "big") + MASK
    with open_websocket(ws_server.port) as sock:
        sock.sendall(header)
        assert read_close_code(sock) == MESSAGE_TOO_BIG
        assert_server_closes_tcp(sock)


# 4. Keepalive: the server pings; a client that answers stays, one that does not is closed.

PING_INTERVAL_S = 0.3
PING_TIMEOUT_S = 0.5
KEEPALIVE_ROUNDS = 5  # 1.5 s: three times the ping timeout


@pytest.fixture
def pinging_server(start_server: StartServer) -> ServerProcess:
    return start_server(
        "ws",
        "--port",
        "0",
        "--ping-interval",
        str(PING_INTERVAL_S),
        "--ping-timeout",
        str(PING_TIMEOUT_S),
    )


def test_the_server_pings_an_idle_client(pinging_server: ServerProcess) -> None:
    with open_websocket(pinging_server.port) as sock:
        sock.settimeout(PING_INTERVAL_S + SLACK_S)
        opcode, payload = read_frame(sock)
        assert opcode == Opcode.PING
        assert len(payload) <= 125


def test_a_client_that_answers_pings_stays_open(pinging_server: ServerProcess) -> None:
    with open_websocket(pinging_server.port) as sock:
        sock.settimeout(PING_INTERVAL_S + SLACK_S)
        for _ in range(KEEPALIVE_ROUNDS):
            opcode, payload = read_frame(sock)
            assert opcode == Opcode.PING
            sock.sendall(frame(Opcode.PONG, payload))
        assert_echoes(sock)


def test_a_client_that_never_answers_pings_is_closed_with_1011(
    pinging_server: ServerProcess,
) -> None:
    with open_websocket(pinging_server.port) as sock:
        sock.settimeout(PING_INTERVAL_S + PING_TIMEOUT_S + SLACK_S)
        assert read_close_code(sock) == 1011
        assert_server_closes_tcp(sock)


# 5. The closing handshake is bounded: a peer that never answers is let go.


def test_a_peer_that_never_answers_the_close_is_released_after_the_close_timeout(
    start_server: StartServer,
) -> None:
    close_timeout_s = 0.5
    server = start_server("ws", "--port", "0", "--close-timeout", str(close_timeout_s))
    with open_websocket(server.port) as sock:
        inode = server_side_inode(server.port, sock)
        assert holds_socket(server.pid, inode)
        sock.sendall(frame(Opcode.TEXT, b"unmasked", masked=False))
        assert read_close_code(sock) == PROTOCOL_ERROR
        # Neither a close frame nor a FIN from us: only the server's timer can end this.
        wait_until(
            lambda: not holds_socket(server.pid, inode),
            close_timeout_s + SLACK_S,
            "the server released the descriptor of a peer that never answered its close",
        )


def test_a_peer_that_answers_the_close_gets_a_clean_tcp_close(start_server: StartServer) -> None:
    # A close timeout far above the wait below: only the peer's answer can release it in time.
    close_timeout_s = 60.0
    server = start_server("ws", "--port", "0", "--close-timeout", str(close_timeout_s))
    with open_websocket(server.port) as sock:
        inode = server_side_inode(server.port, sock)
        assert holds_socket(server.pid, inode)
        sock.sendall(frame(Opcode.TEXT, b"unmasked", masked=False))
        assert read_close_code(sock) == PROTOCOL_ERROR
        sock.sendall(close_frame(PROTOCOL_ERROR))
        assert_server_closes_tcp(sock)
    wait_until(
        lambda: not holds_socket(server.pid, inode),
        SLACK_S,
        "the server released the descriptor once the peer answered and closed",
    )


# 6. A handler that raises costs its own client, nobody else.


@pytest.fixture
def faulty_server() -> Iterator[ServerProcess]:
    server = start(["--port", "0"], command=FAULTY_SERVER)
    yield server
    server.stop()


def explode(sock: socket.socket) -> int:
    """Make the faulty handler raise; return the close code the client got."""
    sock.sendall(frame(Opcode.TEXT, b"boom"))
    return read_close_code(sock)


def test_a_handler_exception_closes_its_client_with_1011(faulty_server: ServerProcess) -> None:
    with open_websocket(faulty_server.port) as sock:
        assert explode(sock) == 1011
        assert_server_closes_tcp(sock)


def test_a_handler_exception_is_logged_with_its_traceback(faulty_server: ServerProcess) -> None:
    with open_websocket(faulty_server.port) as sock:
        explode(sock)
    faulty_server.wait_for_output(r"Traceback \(most recent call last\)")
    faulty_server.wait_for_output(f"RuntimeError: {BOOM_ERROR}")


def test_a_handler_exception_spares_the_other_clients(faulty_server: ServerProcess) -> None:
    with open_websocket(faulty_server.port) as victim, open_websocket(faulty_server.port) as other:
        assert_echoes(other, "before")
        explode(victim)
        assert_echoes(other, "after")


def test_new_clients_are_served_after_a_handler_exception(faulty_server: ServerProcess) -> None:
    with open_websocket(faulty_server.port) as sock:
        explode(sock)
    assert_serving(faulty_server.port)


def test_a_message_that_came_with_the_handshake_is_handled_under_the_same_guard(
    faulty_server: ServerProcess,
) -> None:
    # The "boom" frame arrives in the same packet as the upgrade request.
    answer = http_exchange(
        faulty_server.port, upgrade_request(faulty_server.port) + frame(Opcode.TEXT, b"boom")
    )
    head, _, frames = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert frames[0] == 0x80 | Opcode.CLOSE
    assert int.from_bytes(frames[2:4], "big") == 1011
    assert_serving(faulty_server.port)


def test_a_failing_timer_in_the_loop_is_logged_and_the_server_goes_on(
    faulty_server: ServerProcess,
) -> None:
    with open_websocket(faulty_server.port, "/timer-bug") as sock:
        faulty_server.wait_for_output(f"RuntimeError: {TIMER_ERROR}")
        assert_echoes(sock, "the timer's client is still served")
    assert faulty_server.proc.poll() is None
    assert_serving(faulty_server.port)


# 7. Graceful stop: queued echoes are delivered, then 1001, then exit 0.

# More than the kernel's send buffer can grow to (net.ipv4.tcp_wmem, 4 MiB by default), so that
# echoes wait in the server process itself when the stop signal comes, not only in the kernel.
QUEUED_MESSAGES = 32
QUEUED_MESSAGE_BYTES = 256 * 1024
# A small receive window keeps the echoes on the server's side of the connection.
CLIENT_RCVBUF_BYTES = 16 * 1024
STOP_CLOSE_TIMEOUT_S = 5.0
STOP_SIGNALS = [
    pytest.param(signal.SIGTERM, id="SIGTERM"),
    pytest.param(signal.SIGINT, id="SIGINT"),
]


def open_websocket_with_small_window(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF_BYTES)
        sock.settimeout(REPLY_TIMEOUT_S)
        sock.connect(("127.0.0.1", port))
        sock.sendall(upgrade_request(port))
        assert status_of(read_response_head(sock)) == 101
    except BaseException:
        sock.close()
        raise
    return sock


def tcp_queues(local_port: int, remote_port: int) -> tuple[int, int]:
    """(bytes in the send queue, bytes in the receive queue) of one IPv4 TCP socket's end."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        # "sl local_address rem_address st tx_queue:rx_queue ...", addresses as HEXIP:HEXPORT.
        fields = line.split()
        ports = (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16))
        if ports == (local_port, remote_port):
            send_queue, receive_queue = fields[4].split(":")
            return int(send_queue, 16), int(receive_queue, 16)
    raise AssertionError(f"no TCP socket {local_port} -> {remote_port} in /proc/net/tcp")


def queue_unread_echoes(server: ServerProcess, sock: socket.socket) -> list[bytes]:
    """Send messages without reading their echoes; return once the server has read them all
    and its end holds echoes the client has not taken."""
    messages = [os.urandom(QUEUED_MESSAGE_BYTES) for _ in range(QUEUED_MESSAGES)]
    for message in messages:
        sock.sendall(frame(Opcode.BINARY, message))
    echo_bytes = sum(len(frame_header(Opcode.BINARY, len(m))) + len(m) for m in messages)
    client_port = sock.getsockname()[1]

    def server_read_all_and_holds_echoes() -> bool:
        client_unsent, client_unread = tcp_queues(client_port, server.port)
        server_unsent, server_unread = tcp_queues(server.port, client_port)
        held_by_server_process = echo_bytes - client_unread - server_unsent
        return client_unsent == 0 and server_unread == 0 and held_by_server_process > 0

    wait_until(
        server_read_all_and_holds_echoes,
        SLACK_S,
        "the server read every message and holds echoes its kernel has not taken",
    )
    return messages


@pytest.fixture
def stoppable_server(start_server: StartServer) -> ServerProcess:
    # A write limit above what is queued, so that the server never stops reading us.
    return start_server(
        "ws",
        "--port",
        "0",
        "--close-timeout",
        str(STOP_CLOSE_TIMEOUT_S),
        "--write-limit",
        "32MiB",
    )


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_a_stop_signal_delivers_every_queued_echo_then_1001(
    stoppable_server: ServerProcess, signum: int
) -> None:
    with open_websocket_with_small_window(stoppable_server.port) as sock:
        messages = queue_unread_echoes(stoppable_server, sock)
        stoppable_server.send_signal(signum)
        for message in messages:
            assert read_frame(sock) == (Opcode.BINARY, message)
        assert read_close_code(sock) == 1001


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_a_stop_signal_exits_0_within_the_close_timeout_without_a_traceback(
    stoppable_server: ServerProcess, signum: int
) -> None:
    with open_websocket_with_small_window(stoppable_server.port) as sock:
        queue_unread_echoes(stoppable_server, sock)
        stoppable_server.send_signal(signum)
        signalled_s = time.monotonic()
        assert read_close_code(sock) == 1001
        sock.sendall(close_frame(1001))
        assert_server_closes_tcp(sock)
    assert stoppable_server.proc.wait(STOP_CLOSE_TIMEOUT_S + SLACK_S) == 0
    assert time.monotonic() - signalled_s < STOP_CLOSE_TIMEOUT_S
    assert "Traceback" not in stoppable_server.output()


def test_a_stop_is_not_held_up_by_a_client_that_never_answers(start_server: StartServer) -> None:
    close_timeout_s = 1.0
    server = start_server("ws", "--port", "0", "--close-timeout", str(close_timeout_s))
    with open_websocket(server.port) as sock:
        server.send_signal(signal.SIGTERM)
        assert read_close_code(sock) == 1001
        # We keep the socket open and silent; the server must give up on us and exit.
        assert server.proc.wait(close_timeout_s + SLACK_S) == 0


# 8. TLS: wss:// works, and peers that never start or botch the TLS handshake cost nothing.


@dataclass(frozen=True)
class TlsFiles:
    certfile: Path
    keyfile: Path


# A self-signed certificate for both names a client may use; one day is plenty for a test run.
SELF_SIGNED_CERTIFICATE = shlex.split(
    "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost"
    " -addext subjectAltName=IP:127.0.0.1,DNS:localhost -days 1"
)
OPENSSL_TIMEOUT_S = 60.0  # generating an RSA key can take seconds on a Raspberry Pi


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    files = TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem")
    subprocess.run(
        [*SELF_SIGNED_CERTIFICATE, "-keyout", str(files.keyfile), "-out", str(files.certfile)],
        check=True,
        capture_output=True,
        timeout=OPENSSL_TIMEOUT_S,
    )
    return files


StartTlsServer = Callable[..., ServerProcess]


@pytest.fixture
def start_tls_server(start_server: StartServer, tls_files: TlsFiles) -> StartTlsServer:
    def _start(*args: str) -> ServerProcess:
        certificate = ("--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile))
        return start_server("ws", "--port", "0", *certificate, *args)

    return _start


@contextlib.contextmanager
def wss_client(server: ServerProcess, tls_files: TlsFiles) -> Iterator[ClientConnection]:
    context = ssl.create_default_context(cafile=str(tls_files.certfile))
    with connect(server.url(), ssl=context, open_timeout=REPLY_TIMEOUT_S) as ws:
        yield ws


def assert_wss_echoes(ws: ClientConnection, text: str = "over TLS") -> None:
    ws.send(text)
    assert ws.recv(timeout=REPLY_TIMEOUT_S) == text


def test_a_tls_server_announces_wss(start_tls_server: StartTlsServer) -> None:
    server = start_tls_server()
    assert server.url().startswith("wss://")


def test_a_wss_client_trusting_the_certificate_echoes(
    start_tls_server: StartTlsServer, tls_files: TlsFiles
) -> None:
    server = start_tls_server()
    with wss_client(server, tls_files) as ws:
        assert_wss_echoes(ws)


@pytest.mark.parametrize("size", [12_000, 900_000])
def test_a_notify_body_larger_than_one_tls_read_is_answered_over_https(
    start_tls_server: StartTlsServer, tls_files: TlsFiles, size: int
) -> None:
    # TLS records are up to 16 KiB: the part of one that a read did not take sits in the SSL
    # object, where the poller cannot see it. The server must read it anyway.
    server = start_tls_server()
    context = ssl.create_default_context(cafile=str(tls_files.certfile))
    body = ("x" * (size - 1) + "!").encode()
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=context, timeout=REPLY_TIMEOUT_S
    )
    try:
        connection.request("POST", "/notify", body=body)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        assert json.loads(response.read()) == {"delivered": 0}
    finally:
        connection.close()


def test_a_chat_message_larger_than_one_tls_read_is_delivered_over_wss(
    start_tls_server: StartTlsServer, tls_files: TlsFiles
) -> None:
    server = start_tls_server()
    text = "y" * 900_000
    with wss_client(server, tls_files) as ws:
        ws.send(text)
        assert ws.recv(timeout=REPLY_TIMEOUT_S) == text


def test_a_silent_tcp_client_does_not_stall_a_wss_client(
    start_tls_server: StartTlsServer, tls_files: TlsFiles
) -> None:
    server = start_tls_server("--handshake-timeout", "30")
    with socket.create_connection(("127.0.0.1", server.port), REPLY_TIMEOUT_S) as silent:
        with wss_client(server, tls_files) as ws:
            for n in range(100):
                assert_wss_echoes(ws, f"message {n}")
        assert is_open(silent), "the silent client should still be waiting for its handshake"


def test_a_silent_tcp_client_is_closed_after_the_handshake_timeout(
    start_tls_server: StartTlsServer,
) -> None:
    handshake_timeout_s = 1.0
    server = start_tls_server("--handshake-timeout", str(handshake_timeout_s))
    with socket.create_connection(("127.0.0.1", server.port), REPLY_TIMEOUT_S) as silent:
        connected_s = time.monotonic()
        read_until_dropped(silent, handshake_timeout_s + SLACK_S)
        assert time.monotonic() - connected_s >= handshake_timeout_s * 0.9


def test_a_client_sending_garbage_instead_of_a_client_hello_is_dropped(
    start_tls_server: StartTlsServer,
) -> None:
    # A long handshake timeout: the drop must come from the garbage, not from the timer.
    server = start_tls_server("--handshake-timeout", "60")
    with socket.create_connection(("127.0.0.1", server.port), REPLY_TIMEOUT_S) as sock:
        sock.sendall(upgrade_request(server.port))  # plain HTTP to a TLS port
        read_until_dropped(sock, SLACK_S)


def test_a_tls_server_goes_on_after_a_client_sent_garbage(
    start_tls_server: StartTlsServer, tls_files: TlsFiles
) -> None:
    server = start_tls_server()
    with socket.create_connection(("127.0.0.1", server.port), REPLY_TIMEOUT_S) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05garbage, not a ClientHello" * 4)
        read_until_dropped(sock, SLACK_S)
    with wss_client(server, tls_files) as ws:
        assert_wss_echoes(ws)


# 9. The listen backlog absorbs a burst of connections.


def test_the_listen_backlog_is_at_least_1024(ws_server: ServerProcess) -> None:
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    if somaxconn < defaults.LISTEN_BACKLOG:
        pytest.skip(f"net.core.somaxconn is {somaxconn}: the kernel caps any backlog to it")
    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{ws_server.port}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=REPLY_TIMEOUT_S,
    ).stdout
    # For a listening socket, ss shows the backlog as Send-Q (the third column).
    backlogs = [int(line.split()[2]) for line in listing.splitlines() if line.strip()]
    assert backlogs, listing
    assert min(backlogs) >= defaults.LISTEN_BACKLOG, listing
