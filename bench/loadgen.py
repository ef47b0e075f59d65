"""The load generator: one client that drives every server in the bench, built so it is never
the limit.

Speed comes from doing as little as possible per message: every client frame is built and
masked once (the mask key is constant, which RFC 6455 allows a client to choose), sockets are
raw and non-blocking under one `selectors` loop per process, server frames are counted without
copying their payloads (a run of same-size echoes is checked with two slice comparisons, not a
loop), and the connections are spread over several processes. Each process reports its own CPU
time, so the report can show how much of the machine the generator used.

Four kinds of scenario, each a function that takes a running server and a plan and returns
raw numbers: `run_echo` (pipelined echoes: 32-byte text on 50 or 1,000 connections, or 1 MiB
binary on one), `run_idle` (many idle connections: memory, time to open, a sample still
echoing), `run_broadcast` (one chat message at a time to many subscribers, on one server or
spread over the nodes of a cluster) and `run_fanout` (a publisher keeping chat messages in
flight to many subscribers: deliveries per second). Worker processes talk to the coordinating
process over pipes; all timestamps are `time.monotonic()`, one clock for every process on Linux.

The echo scenarios write in one of two patterns (PATTERNS): "batched", the messages that are due
on a connection concatenated into one write (one `send()` for all the echoes a read brought
back), and "per-message", one `send()` per message, as browsers and Node's `ws` write: each
message its own syscall and, with TCP_NODELAY (set on every socket), its own TCP segment.

Not a WebSocket client library: handshake responses are checked for "101" only, and server
frames are parsed only as far as counting messages and answering pings needs.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import statistics
import struct
import time
import traceback
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any, Protocol

from bench.servers import RunningServer

# RFC 6455 opcodes the generator sends or must recognise.
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

MASK_KEY = b"\x37\xfa\x21\x3d"
HANDSHAKE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RECV_BUFFER_BYTES = 1024 * 1024
HANDSHAKE_READ_BYTES = 4096
# Handshakes in progress at once per process: enough to keep a server's accept loop busy,
# few enough that a small listen backlog is not flooded with SYNs it must drop.
OPEN_CONCURRENCY = 8
WORKER_START_TIMEOUT_S = 30.0
WORKER_STOP_TIMEOUT_S = 10.0
SELECT_SLICE_S = 0.1
LINGER_RESET = struct.pack("ii", 1, 0)  # struct linger {on, 0 seconds}: close() sends a reset
BATCHED = "batched"
PER_MESSAGE = "per-message"
PATTERNS = (BATCHED, PER_MESSAGE)


class BenchError(Exception):
    """A scenario could not run against a server (it refused, died, or stopped answering)."""


# Frames, built once.


def mask(payload: bytes, key: bytes = MASK_KEY) -> bytes:
    """XOR `payload` with the repeated 4-byte `key`, as one big-integer XOR (fast for 1 MiB)."""
    if not payload:
        return payload
    size = len(payload)
    repeated = (key * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(size, "big")


def length_header(first: int, size: int, masked: bool) -> bytes:
    mask_bit = 0x80 if masked else 0
    if size < 126:
        return bytes([first, mask_bit | size])
    if size < 65536:
        return bytes([first, mask_bit | 126]) + size.to_bytes(2, "big")
    return bytes([first, mask_bit | 127]) + size.to_bytes(8, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked frame, as a client must send it."""
    return length_header(0x80 | opcode, len(payload), masked=True) + MASK_KEY + mask(payload)


def server_frame_head(opcode: int, size: int) -> bytes:
    """The header a server puts on a final, unmasked frame of `size` bytes."""
    return length_header(0x80 | opcode, size, masked=False)


