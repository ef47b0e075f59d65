"""The bench's fan-out row: how many chat messages a server delivers per second to many clients.

The scenario ("fanout"): a thousand `/chat` subscribers and one more `/chat` client, the
publisher, which sends 32 B messages closed-loop with a window: it keeps `in_flight` messages
in flight, a message being in flight until every subscriber has it, so it sends message k +
in_flight as soon as message k has reached the last subscriber. The server is never idle
waiting for the publisher, and never handed more than it can deliver. The figures: deliveries
per second (messages received by the subscribers, all of them counted), and the delivery
latency, from the moment the publisher handed a message to the kernel to the moment a
subscriber had it, over a sample of the subscribers (every `sample_every`th, all of their
deliveries), as p50 and p99; the server's CPU and the generator's beside them. Each of the
publisher's messages is its own write, as a browser or Node's `ws` sends.

echo_server runs with `--rate-limit 0` here (under the row's own name): as it ships, its `/chat`
rate limit closes a client that sends over 100 messages a second, as the publisher does; the
peers have no limit. Not the one-message broadcast (loadgen.run_broadcast), which times a
single message to everyone with nothing else in flight.
"""

from __future__ import annotations

import select
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.loadgen import (
    OP_TEXT,
    RECV_BUFFER_BYTES,
    BenchError,
    Epoll,
    Opened,
    Peer,
    abort,
    client_frame,
    echo_reader,
    filler,
    open_connections,
    open_publisher,
    percentile,
    reporting_errors,
    share,
    wait_opened,
    workers,
)
from bench.servers import ECHO_SERVER, RunningServer, ServerSpec, echo_server

FANOUT = "fanout"
SCENARIOS = (FANOUT,)
PAYLOAD_BYTES = 32
POLL_S = 0.05


@dataclass(frozen=True)
class FanoutPlan:
    path: str
    subscribers: int
    in_flight: int
    warmup_s: float
    duration_s: float
    processes: int
    sample_every: int
    open_timeout_s: float
    delivery_timeout_s: float  # no message completed for this long: the server is stuck


def fanout_specs(servers: Sequence[ServerSpec]) -> list[ServerSpec]:
    """The servers of the "fanout" scenario: echo_server with its /chat rate limit off (under
    its own name), the others as they are."""
    return [
        echo_server(ECHO_SERVER, spec.description + "; --rate-limit 0", "--rate-limit", "0")
        if spec.name == ECHO_SERVER
        else spec
        for spec in servers
    ]


@dataclass(frozen=True)
class FanoutJob:
    host: str
    port: int
    path: str
    subscribers: int
    sample_every: int
    open_timeout_s: float


def fanout_worker(pipe: Connection, job: FanoutJob) -> None:
    """Open this process's subscribers, then read them until told to stop."""
    opened = Opened()
    with reporting_errors(pipe):
        try:
            opened = open_connections(
                job.host,
                job.port,
                job.path,
                job.subscribers,
                reader=echo_reader(OP_TEXT, PAYLOAD_BYTES),
                timeout_s=job.open_timeout_s,
            )
            pipe.send(("ready", len(opened.peers), opened.failed, opened.first_error))
            command = pipe.recv()
            if command[0] == "go" and not opened.failed:
                _, warm_at, end_at = command
                pipe.send(("result", listen(pipe, opened.peers, job, warm_at, end_at)))
        finally:
            for peer in opened.peers:
                abort(peer.sock)


