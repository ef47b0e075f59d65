"""A real `redis-server` for the tests: on a free port of 127.0.0.1, stopped by PID, never saved.

Debian's /usr/bin/redis-server (`apt-get install redis-server`; .ci/run installs it). Without it
the Redis tests skip with that reason, except in CI (CI set), where they fail. `RedisServer` can
be stopped and started again on the same port, to test what a client does while Redis is away.
It also holds a tiny blocking client, for a test to look at what is in Redis or to write there
what another program might (`pipeline` sends many commands in one write).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hiredis
import pytest
from support import free_port

from echo_server.cluster.redisbus import Arg, encode_command

REDIS_SERVER = Path("/usr/bin/redis-server")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def require_redis_server() -> None:
    if not REDIS_SERVER.exists():
        reason = f"{REDIS_SERVER} is missing (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def command(port: int, *args: Arg, db: int = 0, password: str | None = None) -> Any:
    """One command on a fresh blocking connection; its reply (hiredis's types)."""
    return pipeline(port, [args], db=db, password=password)[0]


def pipeline(
    port: int, commands: Sequence[Sequence[Arg]], db: int = 0, password: str | None = None
) -> list[Any]:
    """Commands sent in one write on a fresh blocking connection; their replies, in order."""
    with socket.create_connection(("127.0.0.1", port), timeout=STOP_TIMEOUT_S) as sock:
        setup: list[Sequence[Arg]] = [("AUTH", password)] if password else []
        setup += [("SELECT", db)] if db else []
        sock.sendall(b"".join(encode_command(c) for c in [*setup, *commands]))
        reader = hiredis.Reader()
        replies: list[Any] = []
        for _ in range(100_000):
            data = sock.recv(1024 * 1024)
            if not data:
                raise EOFError("redis closed the connection")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                replies.append(reply)
            if len(replies) >= len(setup) + len(commands):
                return replies[len(setup) :]
    raise AssertionError("not every reply in 100,000 reads")


class RedisServer:
    def __init__(self, *extra_args: str, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.extra_args = [*extra_args, *(["--requirepass", password] if password else [])]
        self.dir = tempfile.mkdtemp(prefix="echo_server-redis-")
        self.log_path = Path(self.dir) / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start on this server's port (again, after a stop) and wait until it answers PING."""
        argv = [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", self.dir, *self.extra_args]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{argv} exited:\n{self.log_path.read_text()}")
            try:
                if command(self.port, "PING", password=self.password) == b"PONG":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"redis-server gave no PONG in {START_TIMEOUT_S} s")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop by PID (SIGKILL: as in a crash) and wait until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def command(self, *args: Arg, db: int = 0) -> Any:
        return command(self.port, *args, db=db, password=self.password)

    def pipeline(self, commands: Sequence[Sequence[Arg]], db: int = 0) -> list[Any]:
        return pipeline(self.port, commands, db=db, password=self.password)


def running_redis(*extra_args: str, password: str | None = None) -> Iterator[RedisServer]:
    """For a fixture: a started RedisServer, stopped at the end."""
    require_redis_server()
    server = RedisServer(*extra_args, password=password)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
