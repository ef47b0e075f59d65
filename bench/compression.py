"""The bench's compression rows: echo with permessage-deflate, and what a compressed idle
connection costs.

Two scenarios. The client offers permessage-deflate as browsers do
("permessage-deflate; client_max_window_bits"); a run where the server did not agree is an
error, not a result.

- "deflate": a 0.9 KiB JSON text message echoed on 50 connections, 8 in flight each (the
  small-message row's shape), by echo_server (compression on, its default) and by websockets
  with compression="deflate"; echo_server also without the offer, for the cost of compressing.
- "deflate-idle": 10,000 connections opened and left idle: the server's memory per connection
  with the offer and without it, for echo_server and websockets. Then each connection echoes
  one compressed message and the memory is taken again: with context takeover (the default) the
  zlib state made for that message lives as long as the connection, and this shows its price.

The load generator compresses its message once, with a fresh context and a 12-bit window (what
both servers ask of a client that offers client_max_window_bits): a client may always choose
not to refer to earlier messages, so the same frame is valid as every message on every
connection. It counts the echoes (bench/loadgen.py's reader) without inflating them.

Self-contained on purpose: it adds its scenarios to `python -m bench` the way bench/fairness.py
does, opens its connections itself (the upgrade request carries the offer), and reuses only
loadgen's drive loop, workers and frame counter.
"""

from __future__ import annotations

import json
import selectors
import socket
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from bench.loadgen import (
    HANDSHAKE_KEY,
    MASK_KEY,
    OP_TEXT,
    RECV_BUFFER_BYTES,
    SELECT_SLICE_S,
    WORKER_START_TIMEOUT_S,
    BenchError,
    ConnectionLostError,
    FrameReader,
    Peer,
    abort,
    drive_echo,
    expect,
    length_header,
    mask,
    percentile,
    reporting_errors,
    split,
    wait_until,
    workers,
)
from bench.servers import (
    ECHO_SERVER,
    WEBSOCKETS,
    WRAPPERS,
    RunningServer,
    ServerSpec,
    echo_server,
    python_server,
    start_server,
)

DEFLATE = "deflate"
DEFLATE_IDLE = "deflate-idle"
SCENARIOS = (DEFLATE, DEFLATE_IDLE)
OFFER = "permessage-deflate; client_max_window_bits"
CLIENT_WINDOW_BITS = 12
KIB = 1024
# 890 bytes of JSON such as a dashboard or a sensor hub sends: deflate alone makes it 5 times
# smaller; with context takeover, repeated, 60 times.
MESSAGE = json.dumps(
    [{"id": index, "sensor": f"room-{index % 7}", "t": 20 + index % 9 / 4} for index in range(24)],
    separators=(",", ":"),
).encode()
WEBSOCKETS_DEFLATE = f"{WEBSOCKETS} deflate"
NOT_OFFERED = ", not offered"


@dataclass(frozen=True)
class DeflatePlan:
    """The sizes this module takes from the bench's plan."""

    connections: int
    in_flight: int
    warmup_s: float
    duration_s: float
    idle_connections: int
    processes: int
    open_timeout_s: float
    delivery_timeout_s: float


@dataclass(frozen=True)
class Variant:
    """One row: a server, and whether the client offers permessage-deflate."""

    name: str
    spec: ServerSpec
    offer: bool


def variants(scenario: str, servers: Sequence[ServerSpec]) -> list[Variant]:
    """The rows of `scenario` for the servers being run (echo_server's and websockets')."""
    names = {spec.name for spec in servers}
    rows: list[Variant] = []
    if ECHO_SERVER in names:
        ours = echo_server(ECHO_SERVER, "this project, compression on (its default)")
        rows += [Variant(ECHO_SERVER, ours, True), Variant(ECHO_SERVER + NOT_OFFERED, ours, False)]
    if WEBSOCKETS in names:
        theirs = python_server(
            WEBSOCKETS_DEFLATE,
            [
                *(str(WRAPPERS / "websockets_echo.py"), "--host", "127.0.0.1", "--port", "0"),
                *("--compression", "deflate"),
            ],
            "websockets (asyncio) with compression='deflate', its own default",
        )
        rows.append(Variant(WEBSOCKETS_DEFLATE, theirs, True))
        if scenario == DEFLATE_IDLE:
            rows.append(Variant(WEBSOCKETS_DEFLATE + NOT_OFFERED, theirs, False))
    return rows


