"""The bench's fairness row: how long a bystander waits while one chat client floods.

One loop serves everyone, so one client's flood must not become everyone's wait. The scenario
("flood"): a hundred `/chat` subscribers, one more `/chat` client that sends one-byte messages
as fast as its socket takes them (each a frame for every subscriber), and a bystander on `/`
that sends a 32-byte echo every few milliseconds and times each round trip. The figure is the
bystander's worst round trip (and its p99) while the flood runs; the flood's own rate (messages
delivered to the subscribers per second) and the server's CPU are shown beside it.

echo_server runs twice: as it ships (its `/chat` rate limit closes the flooder with 1008 within
its first burst, which is the point of the limit), and with `--rate-limit 0`, which shows what
the loop's own fairness (bounded work per client per turn, one send per socket per turn) gives
when the flood is let through. The peers have no rate limit.

Not a chat benchmark: the flood's rate is reported, not judged; the bystander's wait is.
"""

from __future__ import annotations

import select
import socket
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.loadgen import (
    OP_TEXT,
    WORKER_START_TIMEOUT_S,
    BenchError,
    ConnectionLostError,
    Epoll,
    Opened,
    Peer,
    abort,
    client_frame,
    echo_reader,
    expect,
    filler,
    open_connections,
    percentile,
    reporting_errors,
    wait_until,
    workers,
)
from bench.servers import ECHO_SERVER, RunningServer, ServerSpec, echo_server

FLOOD = "flood"
SCENARIOS = (FLOOD,)
UNLIMITED = f"{ECHO_SERVER} --rate-limit 0"
FLOOD_BATCH_MESSAGES = 1000  # one-byte messages per write of the flooder
PROBE_BYTES = 32
RECV_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FloodPlan:
    subscribers: int
    warmup_s: float
    duration_s: float
    probe_interval_s: float
    probe_timeout_s: float  # an echo later than this ends the probing: the server starves it
    open_timeout_s: float


def flood_specs(servers: Sequence[ServerSpec]) -> list[ServerSpec]:
    """The servers of the "flood" scenario: each one, and echo_server also without its limit."""
    specs = list(servers)
    if any(spec.name == ECHO_SERVER for spec in servers):
        index = next(i for i, spec in enumerate(specs) if spec.name == ECHO_SERVER)
        unlimited = echo_server(
            UNLIMITED, "echo_server with the /chat rate limit off", "--rate-limit", "0"
        )
        specs.insert(index + 1, unlimited)
    return specs


@dataclass(frozen=True)
class FloodJob:
    host: str
    port: int
    subscribers: int
    open_timeout_s: float


def flood_worker(pipe: Connection, job: FloodJob) -> None:
    """The subscribers and the flooder, in one process: open, then flood and read until told."""
    opened = Opened()
    flooder: Peer | None = None
    with reporting_errors(pipe):
        try:
            reader = echo_reader(OP_TEXT, 1)
            opened = open_connections(
                job.host,
                job.port,
                "/chat",
                job.subscribers + 1,
                reader=reader,
                timeout_s=job.open_timeout_s,
            )
            pipe.send(("ready", len(opened.peers), opened.failed, opened.first_error))
            if pipe.recv()[0] != "go" or opened.failed:
                return
            flooder, *subscribers = opened.peers
            pipe.send(("result", flood(pipe, flooder, subscribers)))
        finally:
            for peer in opened.peers:
                abort(peer.sock)