def listen(
    pipe: Connection, peers: list[Peer], job: FanoutJob, warm_at: float, end_at: float
) -> dict[str, Any]:
    """Read every subscriber; each time the slowest of them has one more message, tell the
    coordinator ("got", messages every one of ours has, when). Runs until told to stop.

    Messages arrive in order on each connection, so a subscriber's count of messages is the
    number of the next one. The slowest subscriber's count is kept with one counter per count
    (how many subscribers are at it), so the bookkeeping costs per read, not per message.
    """
    at_count = [len(peers)]  # at_count[n]: subscribers that have exactly n messages
    slowest = 0
    delivered = 0
    sampled = {id(peer): array("d") for peer in peers[:: job.sample_every]}
    buffer = bytearray(RECV_BUFFER_BYTES)
    view = memoryview(buffer)
    poller = Epoll()
    by_fd = {peer.sock.fileno(): peer for peer in peers}
    pipe_fd = pipe.fileno()
    cpu_start = 0.0
    measuring = False
    try:
        for fd in by_fd:
            poller.epoll.register(fd, select.EPOLLIN)
        poller.epoll.register(pipe_fd, select.EPOLLIN)
        while True:
            for fd, events in poller.epoll.poll(POLL_S):
                if fd == pipe_fd:
                    pipe.recv()  # "stop"
                    cpu_s = time.process_time() - cpu_start if measuring else 0.0
                    return {
                        "delivered": delivered,
                        "cpu_s": cpu_s,
                        "arrivals": [times.tobytes() for times in sampled.values()],
                    }
                peer = by_fd[fd]
                if events & select.EPOLLOUT:
                    peer.flush(poller)
                if not events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    continue
                count = peer.read(buffer, view, poller)[1]
                if not count:
                    continue
                now = time.monotonic()
                if not measuring and now >= warm_at:
                    measuring = True
                    cpu_start = time.process_time()
                if warm_at <= now < end_at:
                    delivered += count
                times = sampled.get(id(peer))
                if times is not None:
                    times.extend([now] * count)
                old = peer.received
                peer.received = new = old + count
                while len(at_count) <= new:
                    at_count.append(0)
                at_count[old] -= 1
                at_count[new] += 1
                if old == slowest and not at_count[old]:
                    while not at_count[slowest]:
                        slowest += 1
                    pipe.send(("got", slowest, now))
    finally:
        poller.epoll.close()


def result_after_gots(pipe: Connection, timeout_s: float = 30.0) -> dict[str, Any]:
    """A worker's result, after the "got" reports it sent before it read "stop"."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not pipe.poll(max(0.0, deadline - time.monotonic())):
            raise BenchError(f"a load generator process sent no result in {timeout_s:g} s")
        message: tuple[Any, ...] = pipe.recv()
        if message[0] == "result":
            result: dict[str, Any] = message[1]
            return result
        if message[0] != "got":
            raise BenchError(f"load generator: {message[1]}")


def run_fanout(server: RunningServer, plan: FanoutPlan) -> dict[str, Any]:
    """Publish on `server`'s /chat with `plan.in_flight` messages in flight; the raw numbers."""
    jobs = [
        (
            FanoutJob(
                server.host,
                server.port,
                plan.path,
                count,
                plan.sample_every,
                plan.open_timeout_s,
            ),
        )
        for count in share(plan.subscribers, plan.processes)
        if count
    ]
    with workers(fanout_worker, jobs) as pipes:
        opened = wait_opened(pipes, plan.subscribers, "subscribers", plan.open_timeout_s)
        publisher = open_publisher(
            server.host, server.port, plan.path, PAYLOAD_BYTES, plan.open_timeout_s
        )
        try:
            warm_at = time.monotonic() + plan.warmup_s
            end_at = warm_at + plan.duration_s
            for pipe in pipes:
                pipe.send(("go", warm_at, end_at))
            published, cpu = publish(server, publisher, pipes, plan, (warm_at, end_at))
            for pipe in pipes:
                pipe.send(("stop",))
            results = [result_after_gots(pipe) for pipe in pipes]
        finally:
            abort(publisher.sock)
    latencies = array("d")
    for result in results:
        for raw in result["arrivals"]:
            arrived = array("d")
            arrived.frombytes(raw)
            for seq, at in enumerate(arrived):
                if warm_at <= published[seq] < end_at:
                    latencies.append(at - published[seq])
    ordered = sorted(latencies)
    delivered = sum(result["delivered"] for result in results)
    return {
        "subscribers": opened,
        "in_flight": plan.in_flight,
        "published": len(published),
        "deliveries": delivered,
        "delivered_per_s": delivered / plan.duration_s,
        "latency_p50_ms": percentile(ordered, 0.5) * 1e3 if ordered else None,
        "latency_p99_ms": percentile(ordered, 0.99) * 1e3 if ordered else None,
        "latency_samples": len(ordered),
        "loadgen_cpu_cores": (sum(result["cpu_s"] for result in results) + cpu["loadgen"])
        / plan.duration_s,
        "loadgen_processes": len(results) + 1,
        "server_cpu_cores": cpu["server"] / plan.duration_s,
        "server_sys_cores": cpu["server_sys"] / plan.duration_s,
    }


