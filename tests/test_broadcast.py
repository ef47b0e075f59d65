"""Broadcast under load: a thousand /chat subscribers, and one subscriber that never reads.

The clients are raw sockets driven by one selector in this process, so a test can hold a
thousand subscribers without threads and can read or not read exactly as it pleases. Frames from
the server are parsed here, independently of echo_server's own codec (which is the server side).
What is checked: every subscriber gets every message; one that falls too far behind is closed
with 1008 and logged; the others still get everything. Loopback only; every loop is bounded in
count and time.

The fan-out rules themselves (the route, order, no duplicates) are in tests/test_push.py.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

import pytest
from conftest import StartServer
from support import http_exchange, status_of, upgrade_request
from websockets.sync.client import connect

from echo_server.protocol.frames import Opcode, encode_frame

KIB = 1024
SWARM_TIMEOUT_S = 60.0
TIMEOUT_S = 10.0
MASK = b"\x5a\x17\xc3\x09"
# The slow-subscriber test: 12.5 MiB through /chat, far more than the kernel's buffers and the
# write limit can hold for a subscriber that does not read.
MESSAGE_COUNT = 200
MESSAGE_BYTES = 64 * KIB
# How many messages the sender may be ahead of the slowest reader: 128 KiB, under the limit.
WINDOW_MESSAGES = 2
# The non-reader's receive buffer: small, so that the server's queue for it fills quickly.
SMALL_RCVBUF_BYTES = 4 * KIB


@pytest.fixture(autouse=True)
def many_open_files() -> None:
    """This test process holds a thousand sockets: raise its soft descriptor limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Server frames (unmasked, as RFC 6455 requires of a server), parsed from a byte buffer.


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True


def parse_frames(buffer: bytearray) -> list[Frame]:
    """Take every complete frame off the front of `buffer`; leave a partial one there."""
    frames = []
    while len(buffer) >= 2:
        first, second = buffer[0], buffer[1]
        assert not second & 0x80, "a server frame must not be masked"
        assert not first & 0x70, "no extension was negotiated: the RSV bits must be 0"
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                break
            (length,), offset = struct.unpack_from("!H", buffer, 2), 4
        elif length == 127:
            if len(buffer) < 10:
                break
            (length,), offset = struct.unpack_from("!Q", buffer, 2), 10
        if len(buffer) < offset + length:
            break
        frames.append(
            Frame(first & 0x0F, bytes(buffer[offset : offset + length]), bool(first & 0x80))
        )
        del buffer[: offset + length]
    return frames


def close_code_and_reason(frame: Frame) -> tuple[int, str]:
    assert frame.opcode == Opcode.CLOSE
    if not frame.payload:
        return 1005, ""
    return struct.unpack("!H", frame.payload[:2])[0], frame.payload[2:].decode()


# Raw subscribers.


@dataclass(eq=False)
class Subscriber:
    """One raw client socket and what it has read, parsed into frames once upgraded."""

    sock: socket.socket
    head: bytes | None = None  # the server's response head, once complete
    received: bytearray = field(default_factory=bytearray)
    frames: list[Frame] = field(default_factory=list)
    outgoing: bytearray = field(default_factory=bytearray)
    eof: bool = False

    def take(self, chunk: bytes) -> None:
        self.received += chunk
        if self.head is None:
            head, found, rest = bytes(self.received).partition(b"\r\n\r\n")
            if not found:
                return
            self.head = head + found
            self.received[:] = rest
        self.frames += parse_frames(self.received)