def flood(pipe: Connection, flooder: Peer, subscribers: list[Peer]) -> dict[str, Any]:
    """Write the flood whenever the flooder's socket takes more; count what subscribers get.

    The flooder is a chat client too (it receives its own messages), so it is read as well. A
    server that closes the flooder (a rate limit) ends the flood, not the run.
    """
    batch = client_frame(OP_TEXT, b"x") * FLOOD_BATCH_MESSAGES
    buffer = bytearray(RECV_BYTES)
    view = memoryview(buffer)
    poller = Epoll()
    by_fd = {peer.sock.fileno(): peer for peer in (flooder, *subscribers)}
    flooder_fd = flooder.sock.fileno()
    sent = 0
    delivered = 0
    flooder_closed = ""
    pending = memoryview(batch)
    cpu_start = time.process_time()
    try:
        for fd in by_fd:
            events = select.EPOLLIN | (select.EPOLLOUT if fd == flooder_fd else 0)
            poller.epoll.register(fd, events)
        while not pipe.poll():
            for fd, events in poller.epoll.poll(0.05):
                peer = by_fd.get(fd)
                if peer is None:
                    continue
                if fd == flooder_fd and events & select.EPOLLOUT and not flooder_closed:
                    try:
                        done = peer.sock.send(pending)
                    except BlockingIOError:
                        done = 0
                    except OSError as error:
                        flooder_closed = f"send failed: {error.strerror or error}"
                        done = 0
                    sent += done
                    pending = pending[done:] or memoryview(batch)
                if not events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    continue
                try:
                    count = peer.read(buffer, view, poller)[1]
                except ConnectionLostError as error:
                    if peer is not flooder:
                        raise
                    flooder_closed = str(error)
                    poller.epoll.unregister(fd)
                    del by_fd[fd]
                    continue
                if peer is not flooder:
                    delivered += count
    finally:
        poller.epoll.close()
    return {
        "flood_sent": sent // len(client_frame(OP_TEXT, b"x")),
        "flood_delivered": delivered,
        "flooder_closed": flooder_closed,
        "cpu_s": time.process_time() - cpu_start,
    }


def open_bystander(server: RunningServer, plan: FloodPlan) -> socket.socket:
    """The bystander's connection on `/`, opened before the flood starts."""
    opened = open_connections(
        server.host,
        server.port,
        "/",
        1,
        reader=echo_reader(OP_TEXT, PROBE_BYTES),
        timeout_s=plan.open_timeout_s,
    )
    if not opened.peers:
        raise BenchError(f"the bystander could not connect: {opened.first_error}")
    sock = opened.peers[0].sock
    sock.setblocking(True)
    sock.settimeout(plan.probe_timeout_s)
    return sock


def probe(
    sock: socket.socket, plan: FloodPlan, warm_at: float, end_at: float
) -> tuple[array[float], bool]:
    """One echo every probe interval until `end_at`, each timed: the round trips of the echoes
    that came back after `warm_at` (so a wait that began in the warmup counts too), and whether
    one never came back within the plan's probe timeout (it then counts as that long, and
    probing ends: the figure is a lower bound)."""
    frame = client_frame(OP_TEXT, filler(PROBE_BYTES))
    expected = bytes([0x80 | OP_TEXT, PROBE_BYTES]) + filler(PROBE_BYTES)
    round_trips = array("d")
    next_at = time.monotonic()
    while next_at < end_at:
        wait_until(next_at)
        sent_at = time.monotonic()
        sock.sendall(frame)
        got = b""
        while len(got) < len(expected):
            try:
                chunk = sock.recv(len(expected) - len(got))
            except TimeoutError:
                round_trips.append(plan.probe_timeout_s)
                return round_trips, True
            if not chunk:
                raise BenchError("the server closed the bystander's connection")
            got += chunk
        if got != expected:
            raise BenchError(f"the bystander got {got[:16]!r}, not its echo")
        now = time.monotonic()
        if now >= warm_at:
            round_trips.append(now - sent_at)
        next_at = sent_at + plan.probe_interval_s
    return round_trips, False