def round_measurements(
    plan: DeflatePlan, servers: Sequence[ServerSpec], scenario: str
) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """What one round of `scenario` measures: (name in the report, measurement) pairs."""
    run = run_echo if scenario == DEFLATE else run_idle
    return [
        (variant.name, partial(measure, variant, partial(run, plan=plan, offer=variant.offer)))
        for variant in variants(scenario, servers)
    ]


def measure(variant: Variant, run: Callable[[RunningServer], dict[str, Any]]) -> dict[str, Any]:
    """One measurement against a fresh process of the variant's server; a failure is a result."""
    try:
        server = start_server(variant.spec)
    except RuntimeError as error:
        return {"error": f"did not start: {error}"}
    try:
        return run(server)
    except (BenchError, OSError) as error:
        status = "" if server.alive() else f" (server exited with status {server.exit_status()})"
        return {"error": f"{error}{status}"}
    finally:
        server.stop()


# The client side: the upgrade with the offer, and the one compressed message.


def upgrade_request(host: str, port: int, offer: bool) -> bytes:
    extension = f"Sec-WebSocket-Extensions: {OFFER}\r\n" if offer else ""
    return (
        "GET / HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {HANDSHAKE_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"{extension}\r\n"
    ).encode()


def compressed_frame(payload: bytes) -> bytes:
    """A masked text frame with RSV1: `payload` deflated on its own (RFC 7692 section 7.2.1)."""
    compressor = zlib.compressobj(wbits=-CLIENT_WINDOW_BITS)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = data[:-4]  # the sync flush's empty block, which RFC 7692 leaves off the wire
    return length_header(0x80 | 0x40 | OP_TEXT, len(data), masked=True) + MASK_KEY + mask(data)


def plain_frame(payload: bytes) -> bytes:
    return length_header(0x80 | OP_TEXT, len(payload), masked=True) + MASK_KEY + mask(payload)


def open_connections(
    host: str, port: int, count: int, offer: bool, timeout_s: float
) -> tuple[list[Peer], str]:
    """Open `count` connections one after the other (the time to open is not a figure here);
    return them, and the first error (the server did not agree to compress, say)."""
    request = upgrade_request(host, port, offer)
    peers: list[Peer] = []
    deadline = time.monotonic() + timeout_s
    for _ in range(count):
        if time.monotonic() >= deadline:
            return peers, f"opened {len(peers)} of {count} within {timeout_s:g} s"
        sock = socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionLostError("closed during the handshake")
                head += chunk
        except OSError as error:
            abort(sock)
            return peers, f"handshake: {error}"
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101 "):
            abort(sock)
            return peers, head.split(b"\r\n", 1)[0].decode(errors="replace")
        if offer and b"permessage-deflate" not in head.lower():
            abort(sock)
            return peers, "the server did not agree to permessage-deflate"
        sock.setblocking(False)
        peer = Peer(sock, FrameReader())
        peer.received += peer.reader.feed(rest)
        peers.append(peer)
    return peers, ""


# "deflate": the echo.


@dataclass(frozen=True)
class EchoJob:
    host: str
    port: int
    connections: int
    in_flight: int
    offer: bool
    open_timeout_s: float


def echo_worker(pipe: Connection, job: EchoJob) -> None:
    peers: list[Peer] = []
    with reporting_errors(pipe):
        try:
            peers, error = open_connections(
                job.host, job.port, job.connections, job.offer, job.open_timeout_s
            )
            pipe.send(("ready", len(peers), error))
            command = pipe.recv()
            if command[0] == "go" and not error:
                frame = compressed_frame(MESSAGE) if job.offer else plain_frame(MESSAGE)
                _, warm_at, end_at = command
                pipe.send(("result", drive_echo(peers, frame, job.in_flight, warm_at, end_at)))
        finally:
            for peer in peers:
                abort(peer.sock)