class Swarm:
    """Many raw subscribers driven by one selector: upgrade in bulk, then read and write."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.subscribers: list[Subscriber] = []
        self.selector = selectors.DefaultSelector()

    def close(self) -> None:
        self.selector.close()
        for subscriber in self.subscribers:
            subscriber.sock.close()

    def subscribe(self, count: int, path: str = "/chat", batch: int = 250) -> list[Subscriber]:
        """Open `count` connections and upgrade each on `path`, `batch` at a time."""
        added: list[Subscriber] = []
        for start in range(0, count, batch):
            opened = []
            for _ in range(min(batch, count - start)):
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT_S)
                sock.setblocking(False)
                subscriber = Subscriber(sock, outgoing=bytearray(upgrade_request(self.port, path)))
                self.subscribers.append(subscriber)
                opened.append(subscriber)
            self.run(opened, lambda s: s.head is not None or s.eof)
            for subscriber in opened:
                assert subscriber.head is not None, "closed during the handshake"
                assert subscriber.head.startswith(b"HTTP/1.1 101 "), subscriber.head
            added += opened
        return added

    def run(
        self,
        subscribers: list[Subscriber],
        done: Callable[[Subscriber], bool],
        timeout_s: float = SWARM_TIMEOUT_S,
    ) -> None:
        """Read, and write what is queued, on `subscribers` until `done` holds for each."""
        waiting = {s for s in subscribers if not done(s)}
        registered: dict[Subscriber, int] = {}
        deadline = time.monotonic() + timeout_s
        try:
            for subscriber in subscribers:
                self._update(subscriber, registered)
            while waiting or any(s.outgoing for s in subscribers):
                remaining_s = deadline - time.monotonic()
                assert remaining_s > 0, f"{len(waiting)} subscribers not done in {timeout_s} s"
                for key, mask in self.selector.select(min(1.0, remaining_s)):
                    subscriber = cast(Subscriber, key.data)
                    if mask & selectors.EVENT_WRITE:
                        self._write(subscriber)
                    if mask & selectors.EVENT_READ:
                        self._read(subscriber)
                    self._update(subscriber, registered)
                    if done(subscriber):
                        waiting.discard(subscriber)
        finally:
            for subscriber in registered:
                self.selector.unregister(subscriber.sock)

    def _update(self, subscriber: Subscriber, registered: dict[Subscriber, int]) -> None:
        events = (0 if subscriber.eof else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if subscriber.outgoing else 0
        )
        current = registered.get(subscriber, 0)
        if events == current:
            return
        if not events:
            self.selector.unregister(subscriber.sock)
            del registered[subscriber]
        elif not current:
            self.selector.register(subscriber.sock, events, subscriber)
            registered[subscriber] = events
        else:
            self.selector.modify(subscriber.sock, events, subscriber)
            registered[subscriber] = events

    @staticmethod
    def _read(subscriber: Subscriber) -> None:
        try:
            chunk = subscriber.sock.recv(256 * KIB)
        except BlockingIOError:
            return
        except ConnectionResetError:
            chunk = b""
        subscriber.eof = not chunk
        subscriber.take(chunk)

    @staticmethod
    def _write(subscriber: Subscriber) -> None:
        with contextlib.suppress(BlockingIOError):
            sent = subscriber.sock.send(subscriber.outgoing)
            del subscriber.outgoing[:sent]


@pytest.fixture
def swarms() -> Iterator[list[Swarm]]:
    """Swarms a test made: closed at the end, pass or fail."""
    made: list[Swarm] = []
    yield made
    for swarm in made:
        swarm.close()


def open_non_reader(port: int) -> socket.socket:
    """A /chat subscriber with a small receive buffer, upgraded, that the test will not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Before connect: the receive window and its scale are agreed in the TCP handshake.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF_BYTES)
        sock.settimeout(TIMEOUT_S)
        sock.connect(("127.0.0.1", port))
        sock.sendall(upgrade_request(port, "/chat"))
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 4 * KIB:
            byte = sock.recv(1)  # one byte at a time: no frame bytes may be eaten with the head
            if not byte:
                break
            head += byte
        assert head.startswith(b"HTTP/1.1 101 "), head
    except BaseException:
        sock.close()
        raise
    return sock


def read_frames_until_close(sock: socket.socket, max_frames: int) -> tuple[list[Frame], Frame]:
    """Read a blocking socket until the server's close frame: (data frames before it, close)."""
    buffer = bytearray()
    frames: list[Frame] = []
    for _ in range(100_000):  # recv calls; each one waits at most the socket's timeout
        for frame in parse_frames(buffer):
            if frame.opcode == Opcode.CLOSE:
                return frames, frame
            frames.append(frame)
            assert len(frames) <= max_frames, "more data frames than were ever sent"
        chunk = sock.recv(256 * KIB)
        if not chunk:
            raise AssertionError(f"EOF without a close frame, after {len(frames)} data frames")
        buffer += chunk
    raise AssertionError("no close frame after 100,000 reads")


