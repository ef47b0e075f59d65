"""Where a server's time goes during a bench scenario: py-spy samples its process meanwhile.

`python -m bench --profile DIR` starts `py-spy record` on each Python server's process just
after the server is up and stops it when the scenario ends, so a profile covers opening the
connections too (their functions are separate in it, and a short part of the time). py-spy
samples the Python stack and the native one under it (`--native`), so a syscall shows as its
libc function (`send`, `recv`, `epoll_wait`) under the Python function that made it; it leaves
out samples where the server waits in its poller, so the shares are of the CPU time the server
spent. It pauses the process for each sample: sampling without pausing (`--nonblocking`) reads
a running stack, fails more often while Python code runs than while a syscall does, and so
overstates the syscalls. Each profile is kept as py-spy's collapsed stacks
(`SCENARIO-PATTERN-SERVER.txt`, for flamegraph.pl or speedscope) beside a summary of it
(`.summary.txt`): the functions with the most samples of their own, and with the most in all.

It is a tool for reading the server's hot path, not a measurement: a profiled run is slower,
and its figures are not comparable with an unprofiled one. py-spy comes with the `bench` extra.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.servers import RunningServer

SAMPLES_PER_S = 200
STOP_TIMEOUT_S = 20.0
TOP_FUNCTIONS = 25
LINE_RE = re.compile(r"(\([^():]*):\d+\)$")  # "f (file.py:12)" -> "f (file.py)"


def py_spy() -> str | None:
    """The py-spy program: beside this Python (the venv's), or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def unavailable() -> str | None:
    """Why no profile can be recorded here, or None when one can."""
    if py_spy() is None:
        return "py-spy is not installed (pip install -e '.[bench]', or make dev)"
    return None


@dataclass
class Recording:
    """One py-spy process sampling one server; `stop` ends it and writes the summary."""

    proc: subprocess.Popen[bytes]
    path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes what it has, then exits
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.path.is_file():
            summary = summarise(self.path.read_text())
            self.path.with_suffix(".summary.txt").write_text(summary)


class Profiler:
    """Starts a recording per (scenario, pattern, server) into `out`."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.program = py_spy()

    def start(self, server: RunningServer, scenario: str, pattern: str | None) -> Recording | None:
        """Sample `server`'s process, if it is a Python one (py-spy reads only CPython)."""
        if self.program is None or server.spec.argv[0] != sys.executable:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        name = "-".join(filter(None, [scenario, pattern, server.spec.name]))
        path = self.out / (name.replace(" ", "_").replace("/", "_") + ".txt")
        proc = subprocess.Popen(
            [
                self.program,
                "record",
                *("--pid", str(server.pid)),
                *("--rate", str(SAMPLES_PER_S)),
                "--native",
                "--function",
                *("--format", "raw"),
                *("--output", str(path)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        return Recording(proc, path)


def summarise(collapsed: str, top: int = TOP_FUNCTIONS) -> str:
    """py-spy's collapsed stacks ("frame;frame;... COUNT" lines) as two tables: the functions
    with the most samples of their own (self), and with the most in all (inclusive). A frame is
    "function (file:line)"; the line is dropped, so that a function counts once."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [LINE_RE.sub(r"\1)", frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return "no samples\n"
    lines = [f"{samples} samples (the server busy, not waiting in its poller)", "", "self:"]
    lines += [f"{100 * n / samples:6.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / samples:6.1f}%  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(lines) + "\n"