def run_echo(server: RunningServer, *, plan: DeflatePlan, offer: bool) -> dict[str, Any]:
    """Echo MESSAGE on `plan.connections` connections, compressed both ways when `offer`."""
    jobs = [
        (EchoJob(server.host, server.port, count, plan.in_flight, offer, plan.open_timeout_s),)
        for count in split(plan.connections, plan.processes)
    ]
    with workers(echo_worker, jobs) as pipes:
        ready = [
            expect(pipe, "ready", WORKER_START_TIMEOUT_S + plan.open_timeout_s) for pipe in pipes
        ]
        errors = [message[2] for message in ready if message[2]]
        if errors:
            raise BenchError(errors[0])
        warm_at = time.monotonic() + plan.warmup_s
        end_at = warm_at + plan.duration_s
        for pipe in pipes:
            pipe.send(("go", warm_at, end_at))
        wait_until(warm_at)
        cpu_start = server.cpu_seconds()
        wait_until(end_at)
        cpu_s = server.cpu_seconds() - cpu_start
        results = [expect(pipe, "result", plan.duration_s + 30.0)[1] for pipe in pipes]
    received = sum(result["received"] for result in results)
    latencies = sorted(
        value for result in results for value in memoryview(result["latencies"]).cast("d").tolist()
    )
    return {
        "offer": offer,
        "message_bytes": len(MESSAGE),
        "messages_per_s": received / plan.duration_s,
        "wire_mb_per_s": sum(result["received_bytes"] for result in results)
        / plan.duration_s
        / 1e6,
        "latency_p50_ms": percentile(latencies, 0.5) * 1e3 if latencies else None,
        "server_cpu_cores": cpu_s / plan.duration_s,
        "loadgen_cpu_cores": sum(result["cpu_s"] for result in results) / plan.duration_s,
    }


# "deflate-idle": memory per connection, idle, then after one compressed message each.


@dataclass(frozen=True)
class IdleJob:
    host: str
    port: int
    connections: int
    offer: bool
    open_timeout_s: float
    delivery_timeout_s: float


def idle_worker(pipe: Connection, job: IdleJob) -> None:
    peers: list[Peer] = []
    with reporting_errors(pipe):
        try:
            peers, error = open_connections(
                job.host, job.port, job.connections, job.offer, job.open_timeout_s
            )
            pipe.send(("opened", len(peers), error))
            if pipe.recv()[0] != "use" or error:
                return
            frame = compressed_frame(MESSAGE) if job.offer else plain_frame(MESSAGE)
            pipe.send(("used", echo_once(peers, frame, job.delivery_timeout_s)))
            pipe.recv()
        finally:
            for peer in peers:
                abort(peer.sock)


def echo_once(peers: list[Peer], frame: bytes, timeout_s: float) -> int:
    """Send `frame` on every connection and wait for every echo; how many came back."""
    buffer = bytearray(RECV_BUFFER_BYTES)
    view = memoryview(buffer)
    waiting = set(peers)
    with selectors.DefaultSelector() as selector:
        for peer in peers:
            selector.register(peer.sock, selectors.EVENT_READ, peer)
            peer.write(frame, selector)
        deadline = time.monotonic() + timeout_s
        while waiting and time.monotonic() < deadline:
            for key, events in selector.select(SELECT_SLICE_S):
                peer = key.data
                if events & selectors.EVENT_WRITE:
                    peer.flush(selector)
                if events & selectors.EVENT_READ and peer.read(buffer, view, selector)[1]:
                    waiting.discard(peer)
    return len(peers) - len(waiting)


def run_idle(server: RunningServer, *, plan: DeflatePlan, offer: bool) -> dict[str, Any]:
    """Open `plan.idle_connections`; the server's memory per connection idle, then after each
    has echoed one message."""
    rss_before = server.rss_bytes()
    jobs = [
        (
            IdleJob(
                server.host,
                server.port,
                count,
                offer,
                plan.open_timeout_s,
                plan.delivery_timeout_s,
            ),
        )
        for count in split(plan.idle_connections, plan.processes)
    ]
    with workers(idle_worker, jobs) as pipes:
        opened = [
            expect(pipe, "opened", WORKER_START_TIMEOUT_S + plan.open_timeout_s + 30.0)
            for pipe in pipes
        ]
        errors = [message[2] for message in opened if message[2]]
        if errors:
            raise BenchError(errors[0])
        count = sum(message[1] for message in opened)
        rss_idle = server.rss_bytes()
        for pipe in pipes:
            pipe.send(("use",))
        used = [expect(pipe, "used", plan.delivery_timeout_s + 60.0)[1] for pipe in pipes]
        rss_used = server.rss_bytes()
    return {
        "offer": offer,
        "connections": count,
        "echoed": sum(used),
        "rss_before": rss_before,
        "bytes_per_connection": (rss_idle - rss_before) / count,
        "bytes_per_connection_used": (rss_used - rss_before) / count,
    }


# The report.

