"""`--workers N`: N server processes sharing one port, and the parent that supervises them.

One select loop uses one core. With `--workers N` the `ws` command becomes a supervisor: it
reserves the port, starts N fresh interpreters (`python -m echo_server ws ... --worker-index I`),
each an ordinary single-threaded `Server` whose listener sets SO_REUSEPORT, so that the kernel
spreads new connections over them. The supervisor serves nothing itself. It prints the one ready
line once every worker listens, restarts a worker that dies (at most WORKER_MAX_RESTARTS times in
WORKER_RESTART_WINDOW_S, see defaults.py; then that slot stays empty), and on SIGINT or SIGTERM
forwards SIGTERM, waits
for every worker's graceful 1001 close, and exits 0.

How the two sides talk: each worker gets one end of a socket pair (`--control-fd`). The worker
writes `ready` on it once it listens; the supervisor writes nothing, so the worker's end becomes
readable only when the supervisor is gone (even killed with SIGKILL), and the worker then stops
gracefully instead of serving on as an orphan. The same link serves any parent and child:
`start_child` is the parent's side, `follow_parent` the child's (`demo` uses both for its two
servers, and a `ws --workers N` supervisor started by `demo` follows `demo` the same way).

What it is not: a load balancer (the kernel spreads connections, by a hash of their addresses,
not by load) nor a way to share state. Each worker has its own chat, tick and statistics: a
chat message reaches the chat clients of the worker that received it, and `/stats` counts one
worker (it says which, under "worker"). Linux (and other systems with SO_REUSEPORT) only.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from echo_server import defaults
from echo_server.core.listen import bound_socket
from echo_server.core.loop import EVENT_READ, Loop, Timer

if TYPE_CHECKING:
    from echo_server.core.server import Server

log = logging.getLogger(__name__)

READY = b"ready\n"
PROBE_TIMEOUT_S = 1.0

WORKER_INDEX_OPTION = "--worker-index"
CONTROL_FD_OPTION = "--control-fd"


def worker_count(text: str) -> int:
    """The argument type of `--workers`: 1 to defaults.MAX_WORKERS."""
    try:
        count = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= count <= defaults.MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"workers must be 1 to {defaults.MAX_WORKERS}: {count}")
    if count > 1 and not hasattr(socket, "SO_REUSEPORT"):
        raise argparse.ArgumentTypeError("this system has no SO_REUSEPORT to share a port")
    return count


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """The hidden options the supervisor gives each worker (not for people: no help shown)."""
    parser.add_argument(WORKER_INDEX_OPTION, type=int, default=None, help=argparse.SUPPRESS)
    add_control_option(parser)


# The supervisor's side.


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (host, port) with SO_REUSEPORT without listening, and return the socket.

    While it is open the port stays ours (port 0 becomes a real one that the workers can be
    told), yet it takes no connections: the kernel only hands them to sockets that listen.
    """
    if port != 0 and someone_listens(host, port):
        # Another process of this user with SO_REUSEPORT (an earlier `--workers` run) would
        # silently share the port with us instead of the bind failing: refuse as a bind would.
        raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
    return bound_socket(host, port, reuse_port=True)


def someone_listens(host: str, port: int) -> bool:
    wildcards = {"::": ("::1", "127.0.0.1"), "0.0.0.0": ("127.0.0.1",), "": ("127.0.0.1",)}
    for address in wildcards.get(host, (host,)):
        with (
            contextlib.suppress(OSError),
            socket.create_connection((address, port), PROBE_TIMEOUT_S),
        ):
            return True
    return False


