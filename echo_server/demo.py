"""`echo-server demo`: the WebSocket server and the page server as two child processes, one unit.

The parent starts both children, then only waits, in a `Loop`, for three kinds of event: a
child exited (SIGCHLD), SIGINT, SIGTERM. Signals are events handled between callbacks, never
exceptions. What it decides, and why:

- Each child runs in its own process group, so a terminal's Ctrl-C reaches this parent only,
  and each child is stopped exactly once, by one SIGTERM from here. (When the terminal's SIGINT
  reached all three processes, each child was stopped twice at nearly the same moment, which
  raced.) A second Ctrl-C or SIGTERM kills the children at once: the user wants out now.
- No child outlives the parent: each child gets a link (workers.py's `start_child` and
  `--control-fd`), our end of which closes when this process ends, even by SIGKILL; the child's
  `follow_parent` then stops it gracefully.
- The children inherit stdout and stderr: their ready lines, logs and one-line errors reach the
  user unchanged, and nothing is lost or blocked if this parent dies first.
- A child that exits when not asked to (its port taken, a crash) stops the unit: demo prints one
  line naming it (its own one-line error is already on stderr), stops the other child and exits
  with status 1, rather than run on half alive.
- Stopping is bounded: a child still running `stop_timeout_s` after its SIGTERM is killed, and
  the status is 1. Otherwise the status is 0 when both children stopped cleanly.

What it is not: a supervisor. Nothing is restarted (`ws --workers N` restarts its workers), and it
does not wait for the children's ready lines: each prints its own.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from echo_server.cluster import workers
from echo_server.core.loop import Loop, Timer

log = logging.getLogger(__name__)

CHILD_POLL_S = 0.2  # where there is no SIGCHLD: how often to look for a child's exit

PROG = "echo-server demo"


class Phase(enum.Enum):
    RUNNING = enum.auto()
    STOPPING = enum.auto()  # SIGTERM sent to every child; waiting for them to exit
    KILLING = enum.auto()  # SIGKILL sent (a second signal, or the stop timeout)


@dataclass
class Child:
    """One server process of the demo, and our end of its link."""

    name: str  # "WebSocket server", as the user reads it in our messages
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    link: socket.socket | None = None
    status: int | None = None  # the Popen return code, once it has exited


class Demo:
    """Start the children, wait for a signal or a child's exit, stop them all, report."""

    def __init__(
        self, children: Sequence[tuple[str, Sequence[str]]], *, stop_timeout_s: float
    ) -> None:
        self.children = [Child(name, list(command)) for name, command in children]
        self.stop_timeout_s = stop_timeout_s
        self.loop = Loop()
        self.phase = Phase.RUNNING
        self.failed = False  # a child failed, or had to be killed: exit status 1
        self._kill_timer: Timer | None = None

    def run(self) -> int:
        """Run until both children have exited; return the exit status."""
        # Handlers first: a child that dies at once, or an early Ctrl-C, must not be missed.
        if hasattr(signal, "SIGCHLD"):
            self.loop.on_signal(signal.SIGCHLD, self._reap)
        else:  # pragma: no cover - Windows: no signal says a child exited, so look
            self.loop.call_every(CHILD_POLL_S, self._reap)
        try:
            self.loop.run_until_signalled(lambda signum: self.stop(), on_ready=self._start_all)
        finally:
            self._kill_all()
            self.loop.close()
        return 1 if self.failed else 0

    def _start_all(self) -> None:
        for child in self.children:
            self._start(child)
            if self.phase is not Phase.RUNNING:
                break  # that child could not be started: the demo is over

    def _start(self, child: Child) -> None:
        try:
            child.process, child.link = workers.start_child(child.command, own_process_group=True)
        except OSError as error:
            self._say(f"cannot start the {child.name}: {error.strerror or error}")
            self.failed = True
            self.stop()
            return
        log.info("started the %s (pid %d)", child.name, child.process.pid)

    def live(self) -> list[Child]:
        return [c for c in self.children if c.process is not None and c.status is None]

    def _reap(self) -> None:
        for child in self.live():
            assert child.process is not None
            status = child.process.poll()
            if status is not None:
                self._exited(child, status)
        if not self.live():
            self.loop.stop()

    def _exited(self, child: Child, status: int) -> None:
        child.status = status
        if child.link is not None:
            child.link.close()
            child.link = None
        if self.phase is Phase.RUNNING:
            others = " and ".join(f"the {c.name}" for c in self.live()) or "the demo"
            self._say(f"the {child.name} {workers.describe_exit(status)}; stopping {others}")
            self.failed = True
            self.stop()
        elif status not in (0, -signal.SIGTERM) and self.phase is not Phase.KILLING:
            # -SIGTERM: our SIGTERM reached a child still starting, before it had a handler.
            self._say(f"the {child.name} {workers.describe_exit(status)} while stopping")
            self.failed = True

    def stop(self) -> None:
        """SIGTERM to every child; a second call (a second Ctrl-C) kills them instead."""
        if self.phase is Phase.RUNNING:
            self.phase = Phase.STOPPING
            for child in self.live():
                self._signal(child, signal.SIGTERM)
            self._kill_timer = self.loop.call_later(self.stop_timeout_s, self._stop_timed_out)
        elif self.phase is Phase.STOPPING:
            self.kill()
        if not self.live():
            self.loop.stop()

    def _stop_timed_out(self) -> None:
        for child in self.live():
            assert child.process is not None
            self._say(
                f"the {child.name} (pid {child.process.pid}) still runs "
                f"{self.stop_timeout_s:g} s after SIGTERM: killing it"
            )
        self.kill()

    def kill(self) -> None:
        self.phase = Phase.KILLING
        self.loop.cancel(self._kill_timer)
        for child in self.live():
            self._kill_group(child)
            self.failed = True

    @staticmethod
    def _signal(child: Child, signum: int) -> None:
        assert child.process is not None
        with contextlib.suppress(ProcessLookupError):  # exited, not reaped yet
            child.process.send_signal(signum)

    @staticmethod
    def _kill_group(child: Child) -> None:
        """SIGKILL the child and whatever it started (a `--workers` supervisor's workers)."""
        assert child.process is not None
        # Not reaped yet, so its pid, which is also its group's id, cannot have been reused.
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if hasattr(os, "killpg"):
                    os.killpg(child.process.pid, signal.SIGKILL)
                else:  # pragma: no cover - Windows: no process groups
                    child.process.kill()

    def _kill_all(self) -> None:
        """Leave no child behind, whatever ended the loop (an exception included)."""
        for child in self.live():
            assert child.process is not None
            self._kill_group(child)
            child.process.wait()
            child.status = child.process.returncode
        for child in self.children:
            if child.link is not None:
                child.link.close()
                child.link = None

    @staticmethod
    def _say(line: str) -> None:
        print(f"{PROG}: {line}", file=sys.stderr, flush=True)
