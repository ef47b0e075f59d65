"""The servers the bench compares, and starting, probing and stopping them as processes.

Every server is its own process on a free port: it is started with `--port 0` and prints a
ready line "NAME: listening on ws://HOST:PORT/", from which the port is read back (echo_server
prints it; the peers' wrappers in bench/servers/ print the same kind of line). A server is
measured from outside through /proc/PID (resident memory, CPU time) and stopped by its PID.

The peers are the plain simple-websocket-server 0.4.4 echo (the baseline echo_server is built
on), an asyncio server on the `websockets` package (on asyncio's loop and on uvloop's), `picows`
on uvloop (the fastest Python WebSocket server: the reference every judged ratio is taken
against; websockets is the second), and Node's `ws` when `node` is installed (its package is
installed into bench/node/ with `npm ci` when missing). picows and uvloop come with the `bench`
extra (`make dev`); without them those peers are reported as not available, with the reason.
Not a process supervisor: nothing here restarts anything.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WRAPPERS = REPO / "bench" / "servers"
NODE_DIR = REPO / "bench" / "node"
# ws, and bufferutil, ws's optional native masking that its README recommends for speed.
NODE_PACKAGES = ("ws", "bufferutil")
READY_RE = re.compile(r"listening on ws://(\[[^\]]+\]|[^:/\s]+):(\d+)/")
HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
# A server still closing its connections gracefully this long after SIGTERM (websockets waits
# for every close handshake, which a flooded client cannot answer) is killed: it was measured.
STOP_TIMEOUT_S = 3.0
NPM_TIMEOUT_S = 180.0
READY_POLL_S = 0.02
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")

ECHO_SERVER = "echo_server"
SWS = "simple-websocket-server"
WEBSOCKETS = "websockets"
WEBSOCKETS_UVLOOP = "websockets uvloop"
PICOWS = "picows"
NODE_WS = "node ws"
# The judged ratios are taken against these, in this order: the fastest Python peer first.
REFERENCES = (PICOWS, WEBSOCKETS)


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server, and what it is."""

    name: str
    argv: tuple[str, ...]
    description: str
    # Run under bench/profiled.py (`--profile`): told when the measuring window opens and closes.
    profiled: bool = False


def python_server(name: str, args: Sequence[str], description: str) -> ServerSpec:
    return ServerSpec(name, (sys.executable, *args), description)


def echo_server(name: str, description: str, *options: str) -> ServerSpec:
    """`python -m echo_server ws` with the bench's settings and `options` (--workers, --redis)."""
    return python_server(
        name,
        # The connection limit is raised above the 10,000 idle connections the bench opens
        # (the default is exactly 10,000); everything else is the default.
        [
            *("-m", "echo_server", "ws", "--host", HOST, "--port", "0"),
            *("--max-connections", "20000", "--log-level", "warning", *options),
        ],
        description,
    )


def all_servers() -> list[ServerSpec]:
    """Every server the bench knows, in the order each round runs them."""
    return [
        echo_server(
            ECHO_SERVER, "this project: one selector loop (epoll), python -m echo_server ws"
        ),
        python_server(
            SWS,
            [str(WRAPPERS / "sws_echo.py"), "--host", HOST, "--port", "0"],
            "simple-websocket-server 0.4.4 as shipped: select() loop, backlog 5",
        ),
        python_server(
            WEBSOCKETS,
            [str(WRAPPERS / "websockets_echo.py"), "--host", HOST, "--port", "0"],
            "websockets on asyncio's loop, compression off: the second reference",
        ),
        python_server(
            WEBSOCKETS_UVLOOP,
            [str(WRAPPERS / "websockets_echo.py"), "--host", HOST, "--port", "0", "--uvloop"],
            "websockets on uvloop's loop, compression off",
        ),
        python_server(
            PICOWS,
            [str(WRAPPERS / "picows_echo.py"), "--host", HOST, "--port", "0"],
            "picows (Cython) on uvloop with aiofastnet's transport: the reference, ratio 1.0",
        ),
        ServerSpec(
            NODE_WS,
            ("node", str(WRAPPERS / "node_ws.js"), "--host", HOST, "--port", "0"),
            "Node ws, compression off: the fastest peer, shows the load generator's headroom",
        ),
    ]


# The Python peers that need packages of the `bench` extra: (module, ...) each imports.
NEEDS_MODULES = {WEBSOCKETS_UVLOOP: ("uvloop",), PICOWS: ("picows", "uvloop")}


