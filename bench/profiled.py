"""A profiler that runs inside a bench server's process (`python -m bench --profile DIR`).

    python -m bench.profiled OUT.prof -m echo_server ws --port 0 ...
    python -m bench.profiled OUT.prof bench/servers/picows_echo.py --port 0

It runs the module or script after OUT.prof as `python` would, under `cProfile`, and writes the
statistics (pstats format) to OUT.prof at exit. SIGUSR1 clears them and starts profiling (the
bench sends it when its measuring window opens), SIGUSR2 stops it (when the window closes); a
process that gets neither is profiled from its start to its exit.

Why a deterministic profiler: it counts every call, so calls per message are exact, and it times
the C functions apart from the Python ones that call them (`socket.send`, `recv_into`,
`epoll.poll` are the syscalls). Its cost is a fixed amount per call, which makes functions that
are called often look dearer than they are: compare the calls, and read the times as shares. A
sampler on the process's CPU time (ITIMER_PROF) was tried: Python handles the signal at the next
function entry or loop jump, so a syscall's time lands on whatever function comes next. One from
outside (py-spy) samples the wall clock of a runnable thread, and on a busy machine a server is
preempted mostly at the end of a `send` that woke the client, so `send` looked several times
bigger than the kernel time it takes. Not part of echo_server: a bench tool.
"""

from __future__ import annotations

import atexit
import cProfile
import runpy
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

START_SIGNAL = signal.SIGUSR1
STOP_SIGNAL = signal.SIGUSR2


class Profiling:
    """One cProfile profiler, started and stopped by signals, saved at exit."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.profiler = cProfile.Profile()
        self.on = False

    def start(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self.stop()
        self.profiler = cProfile.Profile()  # a fresh one: only the window counts
        self.profiler.enable()
        self.on = True

    def stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        if self.on:
            self.profiler.disable()
            self.on = False

    def install(self) -> None:
        signal.signal(START_SIGNAL, self.start)
        signal.signal(STOP_SIGNAL, self.stop)
        atexit.register(self.save)
        self.start()

    def save(self) -> None:
        self.stop()
        self.profiler.dump_stats(self.out)


def main(argv: Sequence[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m bench.profiled OUT.prof (-m MODULE | SCRIPT) [ARG...]")
    out, *command = argv
    Profiling(Path(out)).install()
    if command[0] == "-m":
        sys.argv = [command[1], *command[2:]]
        runpy.run_module(command[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(command)
        sys.path.insert(0, str(Path(command[0]).resolve().parent))
        runpy.run_path(command[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