@dataclass
class Slot:
    """One worker position: the process now in it, and when it was last restarted."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    control: socket.socket | None = None
    ready: bool = False
    restarts_s: collections.deque[float] = field(default_factory=collections.deque)


def describe_exit(status: int) -> str:
    """A Popen return code in words: "exited with status 1", "was killed by SIGKILL"."""
    if status >= 0:
        return f"exited with status {status}"
    try:
        return f"was killed by {signal.Signals(-status).name}"
    except ValueError:  # a real-time signal, which has no name
        return f"was killed by signal {-status}"


class Supervisor:
    """Start, watch, restart and stop the workers; its loop only waits on them and on signals."""

    def __init__(
        self,
        command: Sequence[str],
        port: int,
        count: int,
        *,
        stop_timeout_s: float,
        on_ready: Callable[[], None],
        loop: Loop | None = None,
    ) -> None:
        self.command = list(command)  # `python -m echo_server ws ...`, without worker options
        self.port = port
        self.slots = [Slot(index) for index in range(count)]
        self.stop_timeout_s = stop_timeout_s
        self.on_ready = on_ready
        self.loop = loop or Loop()
        self.status = 0
        self.announced = False
        self.stopping = False
        self._deadline: Timer | None = None

    def run(self) -> int:
        """Start every worker and supervise them until stopped; return the exit status."""
        # Handlers first: a worker that dies at once, or a Ctrl-C, must not be missed.
        self.loop.on_signal(signal.SIGCHLD, self._reap)
        try:
            self.loop.run_until_signalled(lambda signum: self.stop(), on_ready=self._start_all)
        finally:
            self._kill_all()
            self.loop.close()
        return self.status

    def _start_all(self) -> None:
        for slot in self.slots:
            self._spawn(slot)
        self._deadline = self.loop.call_later(
            defaults.WORKER_START_TIMEOUT_S, self._start_timed_out
        )

    def live(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.process is not None]

    def _spawn(self, slot: Slot) -> None:
        command = [
            *self.command,
            *("--port", str(self.port), "--workers", str(len(self.slots))),
            *(WORKER_INDEX_OPTION, str(slot.index)),
        ]
        slot.process, ours = start_child(command)
        slot.control = ours
        slot.ready = False
        self.loop.set_interest(ours, EVENT_READ, lambda mask: self._on_control(slot))

    def _on_control(self, slot: Slot) -> None:
        assert slot.control is not None
        try:
            data = slot.control.recv(len(READY))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            # The worker writes only READY, once; it cannot be split: it is tiny and one send.
            slot.ready = True
            if not self.announced and all(slot.ready for slot in self.slots):
                self.announced = True
                self.loop.cancel(self._deadline)
                self.on_ready()
        elif not data:
            # The worker's end closed: it is exiting. SIGCHLD tells us when it has exited.
            self._close_control(slot)

    def _close_control(self, slot: Slot) -> None:
        if slot.control is not None:
            self.loop.forget(slot.control)
            slot.control.close()
            slot.control = None

    def _reap(self) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is not None:
                self._exited(slot, slot.process.pid, slot.process.returncode)

    def _exited(self, slot: Slot, pid: int, status: int) -> None:
        slot.process = None
        self._close_control(slot)
        if self.stopping:
            if status not in (0, -signal.SIGTERM):
                log.warning(
                    "worker %d (pid %d) %s while stopping", slot.index, pid, describe_exit(status)
                )
                self.status = 1
            if not self.live():
                self.loop.stop()
            return
        if not self.announced:
            log.error(
                "worker %d (pid %d) %s before listening: stopping",
                slot.index,
                pid,
                describe_exit(status),
            )
            self.status = 1
            self.stop()
            return
        self._restart(slot, pid, status)

    def _restart(self, slot: Slot, pid: int, status: int) -> None:
        now = self.loop.time()
        while slot.restarts_s and now - slot.restarts_s[0] > defaults.WORKER_RESTART_WINDOW_S:
            slot.restarts_s.popleft()
        if len(slot.restarts_s) >= defaults.WORKER_MAX_RESTARTS:
            log.error(
                "worker %d (pid %d) %s; restarted %d times in %g s, so not again",
                *(
                    slot.index,
                    pid,
                    describe_exit(status),
                    defaults.WORKER_MAX_RESTARTS,
                    defaults.WORKER_RESTART_WINDOW_S,
                ),
            )
        else:
            slot.restarts_s.append(now)
            log.warning(
                "worker %d (pid %d) %s; restarting it", slot.index, pid, describe_exit(status)
            )
            try:
                self._spawn(slot)
            except OSError as error:
                log.error("worker %d could not be restarted: %s", slot.index, error)
        if not self.live():
            log.error("no worker left: stopping")
            self.status = 1
            self.stop()

    def _start_timed_out(self) -> None:
        waiting = [slot.index for slot in self.slots if not slot.ready]
        log.error(
            "workers %s not listening after %g s: stopping",
            waiting,
            defaults.WORKER_START_TIMEOUT_S,
        )
        self.status = 1
        self.stop()

    def stop(self) -> None:
        """Forward SIGTERM to every worker; the loop ends once they have all exited."""
        if self.stopping:
            return
        self.stopping = True
        self.loop.cancel(self._deadline)
        live = self.live()
        log.info("stopping %d worker(s)", len(live))
        for slot in live:
            assert slot.process is not None
            with contextlib.suppress(ProcessLookupError):
                slot.process.send_signal(signal.SIGTERM)
        if not live:
            self.loop.stop()
            return
        self._deadline = self.loop.call_later(self.stop_timeout_s, self._kill_stragglers)

    def _kill_stragglers(self) -> None:
        for slot in self.live():
            assert slot.process is not None
            log.warning(
                "worker %d (pid %d) still running after %g s: killing it",
                *(slot.index, slot.process.pid, self.stop_timeout_s),
            )
            slot.process.kill()
        self.status = 1

    def _kill_all(self) -> None:
        """Leave no worker behind, whatever ended the loop (an exception included)."""
        for slot in self.live():
            assert slot.process is not None
            slot.process.kill()
            slot.process.wait()
            slot.process = None
        for slot in self.slots:
            self._close_control(slot)


def supervise(
    host: str,
    port: int,
    *,
    count: int,
    command: Sequence[str],
    stop_timeout_s: float,
    on_ready: Callable[[int], None],
    control_fd: int | None = None,
) -> int:
    """Run `count` workers of `command` on (host, port); `on_ready(port)` once all listen.

    `control_fd`: this supervisor's own link to a parent (`demo`), told `ready` once every
    worker listens; the supervisor stops its workers when that parent is gone.
    """
    reservation = reserve_port(host, port)
    link = None if control_fd is None else ParentLink(control_fd)
    try:
        actual_port: int = reservation.getsockname()[1]

        def ready() -> None:
            on_ready(actual_port)
            if link is not None:
                link.say_ready()

        supervisor = Supervisor(
            command,
            actual_port,
            count,
            stop_timeout_s=stop_timeout_s + defaults.WORKER_STOP_MARGIN_S,
            on_ready=ready,
        )
        if link is not None:
            link.watch(supervisor.loop, supervisor.stop, "the parent process is gone")
        return supervisor.run()
    finally:
        if link is not None:
            link.close()
        reservation.close()


def start_child(
    command: Sequence[str], *, own_process_group: bool = False
) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start `command` with `--control-fd N` added; return it and our end of its link.

    Keep our end open while the child should run: it closes when this process ends, however it
    ends, and the child's `follow_parent` then stops it. `own_process_group`: a terminal's
    Ctrl-C then reaches only this process, which decides how to stop the child.
    """
    ours, theirs = socket.socketpair()
    posix = os.name == "posix"  # descriptors passed by number, and process groups, are POSIX
    try:
        process = subprocess.Popen(
            [*command, CONTROL_FD_OPTION, str(theirs.fileno())] if posix else list(command),
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),) if posix else (),
            process_group=0 if own_process_group and posix else None,
        )
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()  # the child has its copy; ours must go, or its EOF would never come
    ours.setblocking(False)
    return process, ours


