"""Hostile load on the real server: many sockets, silent sockets, a writer that never reads,
running out of descriptors. Loopback only; every loop is bounded in count and time.

The client side is a small selector-driven swarm of raw sockets, so one test process can hold
thousands of connections without threads.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import socket
import time
from collections.abc import Iterator
from typing import cast

import pytest
from conftest import StartServer
from support import (
    open_websocket,
    peak_rss_bytes,
    read_frame,
    rss_bytes,
    status_of,
    upgrade_request,
    wait_until,
)
from websockets.sync.client import connect

from echo_server.protocol.frames import Opcode, encode_frame

MIB = 1024 * 1024
SWARM_TIMEOUT_S = 120.0


@pytest.fixture(autouse=True)
def many_open_files() -> None:
    """This test process holds thousands of sockets: raise its soft descriptor limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Swarm:
    """Many raw client sockets driven by one selector: connect, upgrade, echo, all in bulk."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[socket.socket] = []
        self.selector = selectors.DefaultSelector()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.selector.close()

    def connect(self, count: int, batch: int = 500) -> list[bytes]:
        """Open `count` connections and upgrade each; return each one's response head."""
        heads: list[bytes] = []
        for start in range(0, count, batch):
            opened = []
            for _ in range(min(batch, count - start)):
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                sock.setblocking(False)
                opened.append(sock)
            self.sockets += opened
            heads += self._exchange(opened, upgrade_request(self.port), b"\r\n\r\n")
        return heads

    def echo_all(self, sockets: list[socket.socket], text: bytes) -> list[bytes]:
        """Send one masked text frame on each socket; return what each one gets back."""
        frame = encode_frame(Opcode.TEXT, text, mask=b"\x01\x02\x03\x04")
        expected = 2 + len(text)
        replies = self._exchange(sockets, frame, expected)
        return [reply[2:] for reply in replies]

    def _exchange(
        self, sockets: list[socket.socket], send: bytes, until: bytes | int
    ) -> list[bytes]:
        received = {sock: b"" for sock in sockets}
        for sock in sockets:
            sock.sendall(send)  # small: always fits an empty socket buffer
            self.selector.register(sock, selectors.EVENT_READ)
        waiting = set(sockets)
        deadline = time.monotonic() + SWARM_TIMEOUT_S
        try:
            while waiting and time.monotonic() < deadline:
                for key, _ in self.selector.select(1.0):
                    sock = cast(socket.socket, key.fileobj)
                    chunk = b""
                    with contextlib.suppress(BlockingIOError):
                        chunk = sock.recv(65536)
                    received[sock] += chunk
                    data = received[sock]
                    done = until in data if isinstance(until, bytes) else len(data) >= until
                    if done or not chunk:
                        waiting.discard(sock)
                        self.selector.unregister(sock)
        finally:
            for sock in waiting:
                self.selector.unregister(sock)
        return [received[sock] for sock in sockets]


@pytest.fixture
def swarm_factory() -> Iterator[list[Swarm]]:
    swarms: list[Swarm] = []
    yield swarms
    for swarm in swarms:
        swarm.close()


def test_10000_connections_are_held_and_every_one_still_echoes(
    start_server: StartServer, swarm_factory: list[Swarm]
) -> None:
    server = start_server(
        "ws", "--port", "0", "--ping-interval", "600", "--handshake-timeout", "60"
    )
    swarm = Swarm(server.port)
    swarm_factory.append(swarm)

    heads = swarm.connect(10_000)

    assert sum(head.startswith(b"HTTP/1.1 101 ") for head in heads) == 10_000
    replies = swarm.echo_all(swarm.sockets, b"still here")
    assert replies.count(b"still here") == 10_000
    # The 10,001st is over --max-connections (default 10,000): refused before the upgrade.
    one_more = swarm.connect(1)
    assert status_of(one_more[0]) == 503


def test_over_max_connections_new_clients_get_503_and_others_are_undisturbed(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0", "--max-connections", "5")
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(open_websocket(server.port)) for _ in range(5)]
        refused = Swarm(server.port)
        stack.callback(refused.close)
        assert status_of(refused.connect(1)[0]) == 503
        for number, sock in enumerate(clients):
            sock.sendall(encode_frame(Opcode.TEXT, str(number).encode(), mask=b"abcd"))
            assert read_frame(sock) == (Opcode.TEXT, str(number).encode())
        clients[0].close()
        # A freed place is given to the next client.
        wait_until(lambda: _can_upgrade(server.port), 10, "a new client accepted after one left")


def _can_upgrade(port: int) -> bool:
    try:
        open_websocket(port).close()
    except AssertionError:
        return False
    return True


def test_silent_sockets_are_closed_after_the_handshake_timeout_while_a_client_echoes(
    start_server: StartServer, swarm_factory: list[Swarm]
) -> None:
    server = start_server("ws", "--port", "0", "--handshake-timeout", "2")
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(2000)]
    try:
        slowest_s = 0.0
        with connect(server.url(), proxy=None, open_timeout=10) as ws:
            deadline = time.monotonic() + 4.0  # across the moment the 2,000 time out
            rounds = 0
            while time.monotonic() < deadline and rounds < 10_000:
                sent_at = time.monotonic()
                ws.send("ping")
                assert ws.recv(5) == "ping"
                slowest_s = max(slowest_s, time.monotonic() - sent_at)
                rounds += 1
        # A liveness bound, not a benchmark: a loop stalled by silent sockets would take seconds.
        assert slowest_s < 1.0, f"an echo took {slowest_s:.3f} s while silent sockets were held"
        for sock in silent:
            assert sock.recv(1) == b"", "silent socket was not closed by the server"
    finally:
        for sock in silent:
            sock.close()