def modules_missing(modules: Sequence[str]) -> str | None:
    """Why a Python peer that imports `modules` cannot run here (some are not installed), or
    None when it can."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install -e '.[bench]', or make dev)"
    return None


def unavailable(name: str) -> str | None:
    """Why the server `name` cannot run here, or None when it can."""
    if name == NODE_WS:
        return node_ws_unavailable()
    return modules_missing(NEEDS_MODULES.get(name, ()))


def node_ws_unavailable(install: bool = True) -> str | None:
    """Why Node's ws cannot run here, or None when it can (after `npm ci` if needed)."""
    if shutil.which("node") is None:
        return "node is not installed"
    if all((NODE_DIR / "node_modules" / name / "package.json").is_file() for name in NODE_PACKAGES):
        return None
    if not install:
        return "bench/node/node_modules is missing (run npm ci in bench/node)"
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed, so ws cannot be installed into bench/node"
    print("bench: installing ws into bench/node (npm ci)", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(
            # No install scripts: bufferutil's only checks for the prebuilt addon it ships.
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"npm ci in bench/node took over {NPM_TIMEOUT_S:g} s"
    if done.returncode != 0:
        return f"npm ci in bench/node failed: {done.stderr.strip()[-300:]}"
    return None


def raise_open_files_limit() -> int:
    """Raise this process's soft descriptor limit to the hard one (children inherit it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def children(pid: int) -> list[int]:
    """The live child processes of `pid`, from /proc (empty if it has none or is gone)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in task.read_text().split()]
    return found


def rss_bytes(pid: int) -> int:
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0  # gone, or a zombie: it holds no memory


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of `pid` so far, from /proc/PID/stat (fields 14 and 15): the
    system part is the time in the kernel (the syscalls: send, recv, epoll)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    # The command name, in parentheses, may hold spaces: count fields after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS_PER_S, int(fields[12]) / CLOCK_TICKS_PER_S


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far."""
    return sum(cpu_times(pid))


@dataclass
class RunningServer:
    """One server process: where it listens, and its memory and CPU as /proc reports them."""

    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str = HOST
    port: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_status(self) -> int | None:
        return self.proc.poll()

    def pids(self) -> list[int]:
        """This server's process and its children (the workers of `--workers N`)."""
        return [self.pid, *children(self.pid)]

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children together."""
        return sum(rss_bytes(pid) for pid in self.pids())

    def cpu_seconds_each(self) -> dict[int, float]:
        """CPU time so far of the process and of each of its children, by PID."""
        return {pid: cpu_seconds(pid) for pid in self.pids()}

    def cpu_times_each(self) -> dict[int, tuple[float, float]]:
        """(user, system) CPU time so far of the process and of each of its children, by PID."""
        return {pid: cpu_times(pid) for pid in self.pids()}

    def cpu_seconds(self) -> float:
        """CPU time so far of the process and its children together (a child that has
        exited, and was restarted, is not counted)."""
        return sum(self.cpu_seconds_each().values())

    def window(self, opens: bool) -> None:
        """The measuring window opens (or closes): a profiled server starts (stops) profiling."""
        if self.spec.profiled and self.alive():
            self.proc.send_signal(signal.SIGUSR1 if opens else signal.SIGUSR2)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not exited in STOP_TIMEOUT_S; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_path.unlink(missing_ok=True)
        return self.proc.returncode


def start_server(spec: ServerSpec) -> RunningServer:
    """Start `spec` and wait for its ready line; raise RuntimeError with its output if none."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(
            spec.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
        )
    server = RunningServer(spec, proc, Path(log.name))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = READY_RE.search(server.output())
        if found:
            server.host = found.group(1).strip("[]")
            server.port = int(found.group(2))
            return server
        if proc.poll() is not None:
            break
        time.sleep(READY_POLL_S)
    output = server.output()
    server.stop()
    raise RuntimeError(f"{spec.name} printed no ready line:\n{output[-2000:]}")


# The 9.* cases send messages of up to 16 MiB; echo_server's default limit (1 MiB) would close
# them with 1009 by design, so the timing run raises it (the peers' limits are 32 MiB already).
AUTOBAHN_EXTRA_ARGS = {ECHO_SERVER: ("--max-message-size", "32MiB")}
AUTOBAHN_SUMMARY_RE = re.compile(r"(\d+) cases in ([\d.]+) s")


def autobahn_timing(
    spec: ServerSpec, cases: str = "9.*", timeout_s: float = 900.0
) -> dict[str, object]:
    """The hook for an Autobahn|Testsuite timing comparison: run `cases` against `spec`, timed.

    It runs conformance/run.py (which starts the server from its command, reads its ready
    line, drives the suite's fuzzing client and judges the report) and returns the wall time,
    the suite's own time for the cases when the harness prints it, and the harness's exit
    status (0 all green, 77 the suite is not installed: `make conformance` installs it). The
    9.* cases are the suite's own performance cases (large and fragmented messages). `make
    bench` does not call it by default; `python -m bench --autobahn '9.*'` does.
    """
    with tempfile.TemporaryDirectory(prefix="bench-autobahn-") as outdir:
        command = [
            sys.executable,
            str(REPO / "conformance" / "run.py"),
            "--server-cmd",
            shlex.join([*spec.argv, *AUTOBAHN_EXTRA_ARGS.get(spec.name, ())]),
            "--cases",
            cases,
            "--agent",
            spec.name.replace(" ", "-"),
            "--outdir",
            outdir,
            "--timeout",
            str(timeout_s),
            "--quiet",
        ]
        started = time.monotonic()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        elapsed_s = time.monotonic() - started
    summary = AUTOBAHN_SUMMARY_RE.search(done.stdout)
    return {
        "cases": cases,
        "seconds": round(elapsed_s, 3),
        "case_count": int(summary.group(1)) if summary else None,
        "cases_seconds": float(summary.group(2)) if summary else None,
        "exit_status": done.returncode,
        "green": done.returncode == 0,
        "installed": done.returncode != 77,
        "output_tail": done.stdout.strip()[-500:],
    }


def versions() -> dict[str, str | None]:
    """The version of every server's software, for the record."""

    def dist(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    node = shutil.which("node")
    node_version = None
    if node is not None:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
        node_version = done.stdout.strip() or None
    ws_version = None
    ws_package = NODE_DIR / "node_modules" / "ws" / "package.json"
    if ws_package.is_file():
        found = re.search(r'"version"\s*:\s*"([^"]+)"', ws_package.read_text())
        ws_version = found.group(1) if found else None
    return {
        ECHO_SERVER: dist("echo_server"),
        SWS: dist("simple-websocket-server"),
        WEBSOCKETS: dist("websockets"),
        PICOWS: dist("picows"),
        "uvloop": dist("uvloop"),
        "aiofastnet": dist("aiofastnet"),
        NODE_WS: ws_version,
        "node": node_version,
    }
