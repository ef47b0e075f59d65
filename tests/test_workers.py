"""`--workers N`: worker processes sharing one port (SO_REUSEPORT) under a supervising parent.

Every test starts the real command (`python -m echo_server ws --workers 2 --port 0`) and looks at
it from outside: which process answered comes from `/stats` ("worker": index, pid, count), which
processes exist comes from /proc, and workers are killed by PID as an operator (or the OOM killer)
would. What is specified: one ready line once every worker listens; the kernel spreads connections
over all of them; a dead worker is restarted while the others keep serving, but not forever;
SIGTERM or SIGINT stops every worker gracefully (1001) and the parent exits 0; and killing the
parent outright does not leave workers serving on as orphans.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import StartServer
from support import REPO, ServerProcess, free_ports, port_is_free, run_cli, wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from echo_server.defaults import WORKER_MAX_RESTARTS as MAX_RESTARTS
from echo_server.defaults import WORKER_RESTART_WINDOW_S as RESTART_WINDOW_S

TIMEOUT_S = 10.0
# How many fresh connections it takes to meet every worker: the kernel picks a listener by a
# hash of the connection's addresses, so with 2 workers 40 connections all miss one in 2**-39.
SPREAD_CONNECTIONS = 40
RESTART_TIMEOUT_S = 20.0
RESTART_ATTEMPTS = 2000  # connections tried while waiting for a restarted worker to answer
EXIT_TIMEOUT_S = 20.0


def get_stats(port: int) -> dict[str, Any]:
    """GET /stats on a new connection, so that the kernel chooses a worker for it afresh."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", "/stats")
        response = connection.getresponse()
        assert response.status == 200
        stats = json.loads(response.read())
    finally:
        connection.close()
    assert isinstance(stats, dict)
    return stats


def workers_met(port: int, connections: int = SPREAD_CONNECTIONS) -> dict[int, int]:
    """The workers that answered `connections` fresh connections: {index: pid}."""
    met: dict[int, int] = {}
    for _ in range(connections):
        worker = get_stats(port)["worker"]
        met[worker["index"]] = worker["pid"]
    return met


def echo_once(port: int, text: str = "hi", host: str = "127.0.0.1") -> str:
    with connect(f"ws://{host}:{port}/", proxy=None, open_timeout=TIMEOUT_S) as ws:
        ws.send(text)
        reply = ws.recv(TIMEOUT_S)
    assert isinstance(reply, str)
    return reply


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (exited ones too, until they are reaped)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended while we looked
    return found