def test_a_writer_that_never_reads_cannot_grow_server_memory(start_server: StartServer) -> None:
    server = start_server("ws", "--port", "0")
    baseline = rss_bytes(server.pid)
    frame = encode_frame(Opcode.BINARY, os.urandom(64 * 1024), mask=b"wxyz")
    target = 200 * MIB
    writer = open_websocket(server.port)
    writer.setblocking(False)
    sent = 0
    peak = baseline
    try:
        with connect(server.url(), proxy=None, open_timeout=10) as bystander:
            deadline = time.monotonic() + 20.0
            last_progress = time.monotonic()
            view = memoryview(frame)
            # Write until 200 MB are out, or until the writer has been stuck for 2 s.
            while sent < target and time.monotonic() - last_progress < 2.0:
                assert time.monotonic() < deadline, "neither stuck nor done in 20 s"
                try:
                    done = writer.send(view)
                except BlockingIOError:
                    bystander.send("still served?")
                    assert bystander.recv(5) == "still served?"
                    peak = max(peak, rss_bytes(server.pid))
                    time.sleep(0.01)
                    continue
                sent += done
                last_progress = time.monotonic()
                view = view[done:] or memoryview(frame)
            peak = max(peak, rss_bytes(server.pid))
    finally:
        writer.close()
    # The kernel's buffers take a few MB; past that the server stops reading (back-pressure).
    assert sent < target, "the server kept reading from a client that never reads its echoes"
    assert peak - baseline < 48 * MIB, f"server memory grew by {(peak - baseline) / MIB:.1f} MiB"


def test_out_of_descriptors_new_clients_are_refused_and_open_ones_keep_echoing(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0", open_files_limit=64)
    with contextlib.ExitStack() as stack:
        swarm = Swarm(server.port)
        stack.callback(swarm.close)
        heads = swarm.connect(120, batch=120)
        upgraded = [
            sock for sock, head in zip(swarm.sockets, heads, strict=True) if b" 101 " in head
        ]
        refused = [head for head in heads if b" 101 " not in head]
        assert 10 < len(upgraded) < 64
        # Refused cleanly: a 503 or a plain close, never a hang.
        assert all(head == b"" or status_of(head) == 503 for head in refused)
        replies = swarm.echo_all(upgraded, b"alive")
        assert replies.count(b"alive") == len(upgraded)
        for sock in upgraded[:20]:
            sock.close()
        wait_until(lambda: _can_upgrade(server.port), 10, "a client accepted after others left")
    assert server.proc.poll() is None, "the server died"


# Memory is what the process really holds (its RSS), not what a counter says: at the default
# 1 MiB limits, one hostile connection may grow the server by at most this much.
RSS_PER_CONNECTION_BYTES = 4 * MIB


def test_a_1_mib_message_in_1_byte_fragments_grows_the_server_by_at_most_4_mib(
    start_server: StartServer,
) -> None:
    # No keepalive ping before the echo: under load, 7.3 MB of fragments can take over the
    # default 20 s interval, and the first frame read back would be the ping.
    server = start_server("ws", "--port", "0", "--ping-interval", "600")
    fragments = 1024 * 1024
    mask = b"wxyz"
    middle = encode_frame(Opcode.CONTINUATION, b"f", fin=False, mask=mask)
    stream = b"".join(
        [
            encode_frame(Opcode.BINARY, b"f", fin=False, mask=mask),
            middle * (fragments - 2),
            encode_frame(Opcode.CONTINUATION, b"f", mask=mask),
        ]
    )  # 7.3 MB on the wire
    sock = open_websocket(server.port)
    baseline = rss_bytes(server.pid)
    try:
        sock.settimeout(60)
        sock.sendall(stream)
        opcode, payload = read_frame(sock)
    finally:
        sock.close()
    assert (opcode, payload) == (Opcode.BINARY, b"f" * fragments)
    growth = peak_rss_bytes(server.pid) - baseline
    assert growth < RSS_PER_CONNECTION_BYTES, f"grew by {growth / MIB:.1f} MiB"


def test_tiny_echoes_to_a_client_that_never_reads_grow_the_server_by_at_most_4_mib(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0")
    batch = encode_frame(Opcode.BINARY, b"t", mask=b"wxyz") * 10_000
    writer = open_websocket(server.port)
    writer.setblocking(False)
    baseline = rss_bytes(server.pid)
    view = memoryview(batch)
    sent = 0
    try:
        deadline = time.monotonic() + 60.0
        last_progress = time.monotonic()
        # Write until the server has stopped reading for 2 s (back-pressure), bounded in time.
        while time.monotonic() - last_progress < 2.0:
            assert time.monotonic() < deadline, "the server kept reading for 60 s"
            try:
                done = writer.send(view)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            sent += done
            last_progress = time.monotonic()
            view = view[done:] or memoryview(batch)
        growth = peak_rss_bytes(server.pid) - baseline
    finally:
        writer.close()
    assert sent > 2 * MIB  # enough one-byte echoes to reach the write limit many times over
    assert growth < RSS_PER_CONNECTION_BYTES, f"grew by {growth / MIB:.1f} MiB"