# The child's side (a worker, or a server started by `demo`).


def add_control_option(parser: argparse.ArgumentParser) -> None:
    """The hidden `--control-fd` a parent gives its child (see `start_child`); no help shown."""
    parser.add_argument(
        CONTROL_FD_OPTION, type=control_socket_fd, default=None, help=argparse.SUPPRESS
    )


def control_socket_fd(text: str) -> int:
    """The argument type of `--control-fd`: an open socket, so that a stray use is a usage error."""
    try:
        fd = int(text, 10)
        is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
    except (ValueError, OSError, OverflowError):
        is_socket = False
    if not is_socket:
        raise argparse.ArgumentTypeError(f"not a control socket: {text!r}")
    return fd


def without_control_option(argv: Sequence[str]) -> list[str]:
    """`argv` less `--control-fd N`: what a supervisor passes on to its own workers."""
    kept: list[str] = []
    skip_value = False
    for item in argv:
        if skip_value:
            skip_value = False
        elif item == CONTROL_FD_OPTION:
            skip_value = True
        elif not item.startswith(CONTROL_FD_OPTION + "="):
            kept.append(item)
    return kept


class ParentLink:
    """The child's end of the link: say `ready` once, and learn when the parent is gone."""

    def __init__(self, control_fd: int) -> None:
        self.control = socket.socket(fileno=control_fd)
        self.control.setblocking(False)
        self._loop: Loop | None = None

    def say_ready(self) -> None:
        # Tiny, and the first thing ever written: it fits the empty buffer, so it never blocks.
        # A parent already gone cannot read it; the EOF that watch() sees says so.
        with contextlib.suppress(OSError):
            self.control.send(READY)

    def watch(
        self, loop: Loop, on_gone: Callable[[], None], gone: str = "the parent process is gone"
    ) -> None:
        """Call `on_gone` in `loop` when the parent's end closes (it sends nothing else).

        `gone` is the warning logged then, before ": stopping".
        """
        self._loop = loop

        def on_control(mask: int) -> None:
            try:
                if self.control.recv(64):
                    return  # the parent sends nothing today; ignore what a later one might
            except BlockingIOError:
                return
            except OSError:
                pass
            loop.forget(self.control)
            log.warning("%s: stopping", gone)
            on_gone()

        loop.set_interest(self.control, EVENT_READ, on_control)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.forget(self.control)
        self.control.close()


def follow_parent(
    loop: Loop,
    control_fd: int | None,
    on_gone: Callable[[], None],
    gone: str = "the parent process is gone",
) -> ParentLink | None:
    """For a child started by `start_child`, once it listens: say ready, stop when orphaned.

    `control_fd` is the parsed `--control-fd` (None: no parent asked, nothing to do). Call it
    before running `loop`; `on_gone` should stop the server gracefully.
    """
    if control_fd is None:
        return None
    link = ParentLink(control_fd)
    link.say_ready()
    link.watch(loop, on_gone, gone)
    return link


def run_worker(server: Server, index: int, control_fd: int) -> int:
    """Serve as worker `index`: say ready on the control socket, stop when the supervisor goes."""
    server.listen()
    log.info("worker %d ready (pid %d)", index, os.getpid())  # before the supervisor's line
    gone = f"worker {index}: the supervisor is gone"
    link = follow_parent(server.loop, control_fd, server.shutdown, gone)
    try:
        return server.serve_forever_until_signalled()
    finally:
        if link is not None:
            link.close()
