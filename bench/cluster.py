"""The bench's two cluster rows: echo_server with `--workers 2` against one worker, and a
broadcast across echo_server processes joined through Redis (`--redis`).

Both are about echo_server alone (no peer has a cluster mode), so they are scenarios of their
own rather than columns of the per-server table:

- "workers": the small-message echo (the same plan as the "small" scenario) against
  `echo_server ws` and against `echo_server ws --workers 2`, back to back in each round.
- "redis": the broadcast (the same plan as "broadcast") in three layouts: one process without
  Redis; one process with `--redis`, so every message goes to Redis and back; and two processes
  with `--redis`, the subscribers split between them and the publisher on the first, so half of
  the deliveries cross from one process to the other through Redis.

Each measurement gets a fresh redis-server (Debian's /usr/bin/redis-server on a free loopback
port, nothing saved) and fresh echo_server processes, which are measured only once every one of
them says in /stats that its Redis pub/sub is up. Not a Redis client: one inline PING is all it
sends to Redis.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.servers import (
    ECHO_SERVER,
    HOST,
    READY_POLL_S,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    RunningServer,
    ServerSpec,
    echo_server,
    start_server,
)

WORKERS = "workers"
REDIS = "redis"
SCENARIOS = (WORKERS, REDIS)
WORKER_COUNT = 2
REDIS_SERVER = Path("/usr/bin/redis-server")
PING_TIMEOUT_S = 1.0


def worker_specs() -> list[ServerSpec]:
    """The "workers" scenario's two servers: one worker (plain `ws`), then WORKER_COUNT."""
    return [
        echo_server(ECHO_SERVER, "one process, one selector loop"),
        echo_server(
            f"{ECHO_SERVER} --workers {WORKER_COUNT}",
            f"{WORKER_COUNT} worker processes on one port (SO_REUSEPORT) under a supervisor",
            *("--workers", str(WORKER_COUNT)),
        ),
    ]


@dataclass(frozen=True)
class Layout:
    """One way of running the broadcast: how many echo_server processes, and whether they
    publish through Redis."""

    name: str
    processes: int
    redis: bool


LAYOUTS = (
    Layout("1 process, no Redis", 1, redis=False),
    Layout("1 process via Redis", 1, redis=True),
    Layout("2 processes via Redis", 2, redis=True),
)


def redis_unavailable() -> str | None:
    """Why the "redis" scenario cannot run here, or None when it can."""
    if not REDIS_SERVER.exists():
        return f"{REDIS_SERVER} is missing (apt-get install redis-server)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=PING_TIMEOUT_S) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server() -> Iterator[str]:
    """A fresh redis-server on a free loopback port, saving nothing; yields its URL and stops
    it by its PID at the end."""
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        port = free_port()
        argv = [str(REDIS_SERVER), "--port", str(port), "--bind", HOST]
        argv += ["--save", "", "--appendonly", "no", "--dir", workdir]
        log_path = Path(workdir) / "redis.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not answers_ping(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start:\n{log_path.read_text()}")
                time.sleep(READY_POLL_S)
            yield f"redis://{HOST}:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def redis_is_up(server: RunningServer) -> bool:
    """Whether the server's /stats says its Redis pub/sub is up (subscribed to every channel)."""
    url = f"http://{HOST}:{server.port}/stats"
    try:
        with urllib.request.urlopen(url, timeout=PING_TIMEOUT_S) as response:
            stats = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False
    cluster = stats.get("cluster")
    return isinstance(cluster, dict) and cluster.get("redis") == "up"


@contextmanager
def layout_servers(layout: Layout) -> Iterator[list[RunningServer]]:
    """The echo_server processes of `layout`, with their redis-server if it has one, ready;
    all stopped at the end. RuntimeError if any does not start or never reaches Redis."""
    with ExitStack() as stack:
        options: tuple[str, ...] = ()
        if layout.redis:
            options = ("--redis", stack.enter_context(redis_server()))
        spec = echo_server(ECHO_SERVER, layout.name, *options)
        servers: list[RunningServer] = []
        for _ in range(layout.processes):
            server = start_server(spec)
            stack.callback(server.stop)
            servers.append(server)
        deadline = time.monotonic() + START_TIMEOUT_S
        while layout.redis and not all(redis_is_up(server) for server in servers):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis pub/sub not up in /stats within {START_TIMEOUT_S:g} s")
            time.sleep(READY_POLL_S)
        yield servers


def redis_server_version() -> str | None:
    """redis-server's version, for the record."""
    if redis_unavailable() is not None:
        return None
    done = subprocess.run(
        [str(REDIS_SERVER), "--version"], capture_output=True, text=True, check=False
    )
    words = done.stdout.split()
    version = next((word for word in words if word.startswith("v=")), None)
    return version[2:] if version else (done.stdout.strip() or None)
