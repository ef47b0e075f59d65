"""`echo-server demo`: two servers as one unit, run as real processes and stopped by PID.

A terminal's Ctrl-C (SIGINT to the whole foreground process group) stops it cleanly every time;
one server failing stops the other; no server outlives a killed demo. Each demo here runs in a
session of its own (`start_new_session`), so that `os.killpg` reaches exactly what a terminal
would reach, and nothing of pytest's.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from support import REPO, free_ports, open_websocket, port_is_free, wait_until

DEMO = (sys.executable, "-m", "echo_server", "demo")
START_TIMEOUT_S = 30.0
# From the stop signal to demo's exit, with two idle servers on this machine.
STOP_TIMEOUT_S = 2.0
# A server that fails at start, or is orphaned: how long it may take to be gone.
GONE_TIMEOUT_S = 10.0
CTRL_C_TRIES = 50
CTRL_C_TRIES_AT_ONCE = 4
PORT_ATTEMPTS = 3  # free ports are picked, then bound by the servers: another may take them
STARTED_RE = re.compile(r"started the (WebSocket server|page server) \(pid (\d+)\)")


def is_gone(pid: int) -> bool:
    """Not running: no such process, or a zombie (a parent that never reaps is not our bug)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@dataclass
class Demo:
    """One `echo-server demo` process, in its own session, and everything it printed."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """stdout and stderr, less the lines of `python -X importtime`."""
        text = self.log.read_text(errors="replace")
        return "".join(
            line for line in text.splitlines(keepends=True) if not line.startswith("import time:")
        )

    def ready(self) -> bool:
        return self.output().count(" listening on ") >= 2

    def pids(self) -> dict[str, int]:
        """The servers demo started, by name: 'WebSocket server', 'page server'."""
        return {name: int(pid) for name, pid in STARTED_RE.findall(self.output())}

    def wait_for(self, pattern: str, timeout_s: float = START_TIMEOUT_S) -> None:
        wait_until(
            lambda: (
                re.search(pattern, self.log.read_text(errors="replace"), re.MULTILINE) is not None
                or self.proc.poll() is not None
            ),
            timeout_s,
            f"{pattern!r} in demo's output",
        )

    def kill_everything(self) -> None:
        """The test's last word: nothing it started stays, whatever happened."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.pids().values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.proc.wait()


@contextlib.contextmanager
def demo_process(log: Path, *args: str, import_times: bool = False) -> Iterator[Demo]:
    python = [sys.executable, "-X", "importtime"] if import_times else [sys.executable]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*python, *DEMO[1:], *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its own process group, as a shell gives a command
        )
    demo = Demo(proc, log)
    try:
        yield demo
    finally:
        demo.kill_everything()


@contextlib.contextmanager
def ready_demo(folder: Path, *args: str) -> Iterator[Demo]:
    """A demo whose two servers both listen, on free ports (new ones if another took them)."""
    for attempt in range(PORT_ATTEMPTS):
        web_port, ws_port = free_ports(2)
        ports = ("--port", str(web_port), "--ws-port", str(ws_port))
        with demo_process(folder / f"demo-{attempt}.log", *ports, *args) as demo:
            demo.wait_for(" listening on .*\n(.*\n)*.* listening on ")
            if demo.ready():
                yield demo
                return
            assert "Address already in use" in demo.output(), demo.output()
    raise AssertionError(f"no free ports in {PORT_ATTEMPTS} attempts")


def stop_and_wait(demo: Demo, signum: int) -> tuple[int | None, float]:
    """Signal demo's process group as a terminal does; (status or None, seconds taken)."""
    os.killpg(demo.proc.pid, signum)
    signalled = time.monotonic()
    try:
        status: int | None = demo.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        status = None
    return status, time.monotonic() - signalled


# Ctrl-C.

# When the Ctrl-C comes: while demo itself is still importing (after its first line, which makes
# SIGINT an event), once it has started both servers but before they listen, or once they do.
STAGES = ("importing", "servers starting", "servers listening")


def ctrl_c_once(folder: Path, stage: str) -> tuple[str, int | None, float, str]:
    if stage == "servers listening":
        with ready_demo(folder) as demo:
            status, elapsed_s = stop_and_wait(demo, signal.SIGINT)
            return stage, status, elapsed_s, demo.output()
    web_port, ws_port = free_ports(2)
    ports = ("--port", str(web_port), "--ws-port", str(ws_port))
    with demo_process(folder / "demo.log", *ports, import_times=True) as demo:
        if stage == "importing":
            demo.wait_for(r"\|\s+websockets\.version$")
        else:
            demo.wait_for("started the page server")
        status, elapsed_s = stop_and_wait(demo, signal.SIGINT)
        return stage, status, elapsed_s, demo.output()