ECHO_KEYS = (
    "messages_per_s",
    "wire_mb_per_s",
    "latency_p50_ms",
    "server_cpu_cores",
    "loadgen_cpu_cores",
)
IDLE_KEYS = ("bytes_per_connection", "bytes_per_connection_used")


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario and row: the medians over rounds, and what failed."""
    found: dict[str, Any] = {}
    for scenario, keys in ((DEFLATE, ECHO_KEYS), (DEFLATE_IDLE, IDLE_KEYS)):
        rows: dict[str, Any] = {}
        for run in runs:
            if run["scenario"] != scenario:
                continue
            entry = rows.setdefault(run["server"], {"runs": [], "errors": []})
            if run.get("error"):
                entry["errors"].append(f"round {run['round']}: {run['error']}")
            else:
                entry["runs"].append(run)
        for entry in rows.values():
            good = entry.pop("runs")
            for key in keys:
                values = sorted(run[key] for run in good if run.get(key) is not None)
                entry[key] = values[len(values) // 2] if values else None
        if rows:
            found[scenario] = rows
    echo = found.get(DEFLATE, {})
    reference = echo.get(WEBSOCKETS_DEFLATE, {}).get("messages_per_s")
    for entry in echo.values():
        value = entry["messages_per_s"]
        entry["vs_websockets"] = value / reference if value and reference else None
    idle = found.get(DEFLATE_IDLE, {})
    for name, entry in idle.items():
        if name.endswith(NOT_OFFERED):
            continue
        plain = idle.get(name + NOT_OFFERED, {}).get("bytes_per_connection")
        value = entry["bytes_per_connection"]
        entry["vs_not_offered"] = value / plain if value and plain else None
    return found


def table_lines(found: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    echo = found.get(DEFLATE, {})
    if echo:
        lines += [
            "",
            f"{f'deflate ({len(MESSAGE)} B JSON echo)':<32}{'msg/s':>10}{'vs ws':>8}"
            f"{'wire MB/s':>11}{'p50 ms':>9}{'srv CPU':>9}{'gen CPU':>9}",
        ]
        for name, entry in echo.items():
            versus = entry["vs_websockets"]
            lines.append(
                f"{name:<32}{_number(entry['messages_per_s'], 0):>10}"
                f"{'' if versus is None else f'{versus:.2f}x':>8}"
                f"{_number(entry['wire_mb_per_s'], 2):>11}"
                f"{_number(entry['latency_p50_ms'], 2):>9}"
                f"{_number(entry['server_cpu_cores'], 2):>9}"
                f"{_number(entry['loadgen_cpu_cores'], 2):>9}"
                + (f"  ({len(entry['errors'])} failed)" if entry["errors"] else "")
            )
        lines.append(
            f"  a {len(MESSAGE):,} B JSON text message echoed on {plan['small_connections']} "
            f"connections x{plan['small_in_flight']} in flight, permessage-deflate agreed "
            f"('{NOT_OFFERED.strip(', ')}': the same without the offer); vs ws: times "
            f"{WEBSOCKETS_DEFLATE}'s rate; CPU in cores: srv the server, gen the load "
            "generator's processes together."
        )
    idle = found.get(DEFLATE_IDLE, {})
    if idle:
        lines += [
            "",
            f"{'deflate, ' + format(plan['idle_connections'], ',') + ' idle':<32}"
            f"{'KiB/conn':>10}{'x plain':>9}{'after 1 msg':>13}",
        ]
        for name, entry in idle.items():
            idle_bytes, used = entry["bytes_per_connection"], entry["bytes_per_connection_used"]
            versus = entry.get("vs_not_offered")
            lines.append(
                f"{name:<32}{_number(idle_bytes / KIB if idle_bytes else None, 1):>10}"
                f"{'' if versus is None else f'{versus:.2f}x':>9}"
                f"{_number(used / KIB if used else None, 1):>13}"
                + (f"  ({len(entry['errors'])} failed)" if entry["errors"] else "")
            )
        lines.append(
            "  the server's memory per connection: opened with the offer (or without it), idle; "
            f"then just after each has echoed one compressed {len(MESSAGE)} B message (zlib "
            "state, kept with context takeover); x plain: idle, over the same server without "
            "the offer."
        )
    return lines


def one_line(head: str, run: dict[str, Any]) -> str:
    """A run as one progress line."""
    if run["scenario"] == DEFLATE:
        return (
            f"{head} {_number(run['messages_per_s'], 0)} msg/s, "
            f"{_number(run['wire_mb_per_s'], 2)} MB/s on the wire, "
            f"server CPU {run['server_cpu_cores']:.2f}, gen CPU {run['loadgen_cpu_cores']:.2f}"
        )
    return (
        f"{head} {run['bytes_per_connection'] / KIB:.1f} KiB/conn idle, "
        f"{run['bytes_per_connection_used'] / KIB:.1f} after one message "
        f"({run['echoed']:,}/{run['connections']:,} echoed)"
    )


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"
