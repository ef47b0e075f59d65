"""Helpers the tests share: start a real echo_server process on a free port, stop it by PID.

A server is started with `--port 0`, so the kernel picks a free ephemeral port; the port is read
back from the ready line the server prints ("... listening on ws://127.0.0.1:40123/"). Output goes
to a file, not a pipe, so a chatty server can never block on a full pipe nobody reads.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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
        """Wait until the output matches `pattern`; fail showing the output if it never does."""
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
                message = f"{self.argv} ignored signal {signum}:\n{self.output()}"
                raise AssertionError(message) from None
        return self.proc.returncode


ECHO_SERVER = (sys.executable, "-m", "echo_server")


def start(
    args: Sequence[str],
    *,
    expect_urls: int = 1,
    command: Sequence[str] = ECHO_SERVER,
    open_files_limit: int | None = None,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start `python -m echo_server ARGS` (or another command) and wait for its ready line(s).

    `open_files_limit` sets the child's hard RLIMIT_NOFILE, to run it out of descriptors; `env`
    adds to (or overrides) this process's environment.
    """
    limit = [] if open_files_limit is None else ["prlimit", f"--nofile={open_files_limit}"]
    argv = [*limit, *command, *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}

    with tempfile.NamedTemporaryFile(prefix="echo_server-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
        )
    server = ServerProcess(argv, proc, Path(log.name))
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


def run_cli(
    args: Sequence[str], timeout_s: float = 30.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m echo_server ARGS` to completion and capture what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "echo_server", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
        check=False,
        env={**os.environ, **(env or {})},
    )


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for a command that cannot take 0."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` different free ports, held open together while they are picked."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens there, and a server could bind it again (as servers do, SO_REUSEADDR)."""
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            return False
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


# A raw client: exact bytes on the wire, for the rules a well-behaved library would never break.

UPGRADE_REQUEST = (
    "GET {path} HTTP/1.1\r\n"
    "Host: 127.0.0.1:{port}\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "{extra}"
    "\r\n"
)


def upgrade_request(port: int, path: str = "/", extra: str = "") -> bytes:
    return UPGRADE_REQUEST.format(path=path, port=port, extra=extra).encode()


def http_exchange(port: int, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def open_websocket(port: int, path: str = "/", timeout_s: float = 10.0) -> socket.socket:
    """A blocking socket that has completed the upgrade (101 read, nothing more)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.sendall(upgrade_request(port, path))
    head = b""
    while b"\r\n\r\n" not in head:
        byte = sock.recv(1)  # one byte at a time: no frame bytes may be eaten with the head
        if not byte:
            raise AssertionError(f"closed during handshake: {head!r}")
        head += byte
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"peer closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """Read one server frame (unmasked): (opcode, payload)."""
    first, second = recv_exactly(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(recv_exactly(sock, 2), "big")
    elif length == 127:
        length = int.from_bytes(recv_exactly(sock, 8), "big")
    return first & 0x0F, recv_exactly(sock, length)


def read_close_code(sock: socket.socket) -> int:
    """Skip data frames until the server's close frame; return its code (1005 if empty)."""
    for _ in range(10_000):
        opcode, payload = read_frame(sock)
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big") if payload else 1005
    raise AssertionError("no close frame in 10,000 frames")


def socket_inode(local_port: int, remote_port: int) -> int:
    """The kernel's inode of the TCP socket from `local_port` to `remote_port` on this machine
    (/proc/net/tcp and tcp6), 0 if there is none or it has no descriptor any more."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)  # the column names
            for line in lines:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                if (
                    int(local.rsplit(":", 1)[1], 16) == local_port
                    and int(remote.rsplit(":", 1)[1], 16) == remote_port
                    and inode
                ):
                    return inode
    return 0


def holds_socket(pid: int, inode: int) -> bool:
    """Whether process `pid` has a descriptor open on the socket with that inode.

    Exact where counting descriptors is not: a server may open others meanwhile (a name
    lookup off the loop holds a UDP socket for as long as the resolver takes)."""
    target = f"socket:[{inode}]"
    fds = f"/proc/{pid}/fd"
    for fd in os.listdir(fds):
        try:
            if os.readlink(f"{fds}/{fd}") == target:
                return True
        except FileNotFoundError:
            continue  # closed while we looked
    return False


def server_side_inode(server_port: int, client: socket.socket) -> int:
    """The inode of the server's end of `client`'s connection (0 when it has none)."""
    return socket_inode(server_port, client.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """What the process holds in memory now (VmRSS)."""
    return _proc_status_bytes(pid, "VmRSS")


def peak_rss_bytes(pid: int) -> int:
    """The most the process has ever held in memory (VmHWM, the kernel's high-water mark)."""
    return _proc_status_bytes(pid, "VmHWM")


def _proc_status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def publish_point(server: ServerProcess, series: str, body: str, timeout_s: float = 10.0) -> None:
    """POST one point (`body`: a number or its JSON object) to `/publish/SERIES`; 200 or fail."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout_s)
    try:
        connection.request("POST", f"/publish/{series}", body=body.encode())
        response = connection.getresponse()
        assert response.status == 200, response.read()
    finally:
        connection.close()