def test_ctrl_c_stops_demo_with_status_0_and_no_traceback_every_time(tmp_path: Path) -> None:
    # The servers used to get the terminal's SIGINT too, and demo's SIGTERM on top: about one
    # stop in twelve ended with status 1 or "Exception ignored ... SystemExit".
    def one_try(index: int) -> tuple[str, int | None, float, str]:
        folder = tmp_path / str(index)
        folder.mkdir()
        return ctrl_c_once(folder, STAGES[index % len(STAGES)])

    with ThreadPoolExecutor(CTRL_C_TRIES_AT_ONCE) as pool:
        outcomes = list(pool.map(one_try, range(CTRL_C_TRIES)))
    failures = [
        outcome
        for outcome in outcomes
        if outcome[1] != 0 or "Traceback" in outcome[3] or "Exception ignored" in outcome[3]
    ]
    # A status of None is a demo still running STOP_TIMEOUT_S after the signal.
    assert not failures, failures


def test_a_second_ctrl_c_kills_the_servers_at_once(tmp_path: Path) -> None:
    with ready_demo(tmp_path, "--close-timeout", "60") as demo:
        ws_port = int(re.findall(r"ws://127\.0\.0\.1:(\d+)/", demo.output())[0])
        # A client that never reads: the server waits the whole close timeout for its answer.
        with open_websocket(ws_port):
            os.killpg(demo.proc.pid, signal.SIGINT)
            demo.wait_for("stopping: closing 1 connection")
            assert demo.proc.poll() is None  # still waiting for that client, as it should
            status, _ = stop_and_wait(demo, signal.SIGINT)
            assert status == 1, demo.output()
        output = demo.output()
        ws_pid = demo.pids()["WebSocket server"]
    assert "Traceback" not in output
    wait_until(lambda: is_gone(ws_pid), GONE_TIMEOUT_S, "the WebSocket server is gone")


# One server fails.


@pytest.mark.parametrize(
    ("taken", "failing", "other"),
    [
        ("--ws-port", "WebSocket server", "page server"),
        ("--port", "page server", "WebSocket server"),
    ],
)
def test_a_server_that_cannot_listen_stops_demo_and_the_other_server(
    tmp_path: Path, taken: str, failing: str, other: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as occupant:
        web_port, ws_port = free_ports(2)
        ports = {"--port": str(web_port), "--ws-port": str(ws_port)}
        ports[taken] = str(occupant.getsockname()[1])
        args = [item for option in ports.items() for item in option]
        with demo_process(tmp_path / "demo.log", *args) as demo:
            status = demo.proc.wait(GONE_TIMEOUT_S)
            output = demo.output()
            pids = demo.pids()
    assert status == 1, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1, output
    assert errors[0].endswith("error: Address already in use"), output
    assert f"echo-server demo: the {failing} exited with status 1; stopping the {other}" in output
    assert is_gone(pids[other])  # demo waited for it before exiting


# A killed demo.


def test_a_killed_demo_leaves_no_websocket_server_running(tmp_path: Path) -> None:
    with ready_demo(tmp_path) as demo:
        pid = demo.pids()["WebSocket server"]
        demo.proc.kill()
        demo.proc.wait()
        wait_until(lambda: is_gone(pid), GONE_TIMEOUT_S, "the orphaned WebSocket server stops")
        assert "the parent process is gone: stopping" in demo.output()


def test_a_killed_demo_leaves_no_page_server_running(tmp_path: Path) -> None:
    # Needs the page server to follow its parent: run_web calls workers.follow_parent.
    with ready_demo(tmp_path) as demo:
        pid = demo.pids()["page server"]
        demo.proc.kill()
        demo.proc.wait()
        wait_until(lambda: is_gone(pid), GONE_TIMEOUT_S, "the orphaned page server stops")


def test_a_killed_demo_leaves_no_websocket_worker_running(tmp_path: Path) -> None:
    with ready_demo(tmp_path, "--workers", "2") as demo:
        ws_port = int(re.findall(r"ws://127\.0\.0\.1:(\d+)/", demo.output())[0])
        workers = [int(pid) for pid in re.findall(r"worker \d ready \(pid (\d+)\)", demo.output())]
        assert len(workers) == 2
        supervisor = demo.pids()["WebSocket server"]
        demo.proc.kill()
        demo.proc.wait()
        for pid in (supervisor, *workers):
            wait_until(partial(is_gone, pid), GONE_TIMEOUT_S, f"pid {pid} stops")
    assert port_is_free(ws_port)