def upgrade_request(host: str, port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {HANDSHAKE_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()


class FrameReader:
    """Counts the complete messages in a server's byte stream, keeping no data payloads.

    Control frames (ping, pong, close) are kept in `controls` for the caller to act on. Given
    the exact two-byte header of the small frames it expects, it counts a run of them with two
    slice comparisons instead of a Python loop per frame.
    """

    __slots__ = (
        "_control",
        "_ends_message",
        "_fast_size",
        "_first",
        "_head",
        "_left",
        "_op",
        "_second",
        "controls",
    )

    def __init__(self, expected_head: bytes | None = None, expected_size: int = 0) -> None:
        self.controls: list[tuple[int, bytes]] = []
        self._head = b""  # the start of a header split across reads
        self._left = 0  # payload bytes of the current frame still to come
        self._ends_message = False
        self._op = 0
        self._control: bytearray | None = None
        use_fast = expected_head is not None and len(expected_head) == 2
        self._fast_size = expected_size if use_fast else 0
        self._first = expected_head[:1] if expected_head else b""
        self._second = expected_head[1:2] if expected_head else b""

    def feed(self, data: bytes | memoryview) -> int:
        """Take the next bytes from the server; return how many messages they completed."""
        done = 0
        pos = 0
        end = len(data)
        if self._left:
            take = min(self._left, end)
            if self._control is not None:
                self._control += data[:take]
            self._left -= take
            if self._left:
                return 0
            pos = take
            done += self._finish()
        if self._head:
            data = self._head + bytes(data[pos:])
            self._head = b""
            pos, end = 0, len(data)
        size = self._fast_size
        if size and end - pos >= size:
            count = (end - pos) // size
            stop = pos + count * size
            if (
                data[pos:stop:size] == self._first * count
                and data[pos + 1 : stop : size] == self._second * count
            ):
                done += count
                pos = stop
        while pos < end:
            if end - pos < 2:
                self._head = bytes(data[pos:end])
                break
            first, second = data[pos], data[pos + 1]
            length = second & 0x7F
            head_size = 2 + (2 if length == 126 else 8 if length == 127 else 0)
            head_size += 4 if second & 0x80 else 0
            if end - pos < head_size:
                self._head = bytes(data[pos:end])
                break
            if length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            self._op = first & 0x0F
            self._ends_message = self._op < OP_CLOSE and bool(first & 0x80)
            start = pos + head_size
            take = min(length, end - start)
            self._control = bytearray(data[start : start + take]) if self._op >= OP_CLOSE else None
            pos = start + take
            self._left = length - take
            if self._left:
                break
            done += self._finish()
        return done

    def _finish(self) -> int:
        if self._control is not None:
            self.controls.append((self._op, bytes(self._control)))
            self._control = None
            return 0
        return 1 if self._ends_message else 0


class ConnectionLostError(BenchError):
    """A connection of the generator was closed or reset by the server."""


class Poller(Protocol):
    """What a Peer needs of its poller: to watch its socket for writability, or stop."""

    def modify(self, fileobj: socket.socket, events: int, data: Any = None) -> object: ...


class Peer:
    """One open WebSocket connection of the generator: its socket, reader and unsent bytes."""

    __slots__ = ("outbox", "reader", "received", "sent_at", "sock")

    def __init__(self, sock: socket.socket, reader: FrameReader) -> None:
        self.sock = sock
        self.reader = reader
        self.outbox: deque[memoryview] = deque()
        # [send time, messages] of each batch of messages sent and not yet all echoed.
        self.sent_at: deque[list[Any]] = deque()
        self.received = 0

    def write(self, data: bytes, selector: Poller) -> None:
        """Send now what the socket takes; queue the rest and watch for writability."""
        if self.outbox:
            self.outbox.append(memoryview(data))
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            raise ConnectionLostError(f"send failed: {error}") from error
        if sent < len(data):
            self.outbox.append(memoryview(data)[sent:])
            selector.modify(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, self)

    def flush(self, selector: Poller) -> None:
        while self.outbox:
            chunk = self.outbox[0]
            try:
                sent = self.sock.send(chunk)
            except BlockingIOError:
                return
            except OSError as error:
                raise ConnectionLostError(f"send failed: {error}") from error
            if sent < len(chunk):
                self.outbox[0] = chunk[sent:]
                return
            self.outbox.popleft()
        selector.modify(self.sock, selectors.EVENT_READ, self)

    def read(self, buffer: bytearray, view: memoryview, selector: Poller) -> tuple[int, int]:
        """Read what is there and answer pings: (bytes read, messages completed)."""
        try:
            size = self.sock.recv_into(buffer)
        except BlockingIOError:
            return 0, 0
        except OSError as error:
            raise ConnectionLostError(f"receive failed: {error}") from error
        if size == 0:
            raise ConnectionLostError("the server closed the connection")
        count = self.reader.feed(view[:size])
        if self.reader.controls:
            for opcode, payload in self.reader.controls:
                if opcode == OP_PING:
                    self.write(client_frame(OP_PONG, payload), selector)
                elif opcode == OP_CLOSE:
                    code = int.from_bytes(payload[:2], "big") if payload else 1005
                    raise ConnectionLostError(f"the server closed the connection with {code}")
            self.reader.controls.clear()
        return size, count


def abort(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): no TIME_WAIT left behind by thousands of sockets."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    sock.close()


# Opening connections, many at a time.


@dataclass
class Opened:
    peers: list[Peer] = field(default_factory=list)
    failed: int = 0
    first_error: str = ""
    done_at: float = 0.0

    def fail(self, error: str) -> None:
        self.failed += 1
        self.first_error = self.first_error or error


@dataclass
class _Handshake:
    sock: socket.socket
    sent: bool = False
    head: bytes = b""


def open_connections(
    host: str,
    port: int,
    path: str,
    count: int,
    *,
    reader: Callable[[], FrameReader],
    timeout_s: float,
) -> Opened:
    """Open `count` WebSocket connections, at most OPEN_CONCURRENCY handshakes at a time.

    Failures are counted, not raised: a server that cannot take them all is a result.
    """
    request = upgrade_request(host, port, path)
    opened = Opened()
    deadline = time.monotonic() + timeout_s
    started = 0
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with selectors.DefaultSelector() as selector:
        while started < count or selector.get_map():
            while started < count and len(selector.get_map()) < OPEN_CONCURRENCY:
                started += 1
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                code = sock.connect_ex((host, port))
                if code not in (0, errno.EINPROGRESS):
                    sock.close()
                    opened.fail(f"connect: {os.strerror(code)}")
                    continue
                selector.register(sock, selectors.EVENT_WRITE, _Handshake(sock))
            now = time.monotonic()
            if now >= deadline:
                for key in list(selector.get_map().values()):
                    selector.unregister(key.fileobj)
                    abort(key.data.sock)
                    opened.fail(f"no handshake within {timeout_s:g} s")
                break
            for key, _ in selector.select(min(SELECT_SLICE_S, deadline - now)):
                handshake: _Handshake = key.data
                error = _advance(handshake, request, selector)
                if error is None and b"\r\n\r\n" not in handshake.head:
                    continue
                selector.unregister(handshake.sock)
                if error is None:
                    head, _, rest = handshake.head.partition(b"\r\n\r\n")
                    if head.startswith(b"HTTP/1.1 101 "):
                        peer = Peer(handshake.sock, reader())
                        if rest:
                            peer.received += peer.reader.feed(rest)
                        opened.peers.append(peer)
                        continue
                    error = head.split(b"\r\n", 1)[0].decode(errors="replace")
                abort(handshake.sock)
                opened.fail(error)
    opened.done_at = time.monotonic()
    return opened


def _advance(handshake: _Handshake, request: bytes, selector: selectors.BaseSelector) -> str | None:
    """One step of a handshake: send the request once connected, then read the response."""
    sock = handshake.sock
    try:
        if not handshake.sent:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                return f"connect: {os.strerror(code)}"
            sock.sendall(request)  # a few hundred bytes into an empty send buffer
            handshake.sent = True
            selector.modify(sock, selectors.EVENT_READ, handshake)
            return None
        data = sock.recv(HANDSHAKE_READ_BYTES)
    except BlockingIOError:
        return None
    except OSError as error:
        return f"handshake: {error.strerror or error}"
    if not data:
        return "closed during the handshake"
    handshake.head += data
    return None


# Worker processes and the pipes to them.


@contextmanager
def reporting_errors(pipe: Connection) -> Iterator[None]:
    """In a worker: send any exception to the coordinator instead of dying silently."""
    try:
        yield
    except BaseException as error:
        kind = "lost" if isinstance(error, BenchError) else "error"
        detail = str(error) if isinstance(error, BenchError) else traceback.format_exc()
        pipe.send((kind, detail))


def expect(pipe: Connection, kind: str, timeout_s: float) -> tuple[Any, ...]:
    """The worker's next message, which must be `kind`; its failure becomes a BenchError."""
    if not pipe.poll(timeout_s):
        raise BenchError(f"a load generator process sent no {kind!r} in {timeout_s:g} s")
    message: tuple[Any, ...] = pipe.recv()
    if message[0] in ("lost", "error"):
        raise BenchError(f"load generator: {message[1]}")
    if message[0] != kind:
        raise BenchError(f"load generator sent {message[0]!r}, expected {kind!r}")
    return message


@contextmanager
def workers(
    target: Callable[..., None], jobs: Sequence[tuple[Any, ...]]
) -> Iterator[list[Connection]]:
    """Start one process per job (fork: nothing to pickle); stop them all however it ends."""
    context = get_context("fork")
    pipes: list[Connection] = []
    processes = []
    try:
        for job in jobs:
            ours, theirs = context.Pipe()
            process = context.Process(target=target, args=(theirs, *job), daemon=True)
            process.start()
            theirs.close()
            pipes.append(ours)
            processes.append(process)
        yield pipes
    finally:
        for pipe in pipes:
            with suppress(OSError):
                pipe.send(("stop",))
        for process in processes:
            process.join(WORKER_STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in pipes:
            pipe.close()


def open_publisher(host: str, port: int, path: str, payload_bytes: int, timeout_s: float) -> Peer:
    """One connection that publishes (and reads back) text messages of `payload_bytes`;
    BenchError if it cannot connect."""
    found = open_connections(
        host, port, path, 1, reader=echo_reader(OP_TEXT, payload_bytes), timeout_s=timeout_s
    )
    if not found.peers:
        raise BenchError(f"the publisher could not connect: {found.first_error}")
    return found.peers[0]


def wait_opened(pipes: Sequence[Connection], wanted: int, what: str, open_timeout_s: float) -> int:
    """Wait for every worker's "ready" (each with how many `what` it opened and its first error);
    how many were opened in all, or BenchError if fewer than `wanted`."""
    ready = [expect(pipe, "ready", WORKER_START_TIMEOUT_S + open_timeout_s) for pipe in pipes]
    opened = sum(message[1] for message in ready)
    if opened < wanted:
        errors = [message[3] for message in ready if message[3]]
        raise BenchError(f"opened {opened} of {wanted} {what}: {errors[0]}")
    return int(opened)


def split(total: int, parts: int) -> list[int]:
    """`total` as near-equal whole numbers: `parts` of them, or fewer so that none is zero."""
    return share(total, max(1, min(parts, total)))


def share(total: int, parts: int) -> list[int]:
    """`total` as exactly `parts` near-equal whole numbers (some zero if `total` < `parts`)."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def echo_reader(opcode: int, payload_bytes: int) -> Callable[[], FrameReader]:
    """A factory of readers that expect echoes of `payload_bytes` (fast path when small)."""
    head = server_frame_head(opcode, payload_bytes)

    def reader() -> FrameReader:
        if len(head) == 2:
            return FrameReader(head, len(head) + payload_bytes)
        return FrameReader()

    return reader


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def filler(size: int) -> bytes:
    """`size` bytes of ASCII, valid as a text message."""
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def wait_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# Echo scenarios: small messages and large messages.


@dataclass(frozen=True)
class EchoJob:
    host: str
    port: int
    path: str
    connections: int
    in_flight: int
    opcode: int
    payload_bytes: int
    open_timeout_s: float
    pattern: str


def echo_worker(pipe: Connection, job: EchoJob) -> None:
    with reporting_errors(pipe):
        frame = client_frame(job.opcode, filler(job.payload_bytes))
        reader = echo_reader(job.opcode, job.payload_bytes)
        opened = open_connections(
            job.host,
            job.port,
            job.path,
            job.connections,
            reader=reader,
            timeout_s=job.open_timeout_s,
        )
        pipe.send(("ready", len(opened.peers), opened.failed, opened.first_error))
        command = pipe.recv()
        if command[0] == "go" and not opened.failed:
            _, warm_at, end_at = command
            drive = drive_echo(
                opened.peers, frame, job.in_flight, warm_at, end_at, pattern=job.pattern
            )
            pipe.send(("result", drive))
        for peer in opened.peers:
            abort(peer.sock)


class Epoll:
    """`select.epoll` behind the one `selectors` method a Peer calls: the hot loop's poller.

    A `selectors` selector costs a key lookup and a tuple per event on top of epoll; at
    tens of thousands of wake-ups a second the generator polls epoll itself.
    """

    def __init__(self) -> None:
        self.epoll = select.epoll()

    def modify(self, fileobj: socket.socket, events: int, data: object = None) -> None:
        writable = select.EPOLLOUT if events & selectors.EVENT_WRITE else 0
        self.epoll.modify(fileobj.fileno(), select.EPOLLIN | writable)


def drive_echo(
    peers: list[Peer],
    frame: bytes,
    in_flight: int,
    warm_at: float,
    end_at: float,
    *,
    pattern: str = BATCHED,
) -> dict[str, Any]:
    """Keep `in_flight` messages outstanding on every peer until `end_at`; count from `warm_at`.

    Each echo is matched to its message in order (per connection), so its round trip is the
    time since that message was handed to the kernel. Messages sent together share one
    timestamp, kept once per batch, so the bookkeeping costs per wake-up, not per message.
    `pattern` is how the messages due are written: BATCHED, in one write; PER_MESSAGE, one
    write each.
    """
    if pattern == BATCHED:
        batches = [[frame * count] for count in range(in_flight + 1)]
    elif pattern == PER_MESSAGE:
        batches = [[frame] * count for count in range(in_flight + 1)]
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    buffer = bytearray(RECV_BUFFER_BYTES)
    view = memoryview(buffer)
    latencies = array("d")
    received = 0
    received_bytes = 0
    measuring = False
    cpu_start = 0.0
    poller = Epoll()
    by_fd = {peer.sock.fileno(): peer for peer in peers}
    try:
        now = time.monotonic()
        for fd, peer in by_fd.items():
            poller.epoll.register(fd, select.EPOLLIN)
            peer.sent_at.append([now, in_flight])
            for data in batches[in_flight]:
                peer.write(data, poller)
        while True:
            now = time.monotonic()
            if now >= end_at:
                break
            if not measuring and now >= warm_at:
                measuring = True
                cpu_start = time.process_time()
            for fd, events in poller.epoll.poll(min(SELECT_SLICE_S, end_at - now)):
                peer = by_fd[fd]
                if events & select.EPOLLOUT:
                    peer.flush(poller)
                if not events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    continue
                size, count = peer.read(buffer, view, poller)
                now = time.monotonic()
                in_window = warm_at <= now < end_at
                if in_window:
                    # Bytes as they arrive, so a slow server's partial 1 MiB echo counts too.
                    received_bytes += size
                    received += count
                if not count:
                    continue
                sent_at = peer.sent_at
                left = count
                while left:
                    batch = sent_at[0]
                    taken = batch[1] if batch[1] <= left else left
                    if in_window:
                        latencies.extend([now - batch[0]] * taken)
                    if taken == batch[1]:
                        sent_at.popleft()
                    else:
                        batch[1] -= taken
                    left -= taken
                sent_at.append([now, count])
                for data in batches[count]:
                    peer.write(data, poller)
    finally:
        poller.epoll.close()
    cpu_s = time.process_time() - cpu_start if measuring else 0.0
    return {
        "received": received,
        "received_bytes": received_bytes,
        "latencies": latencies.tobytes(),
        "cpu_s": cpu_s,
    }


@dataclass(frozen=True)
class EchoPlan:
    path: str
    connections: int
    in_flight: int
    opcode: int
    payload_bytes: int
    warmup_s: float
    duration_s: float
    processes: int
    open_timeout_s: float
    pattern: str = BATCHED


def run_echo(server: RunningServer, plan: EchoPlan) -> dict[str, Any]:
    """Run one echo scenario against `server`; return its raw numbers."""
    jobs = [
        (
            EchoJob(
                server.host,
                server.port,
                plan.path,
                count,
                plan.in_flight,
                plan.opcode,
                plan.payload_bytes,
                plan.open_timeout_s,
                plan.pattern,
            ),
        )
        for count in split(plan.connections, plan.processes)
    ]
    with workers(echo_worker, jobs) as pipes:
        wait_opened(pipes, plan.connections, "connections", plan.open_timeout_s)
        # The workers start sending at once; what arrives before `warm_at` is not counted.
        warm_at = time.monotonic() + plan.warmup_s
        end_at = warm_at + plan.duration_s
        for pipe in pipes:
            pipe.send(("go", warm_at, end_at))
        wait_until(warm_at)
        server.window(opens=True)
        cpu_start = server.cpu_times_each()
        wait_until(end_at)
        cpu_end = server.cpu_times_each()
        server.window(opens=False)
        # Per process: with --workers, each worker's share shows the kernel spread the load.
        spent = [
            (end[0] - cpu_start.get(pid, (0.0, 0.0))[0], end[1] - cpu_start.get(pid, (0.0, 0.0))[1])
            for pid, end in cpu_end.items()
        ]
        server_cpu_each = [user + system for user, system in spent]
        results = [expect(pipe, "result", plan.duration_s + 30.0)[1] for pipe in pipes]
    latencies = array("d")
    for result in results:
        latencies.frombytes(result["latencies"])
    ordered = sorted(latencies)
    received = sum(result["received"] for result in results)
    received_bytes = sum(result["received_bytes"] for result in results)
    cpu_s = sum(result["cpu_s"] for result in results)
    return {
        "pattern": plan.pattern,
        "messages": received,
        "messages_per_s": received / plan.duration_s,
        "mb_per_s": received_bytes / plan.duration_s / 1e6,
        "latency_p50_ms": percentile(ordered, 0.5) * 1e3 if ordered else None,
        "latency_p99_ms": percentile(ordered, 0.99) * 1e3 if ordered else None,
        "loadgen_cpu_cores": cpu_s / plan.duration_s,
        "loadgen_processes": len(results),
        "server_cpu_cores": sum(server_cpu_each) / plan.duration_s,
        # The part of it in the kernel (send, recv, epoll): the rest is the server's own code.
        "server_sys_cores": sum(system for _, system in spent) / plan.duration_s,
        "server_cpu_cores_each": [round(cpu / plan.duration_s, 3) for cpu in server_cpu_each],
    }


# Many idle connections: memory per connection, time to open, and a sample still echoing.

SAMPLE_PAYLOAD_BYTES = 32
SAMPLE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class IdlePlan:
    connections: int
    sample: int
    sample_rounds: int
    processes: int
    open_timeout_s: float


@dataclass(frozen=True)
class IdleJob:
    host: str
    port: int
    connections: int
    sample: int
    sample_rounds: int
    open_timeout_s: float


def idle_worker(pipe: Connection, job: IdleJob) -> None:
    opened = Opened()
    with reporting_errors(pipe):
        try:
            pipe.send(("up",))
            if pipe.recv()[0] != "open":
                return
            reader = echo_reader(OP_TEXT, SAMPLE_PAYLOAD_BYTES)
            opened = open_connections(
                job.host,
                job.port,
                "/",
                job.connections,
                reader=reader,
                timeout_s=job.open_timeout_s,
            )
            report = (len(opened.peers), opened.failed, opened.first_error, opened.done_at)
            pipe.send(("opened", *report))
            if pipe.recv()[0] != "sample":
                return
            pipe.send(("sampled", *sample_echo(opened.peers, job.sample, job.sample_rounds)))
            pipe.recv()
        finally:
            for peer in opened.peers:
                abort(peer.sock)


def sample_echo(peers: list[Peer], sample: int, rounds: int) -> tuple[int, int, bytes]:
    """Echo one message at a time on `sample` peers spread over all of them, `rounds` times.

    Returns (echoes received, echoes expected, round-trip times as an array of doubles).
    """
    if not peers or not sample:
        return 0, 0, b""
    chosen = peers[:: max(1, len(peers) // sample)][:sample]
    frame = client_frame(OP_TEXT, filler(SAMPLE_PAYLOAD_BYTES))
    buffer = bytearray(RECV_BUFFER_BYTES)
    view = memoryview(buffer)
    latencies = array("d")
    lost: set[Peer] = set()
    with selectors.DefaultSelector() as selector:
        for peer in chosen:
            selector.register(peer.sock, selectors.EVENT_READ, peer)
        for _ in range(rounds):
            waiting: set[Peer] = set()
            sent_at = time.monotonic()
            for peer in chosen:
                if peer in lost:
                    continue
                try:
                    peer.write(frame, selector)
                    waiting.add(peer)
                except ConnectionLostError:
                    lost.add(peer)
            deadline = sent_at + SAMPLE_TIMEOUT_S
            while waiting and time.monotonic() < deadline:
                for key, events in selector.select(SELECT_SLICE_S):
                    peer = key.data
                    try:
                        if events & selectors.EVENT_WRITE:
                            peer.flush(selector)
                        count = peer.read(buffer, view, selector)[1] if events & 1 else 0
                    except ConnectionLostError:
                        lost.add(peer)
                        waiting.discard(peer)
                        selector.unregister(peer.sock)
                        continue
                    if count and peer in waiting:
                        latencies.append(time.monotonic() - sent_at)
                        waiting.discard(peer)
    return len(latencies), len(chosen) * rounds, latencies.tobytes()


def run_idle(server: RunningServer, plan: IdlePlan) -> dict[str, Any]:
    """Open `plan.connections` idle connections; measure memory, time, and a sample echoing.

    A server that cannot hold them all (it refuses, or dies) is reported as "failed at N",
    N being the connections it had accepted, instead of stopping the bench.
    """
    rss_before = server.rss_bytes()
    counts = split(plan.connections, plan.processes)
    samples = share(plan.sample, len(counts))
    jobs = [
        (IdleJob(server.host, server.port, count, sample, plan.sample_rounds, plan.open_timeout_s),)
        for count, sample in zip(counts, samples, strict=True)
    ]
    result: dict[str, Any] = {"connections": plan.connections, "rss_before": rss_before}
    with workers(idle_worker, jobs) as pipes:
        for pipe in pipes:
            expect(pipe, "up", WORKER_START_TIMEOUT_S)
        started = time.monotonic()
        for pipe in pipes:
            pipe.send(("open",))
        reports = [expect(pipe, "opened", plan.open_timeout_s + 30.0) for pipe in pipes]
        opened = sum(report[1] for report in reports)
        failed = sum(report[2] for report in reports)
        result["opened"] = opened
        result["open_s"] = max(report[4] for report in reports) - started
        if failed or not server.alive():
            errors = [report[3] for report in reports if report[3]]
            exited = "" if server.alive() else f"server exited with status {server.exit_status()}"
            # Not an error of the run: not holding them all is this server's result.
            result["failed_at"] = opened
            result["failure"] = "; ".join(filter(None, [exited, *errors[:1]]))
            result["bytes_per_connection"] = None
            return result
        result["rss_after"] = rss_after = server.rss_bytes()
        result["bytes_per_connection"] = (rss_after - rss_before) / opened
        for pipe in pipes:
            pipe.send(("sample",))
        sample_timeout_s = SAMPLE_TIMEOUT_S * plan.sample_rounds + 30.0
        sampled = [expect(pipe, "sampled", sample_timeout_s) for pipe in pipes]
        result["rss_after_sample"] = server.rss_bytes()
    latencies = array("d")
    for report in sampled:
        latencies.frombytes(report[3])
    ordered = sorted(latencies)
    result["sample_echoes"] = sum(report[1] for report in sampled)
    result["sample_expected"] = sum(report[2] for report in sampled)
    result["sample_p50_ms"] = percentile(ordered, 0.5) * 1e3 if ordered else None
    result["sample_p99_ms"] = percentile(ordered, 0.99) * 1e3 if ordered else None
    return result


# Broadcast: one chat message to many subscribers.


@dataclass(frozen=True)
class BroadcastPlan:
    path: str
    subscribers: int
    messages: int
    warmup_messages: int
    processes: int
    open_timeout_s: float
    delivery_timeout_s: float


BROADCAST_PAYLOAD_BYTES = 32


@dataclass(frozen=True)
class BroadcastJob:
    # (host, port, subscribers): one process may hold subscribers of several servers.
    targets: tuple[tuple[str, int, int], ...]
    path: str
    messages: int
    open_timeout_s: float


def broadcast_worker(pipe: Connection, job: BroadcastJob) -> None:
    opened = Opened()
    with reporting_errors(pipe):
        try:
            for host, port, subscribers in job.targets:
                more = open_connections(
                    host,
                    port,
                    job.path,
                    subscribers,
                    reader=echo_reader(OP_TEXT, BROADCAST_PAYLOAD_BYTES),
                    timeout_s=job.open_timeout_s,
                )
                opened.peers += more.peers
                opened.failed += more.failed
                opened.first_error = opened.first_error or more.first_error
            pipe.send(("ready", len(opened.peers), opened.failed, opened.first_error))
            if pipe.recv()[0] == "go":
                listen_broadcast(pipe, opened.peers, job.messages)
        finally:
            for peer in opened.peers:
                abort(peer.sock)


def listen_broadcast(pipe: Connection, peers: list[Peer], messages: int) -> None:
    """Read every subscriber; tell the coordinator when the last of ours has message `seq`.

    Messages arrive in order on each connection, so a subscriber's count of messages is the
    sequence number of the next one: no payload needs reading. Runs until told to stop.
    """
    got = [0] * messages
    buffer = bytearray(RECV_BUFFER_BYTES)
    view = memoryview(buffer)
    with selectors.DefaultSelector() as selector:
        for peer in peers:
            selector.register(peer.sock, selectors.EVENT_READ, peer)
        selector.register(pipe, selectors.EVENT_READ, None)
        pipe.send(("listening",))
        while True:
            for key, events in selector.select(SELECT_SLICE_S):
                peer = key.data
                if peer is None:
                    return
                if events & selectors.EVENT_WRITE:
                    peer.flush(selector)
                count = peer.read(buffer, view, selector)[1] if events & 1 else 0
                if not count:
                    continue
                now = time.monotonic()
                first = peer.received
                peer.received += count
                for seq in range(first, min(peer.received, messages)):
                    got[seq] += 1
                    if got[seq] == len(peers):
                        pipe.send(("got", seq, now))


def broadcast_targets(
    endpoints: Sequence[tuple[str, int]], subscribers: int, processes: int
) -> list[tuple[tuple[str, int, int], ...]]:
    """Each generator process's (host, port, subscribers): every server gets an equal share,
    and every process an equal part of each server's share."""
    per_process: list[list[tuple[str, int, int]]] = [[] for _ in range(processes)]
    for (host, port), server_share in zip(
        endpoints, share(subscribers, len(endpoints)), strict=True
    ):
        for targets, count in zip(per_process, share(server_share, processes), strict=True):
            if count:
                targets.append((host, port, count))
    return [tuple(targets) for targets in per_process if targets]


def run_broadcast(servers: Sequence[RunningServer], plan: BroadcastPlan) -> dict[str, Any]:
    """Publish chat messages one at a time on the first server; time each until the last
    subscriber, on any of the servers, has it.

    One server is the plain broadcast; several are nodes of one cluster (joined through Redis),
    where the time includes the trip through Redis to every node.
    """
    total = plan.warmup_messages + plan.messages
    jobs = [
        (BroadcastJob(targets, plan.path, total, plan.open_timeout_s),)
        for targets in broadcast_targets(
            [(server.host, server.port) for server in servers], plan.subscribers, plan.processes
        )
    ]
    server = servers[0]
    times: list[float] = []
    with workers(broadcast_worker, jobs) as pipes:
        opened = wait_opened(pipes, plan.subscribers, "subscribers", plan.open_timeout_s)
        sock = open_publisher(
            server.host, server.port, plan.path, BROADCAST_PAYLOAD_BYTES, plan.open_timeout_s
        ).sock
        try:
            sock.setblocking(True)
            for pipe in pipes:
                pipe.send(("go",))
            for pipe in pipes:
                expect(pipe, "listening", WORKER_START_TIMEOUT_S)
            frame = client_frame(OP_TEXT, filler(BROADCAST_PAYLOAD_BYTES))
            for seq in range(total):
                sent_at = time.monotonic()
                sock.sendall(frame)
                last = sent_at
                for pipe in pipes:
                    report = expect(pipe, "got", plan.delivery_timeout_s)
                    if report[1] != seq:
                        raise BenchError(f"message {report[1]} arrived for {seq}")
                    last = max(last, report[2])
                if seq >= plan.warmup_messages:
                    times.append(last - sent_at)
        finally:
            abort(sock)
    return {
        "subscribers": opened,
        "servers": len(servers),
        "messages": len(times),
        "broadcast_ms": statistics.median(times) * 1e3,
        "broadcast_ms_each": [round(value * 1e3, 3) for value in times],
    }