def publish(
    server: RunningServer,
    publisher: Peer,
    pipes: list[Connection],
    plan: FanoutPlan,
    window: tuple[float, float],
) -> tuple[array[float], dict[str, float]]:
    """The publisher's loop, in this process: keep `plan.in_flight` messages in flight until
    the end of the `window` (warm_at, end_at); return when each message was handed to the
    kernel, and the CPU seconds of the server and of this loop during the window.

    The publisher is a chat client too, so its own messages come back to it: it reads them
    (and answers pings) so that the server is never held up by its full socket.
    """
    warm_at, end_at = window
    frame = client_frame(OP_TEXT, filler(PAYLOAD_BYTES))
    published = array("d")
    slowest = [0] * len(pipes)  # per worker: messages every one of its subscribers has
    buffer = bytearray(RECV_BUFFER_BYTES)
    view = memoryview(buffer)
    poller = Epoll()
    by_fd = {pipe.fileno(): index for index, pipe in enumerate(pipes)}
    publisher_fd = publisher.sock.fileno()
    completed = 0
    progress_at = time.monotonic()
    cpu: dict[str, float] = {"server": 0.0, "server_sys": 0.0, "loadgen": 0.0}
    server_start: dict[int, tuple[float, float]] | None = None
    own_start = 0.0

    def send_up_to(count: int) -> None:
        while len(published) < count:
            published.append(time.monotonic())
            publisher.write(frame, poller)

    try:
        poller.epoll.register(publisher_fd, select.EPOLLIN)
        for fd in by_fd:
            poller.epoll.register(fd, select.EPOLLIN)
        send_up_to(plan.in_flight)
        while True:
            now = time.monotonic()
            if server_start is None and now >= warm_at:
                server.window(opens=True)
                server_start = server.cpu_times_each()
                own_start = time.process_time()
            if now >= end_at:
                break
            if now - progress_at > plan.delivery_timeout_s:
                raise BenchError(
                    f"no message reached every subscriber in {plan.delivery_timeout_s:g} s "
                    f"({completed} of {len(published)} did)"
                )
            for fd, events in poller.epoll.poll(min(POLL_S, end_at - now)):
                if fd == publisher_fd:
                    if events & select.EPOLLOUT:
                        publisher.flush(poller)
                    if events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                        publisher.read(buffer, view, poller)
                    continue
                index = by_fd[fd]
                message = pipes[index].recv()
                if message[0] != "got":
                    raise BenchError(f"load generator: {message[1]}")
                slowest[index] = message[1]
                if min(slowest) > completed:
                    completed = min(slowest)
                    progress_at = message[2]
                    send_up_to(completed + plan.in_flight)
        if server_start is not None:
            server_end = server.cpu_times_each()
            server.window(opens=False)
            for pid, (user, system) in server_end.items():
                user_start, system_start = server_start.get(pid, (0.0, 0.0))
                cpu["server"] += user - user_start + system - system_start
                cpu["server_sys"] += system - system_start
            cpu["loadgen"] = time.process_time() - own_start
    finally:
        poller.epoll.close()
    return published, cpu
