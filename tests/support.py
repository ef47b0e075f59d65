"""Helpers the tests share: start a real echo_server process on a free port, stop it by PID.

A server is started with `--port 0`, so the kernel picks a free ephemeral port; the port is read
back from the ready line the server prints ("... listening on ws://127.0.0.1:40123/"). Output goes
to a file, not a pipe, so a chatty server can never block on a full pipe nobody reads.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READY_RE = re.compile(r"listening on (\w+)://(\[[^\]]+\]|[^:/\s]+):(\d+)/")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


@dataclass
class ServerProcess:
    """One running `python -m echo_server ...` process and what it printed."""

    argv: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    urls: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        return self.urls[0][2]

    @property
    def host(self) -> str:
        return self.urls[0][1]

    def url(self, path: str = "/") -> str:
        scheme, host, port = self.urls[0]
        return f"{scheme}://{host}:{port}{path}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout_s: float = 10.0) -> re.Match[str]:
        """Wait until the server's output matches `pattern`; fail with the output if it never does."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = regex.search(self.output())
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {pattern!r} in output of {self.argv}:\n{self.output()}")

    def send_signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Stop the process by PID and return its exit status (killing it if it hangs)."""
        if self.proc.poll() is None:
            self.send_signal(signum)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.argv} ignored signal {signum}:\n{self.output()}")
        return self.proc.returncode


def start(
    args: Sequence[str],
    *,
    expect_urls: int = 1,
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> ServerProcess:
    """Start `python -m echo_server ARGS` and wait for its ready line(s)."""
    argv = [sys.executable, "-m", "echo_server", *args]
    log = tempfile.NamedTemporaryFile(prefix="echo_server-", suffix=".log", delete=False)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=stdin, cwd=REPO, env=full_env
    )
    server = ServerProcess(argv, proc, Path(log.name))
    log.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = READY_RE.findall(server.output())
        if len(found) >= expect_urls:
            server.urls = [(scheme, host, int(port)) for scheme, host, port in found]
            return server
        if proc.poll() is not None:
            raise AssertionError(f"{argv} exited with {proc.returncode}:\n{server.output()}")
        time.sleep(0.02)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"{argv} printed no ready line in {START_TIMEOUT_S} s:\n{server.output()}")


def run_cli(args: Sequence[str], timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run `python -m echo_server ARGS` to completion and capture what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "echo_server", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
        check=False,
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def recv_until(sock: socket.socket, marker: bytes, timeout_s: float = 10.0) -> bytes:
    """Read from a blocking socket until `marker` is seen or the peer closes."""
    sock.settimeout(timeout_s)
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