def is_running(pid: int) -> bool:
    """Alive and not a zombie (an exited child not reaped yet has closed all its sockets)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone, or going while being read
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def kill_worker(pid: int) -> None:
    """SIGKILL a worker, as the OOM killer would, and wait until it is dead (sockets closed)."""
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not is_running(pid), TIMEOUT_S, f"worker {pid} to die")


def wait_reaped(parent: int, pid: int) -> None:
    wait_until(lambda: pid not in children(parent), TIMEOUT_S, f"{parent} to reap {pid}")


def start_workers(start_server: StartServer, *args: str) -> ServerProcess:
    return start_server("ws", "--port", "0", "--workers", "2", *args)


def test_one_ready_line_once_every_worker_listens(start_server: StartServer) -> None:
    server = start_workers(start_server)
    output = server.output()
    assert output.count("listening on") == 1
    assert f"listening on ws://127.0.0.1:{server.port}/ (2 workers)" in output
    for index in (0, 1):
        # Each worker logged its own line before the parent printed the ready line.
        line = server.wait_for_output(rf"worker {index} ready \(pid (\d+)\)")
        assert output.index(line.group(0)) < output.index("listening on")


def test_the_parent_serves_nothing_and_has_one_child_per_worker(
    start_server: StartServer,
) -> None:
    server = start_workers(start_server)
    met = workers_met(server.port)
    assert server.pid not in met.values()
    assert set(met.values()) <= children(server.pid)
    assert len(children(server.pid)) == 2


def test_connections_are_spread_over_every_worker(start_server: StartServer) -> None:
    server = start_workers(start_server)
    met = workers_met(server.port)
    assert set(met) == {0, 1}
    assert len(set(met.values())) == 2
    assert get_stats(server.port)["worker"]["workers"] == 2


def test_every_connection_echoes_whichever_worker_takes_it(start_server: StartServer) -> None:
    server = start_workers(start_server)
    for number in range(20):
        assert echo_once(server.port, f"message {number}") == f"message {number}"


def test_without_workers_the_server_is_one_process_worker_0_of_1(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0")
    assert get_stats(server.port)["worker"] == {"index": 0, "pid": server.pid, "workers": 1}
    assert children(server.pid) == set()
    assert "workers" not in server.output()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_closes_clients_with_1001_stops_every_worker_and_exits_0(
    start_server: StartServer, signum: signal.Signals
) -> None:
    server = start_workers(start_server)
    worker_pids = set(workers_met(server.port).values())
    assert len(worker_pids) == 2
    with connect(server.url(), proxy=None, open_timeout=TIMEOUT_S) as ws:
        ws.send("before the stop")
        assert ws.recv(TIMEOUT_S) == "before the stop"
        assert server.stop(signum) == 0
        with pytest.raises(ConnectionClosed):
            ws.recv(TIMEOUT_S)
        assert ws.protocol.close_rcvd is not None
        assert ws.protocol.close_rcvd.code == 1001
    assert not any(is_running(pid) for pid in worker_pids)
    assert port_is_free(server.port)
    assert "Traceback" not in server.output()


def test_a_killed_worker_is_restarted_while_the_other_keeps_serving(
    start_server: StartServer,
) -> None:
    server = start_workers(start_server)
    before = workers_met(server.port)
    killed, survivor = before[0], before[1]
    kill_worker(killed)

    # From the moment it is dead, every connection is served (by the survivor, then by both),
    # until the restarted worker answers for slot 0.
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    replacement = None
    for _ in range(RESTART_ATTEMPTS):
        assert echo_once(server.port, "still here") == "still here"
        worker = get_stats(server.port)["worker"]
        if worker["index"] == 0:
            replacement = worker["pid"]
        if replacement is not None or time.monotonic() > deadline:
            break
    assert replacement is not None, server.output()
    assert replacement not in (killed, survivor)
    assert is_running(survivor)
    assert server.proc.poll() is None
    server.wait_for_output(rf"worker 0 \(pid {killed}\) was killed by SIGKILL; restarting it")
    assert server.output().count("listening on") == 1  # a restart prints no second ready line


def test_a_worker_that_keeps_dying_is_not_restarted_past_the_limit(
    start_server: StartServer,
) -> None:
    server = start_workers(start_server)
    survivor = workers_met(server.port)[1]
    for death in range(MAX_RESTARTS + 1):
        # The child of the parent that is not the survivor (nor one already killed) is slot 0.
        wait_until(
            lambda: len(children(server.pid) - {survivor}) == 1,
            RESTART_TIMEOUT_S,
            f"a worker 0 to kill (death {death})",
        )
        (victim,) = children(server.pid) - {survivor}
        kill_worker(victim)
        wait_reaped(server.pid, victim)
    server.wait_for_output(rf"restarted {MAX_RESTARTS} times in {RESTART_WINDOW_S:g} s, so not")
    assert children(server.pid) == {survivor}
    assert server.proc.poll() is None  # one worker is left: the parent carries on
    assert workers_met(server.port) == {1: survivor}
    assert echo_once(server.port) == "hi"


def test_workers_stop_by_themselves_when_the_parent_is_killed(start_server: StartServer) -> None:
    server = start_workers(start_server)
    worker_pids = set(workers_met(server.port).values())
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    wait_until(
        lambda: not any(is_running(pid) for pid in worker_pids),
        EXIT_TIMEOUT_S,
        "orphaned workers to stop",
    )
    server.wait_for_output(r"the supervisor is gone: stopping")
    assert port_is_free(server.port)


def test_a_worker_that_fails_before_listening_fails_the_start() -> None:
    # A worker command that exits at once, as a worker whose server cannot start would.
    script = textwrap.dedent(
        """
        import sys
        from echo_server.cluster.workers import supervise
        command = [sys.executable, "-c", "raise SystemExit(3)"]
        sys.exit(supervise("127.0.0.1", 0, count=2, command=command, stop_timeout_s=1.0,
                           on_ready=lambda port: print("ready", port)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "ready" not in result.stdout
    assert "exited with status 3 before listening: stopping" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_another_cluster_serves_is_refused_not_shared(start_server: StartServer) -> None:
    first = start_workers(start_server)
    result = run_cli(["ws", "--port", str(first.port), "--workers", "2"])
    assert result.returncode == 1
    assert "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(workers_met(first.port)) == 2


def test_a_bad_certificate_is_one_error_from_the_parent(tmp_path: Path) -> None:
    pem = tmp_path / "bad.pem"
    pem.write_text("not a certificate")
    result = run_cli(
        ["ws", "--port", "0", "--workers", "2", "--certfile", str(pem), "--keyfile", str(pem)]
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "worker" not in result.stderr  # no worker was started


@pytest.mark.parametrize(
    "args",
    [
        ["ws", "--workers", "0"],
        ["ws", "--workers", "lots"],
        ["ws", "--workers", "1000"],
        ["demo", "--workers", "-2"],
        ["web", "--workers", "2"],
        ["ws", "--worker-index", "0"],
        ["ws", "--control-fd", "3"],
    ],
)
def test_a_bad_worker_option_is_one_line_and_exit_status_2(args: list[str]) -> None:
    result = run_cli(args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0]


def test_workers_are_not_in_the_help_but_the_option_is() -> None:
    result = run_cli(["ws", "--help"])
    assert "--workers" in result.stdout
    assert "--worker-index" not in result.stdout
    assert "--control-fd" not in result.stdout


def test_lan_workers_serve_ipv4_and_ipv6(start_server: StartServer) -> None:
    server = start_workers(start_server, "--lan")
    assert "(2 workers)" in server.output()
    assert echo_once(server.port, host="127.0.0.1") == "hi"
    assert echo_once(server.port, host="[::1]") == "hi"


def test_demo_runs_its_websocket_server_with_workers(start_server: StartServer) -> None:
    web_port, ws_port = free_ports(2)
    demo = start_server(
        "demo", "--port", str(web_port), "--ws-port", str(ws_port), "--workers", "2", expect_urls=2
    )
    assert "(2 workers)" in demo.output()
    assert set(workers_met(ws_port)) == {0, 1}
    assert echo_once(ws_port) == "hi"
    assert demo.stop() == 0
    assert port_is_free(ws_port)
