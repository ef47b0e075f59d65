"""The send buffer over a real socket pair: send at once, queue the rest, flush when writable."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from echo_server.sendbuffer import SendBuffer


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    left.setblocking(False)
    right.settimeout(5)
    # Small kernel buffers, so a few hundred KiB fill them.
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    right.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    with left, right:
        yield left, right


def read_all(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def test_a_write_on_an_empty_buffer_goes_out_at_once(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    out = SendBuffer(left)
    out.write([b"head", b"er", b"payload"])
    assert out.size == 0
    assert not out
    assert read_all(right, 13) == b"headerpayload"


def test_what_the_kernel_does_not_take_is_queued_and_counted(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, _ = pair
    out = SendBuffer(left)
    out.write([b"x" * 1_000_000])
    assert 0 < out.size < 1_000_000


def test_flush_sends_the_queue_in_order_as_the_peer_reads(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    out = SendBuffer(left)
    payload = bytes(range(256)) * 2000
    out.write([payload[:1000], payload[1000:]])
    received = b""
    for _ in range(10_000):
        if not out:
            break
        received += right.recv(65536)
        out.flush()
    received += read_all(right, len(payload) - len(received))
    assert received == payload
    assert out.size == 0


def test_later_writes_wait_behind_queued_bytes(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    out = SendBuffer(left)
    out.write([b"a" * 500_000])
    queued = out.size
    out.write([b"b" * 10])
    assert out.size == queued + 10  # not sent ahead of the queue, even though it is small
    received = b""
    for _ in range(10_000):
        if not out:
            break
        received += right.recv(65536)
        out.flush()
    received += read_all(right, 500_010 - len(received))
    assert received == b"a" * 500_000 + b"b" * 10


def test_empty_parts_are_ignored(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    out = SendBuffer(left)
    out.write([b"", b"ok", b""])
    assert read_all(right, 2) == b"ok"


def test_a_dead_peer_raises_oserror(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    right.close()
    out = SendBuffer(left)
    with pytest.raises(OSError):
        for _ in range(100):
            out.write([b"x" * 65536])
            out.flush()
