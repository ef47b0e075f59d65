"""The send buffer over a real socket pair: queue, flush in one send, count what it costs."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from echo_server.core.sendbuffer import BUFFER_OVERHEAD_BYTES, SendBuffer


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


def drain(out: SendBuffer, right: socket.socket, size: int) -> bytes:
    """Read `size` bytes on the far side, flushing whenever the kernel has room again."""
    received = bytearray()
    out.flush()
    for _ in range(10_000):
        if not out:
            break
        received += right.recv(65536)
        out.flush()
    return bytes(received) + read_all(right, size - len(received))


def test_a_write_is_queued_until_flushed(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    out = SendBuffer(left)
    out.write([b"head", b"er", b"payload"])
    assert out.size == 13
    right.setblocking(False)
    with pytest.raises(BlockingIOError):
        right.recv(100)
    out.flush()
    assert not out
    right.settimeout(5)
    assert read_all(right, 13) == b"headerpayload"


def test_what_the_kernel_does_not_take_stays_queued_and_counted(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, _ = pair
    out = SendBuffer(left)
    out.write([b"x" * 1_000_000])
    out.flush()
    assert 0 < out.size < 1_000_000


def test_many_small_writes_cost_about_their_size(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    out = SendBuffer(left)
    for _ in range(100_000):
        out.write([b"\x81\x01", b"x"])  # a one-byte text frame, header and payload
    assert out.size == 300_000
    assert out.cost < out.size + 10 * BUFFER_OVERHEAD_BYTES
    assert drain(out, right, 300_000) == b"\x81\x01x" * 100_000
    assert out.cost == 0


def test_a_large_write_costs_its_size_and_one_buffer(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, _ = pair
    out = SendBuffer(left)
    out.write([b"y" * 1_000_000])
    assert out.cost == 1_000_000 + BUFFER_OVERHEAD_BYTES


def test_writes_between_partial_flushes_keep_their_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    out = SendBuffer(left)
    expected = bytearray()
    for number in range(2000):
        part = (b"%d," % number) * (1 + number % 7)
        if number % 100 == 0:
            part = part * 8000  # some large enough to be kept by reference
        out.write([part])
        expected += part
        if number % 50 == 0:
            out.flush()
    assert drain(out, right, len(expected)) == expected


def test_flush_sends_the_queue_in_order_as_the_peer_reads(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    out = SendBuffer(left)
    payload = bytes(range(256)) * 2000
    out.write([payload[:1000], payload[1000:]])
    out.flush()
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
    out.flush()
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
    assert out.size == 2
    out.flush()
    assert read_all(right, 2) == b"ok"


def test_a_dead_peer_raises_oserror(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    right.close()
    out = SendBuffer(left)
    with pytest.raises(OSError):
        for _ in range(100):
            out.write([b"x" * 65536])
            out.flush()