def numbered_payloads(count: int, size: int) -> list[bytes]:
    """Distinct payloads of `size` bytes, each starting with its number."""
    return [number.to_bytes(4, "big") + os.urandom(size - 4) for number in range(count)]


def received_at_least(count: int) -> Callable[[Subscriber], bool]:
    return lambda subscriber: len(subscriber.frames) >= count or subscriber.eof


# Many subscribers.


def test_a_thousand_chat_subscribers_all_receive_a_broadcast(
    start_server: StartServer, swarms: list[Swarm]
) -> None:
    server = start_server("ws", "--port", "0", "--ping-interval", "600")
    swarm = Swarm(server.port)
    swarms.append(swarm)
    subscribers = swarm.subscribe(1000)
    texts = [f"to all 1,000: message {number}" for number in range(3)]

    with connect(server.url("/chat"), open_timeout=TIMEOUT_S, proxy=None) as sender:
        for text in texts:
            sender.send(text)
        swarm.run(subscribers, received_at_least(len(texts)))
        assert [sender.recv(TIMEOUT_S) for _ in texts] == texts

    expected = [Frame(Opcode.TEXT, text.encode()) for text in texts]
    missed = [n for n, s in enumerate(subscribers) if s.frames != expected]
    assert not missed, f"{len(missed)} subscribers did not get exactly the 3 messages"


def test_a_notification_reaches_a_thousand_chat_subscribers(
    start_server: StartServer, swarms: list[Swarm]
) -> None:
    server = start_server("ws", "--port", "0", "--ping-interval", "600")
    swarm = Swarm(server.port)
    swarms.append(swarm)
    subscribers = swarm.subscribe(1000)

    reply = http_exchange(
        server.port,
        f"GET /notify?msg=hello%20all HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode(),
    )
    swarm.run(subscribers, received_at_least(1))

    assert status_of(reply) == 200
    assert reply.endswith(b'{\n "delivered": 1000\n}\n')
    assert all(s.frames == [Frame(Opcode.TEXT, b"hello all")] for s in subscribers)


# A subscriber that never reads.


def test_a_subscriber_that_never_reads_is_closed_with_1008_and_the_others_get_everything(
    start_server: StartServer, swarms: list[Swarm]
) -> None:
    server = start_server(
        "ws",
        "--port",
        "0",
        "--write-limit",
        "256KiB",
        # Long enough for the non-reader to read its close frame after the others are done.
        "--close-timeout",
        "120",
        "--ping-interval",  # raw clients here answer no pings; keep pings out of the frames
        "600",
    )
    with open_non_reader(server.port) as non_reader:
        swarm = Swarm(server.port)
        swarms.append(swarm)
        readers = swarm.subscribe(3)
        # The sender is a chat client too: it gets its own messages and must read them as well.
        (sender,) = swarm.subscribe(1)
        everyone = [*readers, sender]
        payloads = numbered_payloads(MESSAGE_COUNT, MESSAGE_BYTES)
        # Paced by the readers, so that they are never behind by the write limit themselves (this
        # one process both sends and reads); the non-reader still falls behind by megabytes.
        for number, payload in enumerate(payloads):
            sender.outgoing += encode_frame(Opcode.BINARY, payload, mask=MASK)
            swarm.run(everyone, received_at_least(number + 1 - WINDOW_MESSAGES))
        swarm.run(everyone, received_at_least(len(payloads)))

        expected = [Frame(Opcode.BINARY, payload) for payload in payloads]
        for number, reader in enumerate([*readers, sender]):
            assert not reader.eof, f"reader {number} was closed"
            assert reader.frames == expected, f"reader {number} did not get every message"

        # Only now does the non-reader read: what the server had queued for it, then the close.
        data, close = read_frames_until_close(non_reader, len(payloads))
        assert close_code_and_reason(close) == (1008, "too slow")
        assert len(data) < len(payloads), "the non-reader got everything: it was never behind"
        assert data == expected[: len(data)], "the non-reader's messages were not a prefix"
        assert non_reader.recv(1) == b"", "the server did not end the connection after its close"

    server.wait_for_output("too slow")