def run_flood(server: RunningServer, plan: FloodPlan) -> dict[str, Any]:
    """Flood `server`'s /chat and time a bystander's echoes meanwhile; the raw numbers."""
    job = FloodJob(server.host, server.port, plan.subscribers, plan.open_timeout_s)
    with workers(flood_worker, [(job,)]) as pipes:
        (pipe,) = pipes
        ready = expect(pipe, "ready", WORKER_START_TIMEOUT_S + plan.open_timeout_s)
        if ready[1] < plan.subscribers + 1:
            raise BenchError(
                f"opened {ready[1]} of {plan.subscribers + 1} chat clients: {ready[3]}"
            )
        bystander = open_bystander(server, plan)
        try:
            pipe.send(("go",))  # the flood starts now; the bystander's figures after the warmup
            started = time.monotonic()
            cpu_start = server.cpu_seconds_each()
            warm_at = started + plan.warmup_s
            round_trips, timed_out = probe(bystander, plan, warm_at, warm_at + plan.duration_s)
            cpu_end = server.cpu_seconds_each()
            elapsed_s = time.monotonic() - started
        finally:
            abort(bystander)
        pipe.send(("stop",))
        result = expect(pipe, "result", 30.0)[1]
    ordered = sorted(round_trips)
    server_cpu = sum(cpu_end[pid] - cpu_start.get(pid, 0.0) for pid in cpu_end)
    return {
        "subscribers": plan.subscribers,
        "probes": len(ordered),
        "bystander_timed_out": timed_out,
        "bystander_max_ms": ordered[-1] * 1e3 if ordered else None,
        "bystander_p99_ms": percentile(ordered, 0.99) * 1e3 if ordered else None,
        "bystander_p50_ms": percentile(ordered, 0.5) * 1e3 if ordered else None,
        "flood_sent": result["flood_sent"],
        "flood_delivered_per_s": result["flood_delivered"] / elapsed_s,
        "flooder_closed": result["flooder_closed"],
        "elapsed_s": elapsed_s,
        "loadgen_cpu_cores": result["cpu_s"] / elapsed_s,
        "server_cpu_cores": server_cpu / elapsed_s,
    }


# The report: medians over rounds, and the table's lines.

SUMMARY_KEYS = (
    "bystander_max_ms",
    "bystander_p99_ms",
    "bystander_p50_ms",
    "flood_delivered_per_s",
    "server_cpu_cores",
    "loadgen_cpu_cores",
)


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per server: the medians over rounds, and whether the flooder was closed."""
    found: dict[str, Any] = {}
    for run in runs:
        if run["scenario"] != FLOOD:
            continue
        entry = found.setdefault(run["server"], {"runs": [], "errors": []})
        if run.get("error"):
            entry["errors"].append(f"round {run['round']}: {run['error']}")
        else:
            entry["runs"].append(run)
    for entry in found.values():
        good = entry.pop("runs")
        for key in SUMMARY_KEYS:
            values = sorted(run[key] for run in good if run.get(key) is not None)
            entry[key] = values[len(values) // 2] if values else None
        entry["bystander_timed_out"] = any(run["bystander_timed_out"] for run in good)
        entry["flooder_closed"] = next(
            (run["flooder_closed"] for run in good if run["flooder_closed"]), ""
        )
    return found


def table_lines(found: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    if not found:
        return []
    lines = [
        "",
        f"{'flood (fairness)':<28}{'worst ms':>10}{'p99 ms':>10}{'p50 ms':>10}"
        f"{'flood msg/s':>14}{'srv CPU':>10}  flooder",
    ]
    for name, entry in found.items():
        closed = entry["flooder_closed"]
        worst = _number(entry["bystander_max_ms"], 1)
        if entry["bystander_timed_out"]:
            worst = f">{plan['flood_probe_timeout_s'] * 1e3:,.0f}"  # a lower bound
        lines.append(
            f"{name:<28}{worst:>10}"
            f"{_number(entry['bystander_p99_ms'], 1):>10}"
            f"{_number(entry['bystander_p50_ms'], 2):>10}"
            f"{_number(entry['flood_delivered_per_s'], 0):>14}"
            f"{_number(entry['server_cpu_cores'], 2):>10}  "
            + (f"closed: {closed[:60]}" if closed else "flooding to the end")
            + (f"  ({len(entry['errors'])} failed)" if entry["errors"] else "")
        )
    lines.append(
        f"  a bystander's 32 B echo every {plan['flood_probe_interval_s'] * 1e3:g} ms while one "
        f"/chat client floods {plan['flood_subscribers']} subscribers with 1-byte messages: its "
        "round trips (worst, p99, p50; '>' : an echo never came back, so probing stopped) and "
        "the messages delivered to the subscribers per second."
    )
    return lines


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"
