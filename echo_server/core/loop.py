"""The event loop: one thread, readiness callbacks, a heap of deadlines, turns of bounded work.

Everything timed in echo_server (handshake, ping and close timeouts, the tick, the stream, Redis
health checks) is a timer here, so nothing ever sleeps and nothing needs a thread. Signals are
turned into ordinary callbacks run by the loop (through `signal.set_wakeup_fd`), so a handler
never runs in the middle of other work and never raises into it.

One turn of the loop:
1. wait for readiness (epoll on Linux; see `SELECTORS`), no longer than the next deadline, and not
   at all when work is already waiting;
2. run the readiness callbacks, then the callbacks asked for with `call_soon` (work a socket
   left for the next turn so that the others get theirs), then the timers that are due;
3. run the `at_turn_end` callbacks: the connections flush what they queued during the turn,
   so each socket gets one send per turn however many messages it was given.

Every callback is guarded: an exception is logged with its traceback and the loop goes on. A
readiness callback that raises is unregistered too, since its owner lost track of the socket
and would otherwise be called (and fail) on every turn. The owners (connections, the upgrade,
Redis) guard their own callbacks first, so that a failure costs exactly one client; this is
the last line.

This is not a general event loop: no futures, no coroutines, no executors.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import select
import selectors
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Final, Protocol

from echo_server.core import stopsignals

log = logging.getLogger(__name__)

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
# What a non-blocking socket (or TLS over one) raises when it cannot go on right now: try again
# when the loop says it is ready.
WOULD_BLOCK: Final = (
    BlockingIOError,
    InterruptedError,
    ssl.SSLWantReadError,
    ssl.SSLWantWriteError,
)

EVENT_READ: Final = 1
EVENT_WRITE: Final = 2

Callback = Callable[[], None]
ReadyCallback = Callable[[int], None]  # receives the ready mask (EVENT_READ | EVENT_WRITE)


class Poller(Protocol):
    """What the loop needs of the operating system's readiness API."""

    name: str

    def register(self, fd: int, events: int) -> None: ...
    def modify(self, fd: int, events: int) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def poll(self, timeout_s: float | None) -> list[tuple[int, int]]: ...
    def close(self) -> None: ...


class EpollPoller:
    """`select.epoll` directly: no key objects, masks translated only on errors."""

    name = "epoll"

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._events: dict[int, int] = {}

    def register(self, fd: int, events: int) -> None:
        self._epoll.register(fd, _to_epoll(events))
        self._events[fd] = events

    def modify(self, fd: int, events: int) -> None:
        try:
            self._epoll.modify(fd, _to_epoll(events))
        except FileNotFoundError:
            # The descriptor was closed and reused without being unregistered first: the
            # kernel dropped the old registration by itself, so this is a new one.
            self._epoll.register(fd, _to_epoll(events))
        self._events[fd] = events

    def unregister(self, fd: int) -> None:
        self._events.pop(fd, None)
        with contextlib.suppress(OSError):  # already closed: the kernel forgot it itself
            self._epoll.unregister(fd)

    def poll(self, timeout_s: float | None) -> list[tuple[int, int]]:
        ready = self._epoll.poll(-1 if timeout_s is None else timeout_s)
        for index, (fd, flags) in enumerate(ready):
            if flags == _EPOLLIN_ONLY:
                continue  # the common case, EPOLLIN is EVENT_READ: the list is returned as it is
            mask = (EVENT_READ if flags & _EPOLL_READ else 0) | (
                EVENT_WRITE if flags & _EPOLL_WRITE else 0
            )
            if flags & _EPOLL_TROUBLE:
                # An error or a hang-up wakes whoever waits, for whatever it waits: the read
                # or write that follows finds out what happened.
                mask |= self._events.get(fd, 0)
            ready[index] = (fd, mask)
        return ready

    def close(self) -> None:
        self._epoll.close()


class SelectorsPoller:
    """Any of the `selectors` module's selectors: poll, select, kqueue, devpoll."""

    def __init__(self, name: str, selector: selectors.BaseSelector) -> None:
        self.name = name
        self._selector = selector

    def register(self, fd: int, events: int) -> None:
        self._selector.register(fd, _to_selectors(events))

    def modify(self, fd: int, events: int) -> None:
        self._selector.modify(fd, _to_selectors(events))

    def unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def poll(self, timeout_s: float | None) -> list[tuple[int, int]]:
        return [
            (
                key.fd,
                (EVENT_READ if mask & selectors.EVENT_READ else 0)
                | (EVENT_WRITE if mask & selectors.EVENT_WRITE else 0),
            )
            for key, mask in self._selector.select(timeout_s)
        ]

    def close(self) -> None:
        self._selector.close()


_EPOLL_READ: Final = select.EPOLLIN | select.EPOLLPRI if hasattr(select, "EPOLLIN") else 0
_EPOLL_WRITE: Final = select.EPOLLOUT if hasattr(select, "EPOLLOUT") else 0
_EPOLL_TROUBLE: Final = select.EPOLLERR | select.EPOLLHUP if hasattr(select, "EPOLLERR") else 0
# EPOLLIN alone: the one flag set that needs no translation, when it equals EVENT_READ.
_EPOLLIN_ONLY: Final = EVENT_READ if getattr(select, "EPOLLIN", 0) == EVENT_READ else -1


def _to_epoll(events: int) -> int:
    return (select.EPOLLIN if events & EVENT_READ else 0) | (
        select.EPOLLOUT if events & EVENT_WRITE else 0
    )


def _to_selectors(events: int) -> int:
    return (selectors.EVENT_READ if events & EVENT_READ else 0) | (
        selectors.EVENT_WRITE if events & EVENT_WRITE else 0
    )


# The selectors (readiness APIs) this platform has, best first; `Loop(selector="select")`
# forces one (the command line's --selector).
SELECTORS: Final[dict[str, Callable[[], Poller]]] = {}
if hasattr(select, "epoll"):
    SELECTORS["epoll"] = EpollPoller
if hasattr(selectors, "KqueueSelector"):
    SELECTORS["kqueue"] = lambda: SelectorsPoller("kqueue", selectors.KqueueSelector())  # type: ignore[attr-defined,unused-ignore]
if hasattr(selectors, "PollSelector"):
    SELECTORS["poll"] = lambda: SelectorsPoller("poll", selectors.PollSelector())
SELECTORS["select"] = lambda: SelectorsPoller("select", selectors.SelectSelector())
BEST_SELECTOR: Final = next(iter(SELECTORS))
# select() cannot watch a descriptor at or above FD_SETSIZE (1024 on Linux and macOS).
SELECT_MAX_FD: Final = 1024 if sys.platform != "win32" else 512


class Timer:
    """A callback due at a monotonic deadline; cancel() makes it a no-op.

    A repeating timer (`Loop.call_every`) is set again before its callback runs, so a callback
    that fails does not stop it.
    """

    __slots__ = ("callback", "cancelled", "deadline", "interval_s")

    def __init__(self, deadline: float, callback: Callback, interval_s: float = 0.0) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False
        self.interval_s = interval_s

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    def __init__(self, selector: str | None = None) -> None:
        name = selector or BEST_SELECTOR
        if name not in SELECTORS:
            raise ValueError(f"no {name!r} selector here; this system has {', '.join(SELECTORS)}")
        self.poller: Poller = SELECTORS[name]()
        self._callbacks: dict[int, ReadyCallback] = {}  # by descriptor: the registered ones
        self._interest: dict[int, int] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()  # ties in deadline run in the order they were set
        self._cancelled_timers = 0
        self._soon: list[Callback] = []
        self._turn_end: list[Callback] = []
        self._stop_requested = False
        self._signal_callbacks: dict[int, Callback] = {}
        self._previous_handlers: dict[int, Any] = {}  # put back by close()
        self._pending_signals: list[int] = []
        # Callbacks handed over by other threads (or signal handlers): list.append is atomic.
        self._threadsafe: list[Callback] = []
        # Written to wake the poller: by signal.set_wakeup_fd, and by call_soon_threadsafe.
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._wakeup_reader.setblocking(False)
        self._wakeup_writer.setblocking(False)
        self.set_interest(self._wakeup_reader, EVENT_READ, self._drain_wakeup)

    @staticmethod
    def time() -> float:
        return time.monotonic()

    # Timers.

    def call_later(self, delay_s: float, callback: Callback) -> Timer:
        timer = Timer(self.time() + delay_s, callback)
        heapq.heappush(self._timers, (timer.deadline, next(self._order), timer))
        return timer

    def call_every(self, interval_s: float, callback: Callback, *, first_s: float = -1) -> Timer:
        """Call `callback` every `interval_s`, first after `first_s` (default: one interval).

        Deadlines are start + n intervals, so the timer does not drift however late it runs; a
        turn that comes more than an interval late skips the missed calls rather than bunching.
        """
        if interval_s <= 0:
            raise ValueError(f"interval must be above 0, got {interval_s}")
        first = interval_s if first_s < 0 else first_s
        timer = Timer(self.time() + first, callback, interval_s)
        heapq.heappush(self._timers, (timer.deadline, next(self._order), timer))
        return timer

    def cancel(self, timer: Timer | None) -> None:
        """Cancel a timer (None is allowed, for "no timer set")."""
        if timer is not None and not timer.cancelled:
            timer.cancel()
            self._cancelled_timers += 1
            # Cancelled timers stay in the heap until due; rebuild it when they dominate, so a
            # timer set and cancelled per message cannot grow the heap without bound.
            if self._cancelled_timers > 1024 and self._cancelled_timers > len(self._timers) // 2:
                self._timers = [entry for entry in self._timers if not entry[2].cancelled]
                heapq.heapify(self._timers)
                self._cancelled_timers = sum(1 for entry in self._timers if entry[2].cancelled)

    def call_soon(self, callback: Callback) -> None:
        """Run `callback` in the next turn, after the readiness callbacks of that turn."""
        self._soon.append(callback)

    def at_turn_end(self, callback: Callback) -> None:
        """Run `callback` once the current turn's callbacks and timers have all run."""
        self._turn_end.append(callback)

    def _run_due_timers(self) -> None:
        now = self.time()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, timer = heapq.heappop(timers)
            if timer.cancelled:
                self._cancelled_timers -= 1
                continue
            if timer.interval_s:
                missed = int((now - timer.deadline) // timer.interval_s)
                timer.deadline += (missed + 1) * timer.interval_s
                heapq.heappush(timers, (timer.deadline, next(self._order), timer))
            else:
                timer.cancelled = True  # fired: a later cancel() is a no-op
            self._guarded(timer.callback)

    def _next_timeout(self) -> float | None:
        if self._soon or self._turn_end or self._pending_signals:
            return 0.0
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - self.time())

    # Sockets. A socket is registered with the events it wants; zero events means unregistered.

    def set_interest(self, sock: socket.socket, events: int, callback: ReadyCallback) -> None:
        fd = sock.fileno()
        if fd < 0:
            return
        current = self._interest.get(fd)
        if events == 0:
            if current is not None:
                self._unregister(fd)
            return
        if current is None:
            if self.poller.name == "select" and fd >= SELECT_MAX_FD:
                raise OSError(f"descriptor {fd} is beyond what select() can watch")
            self.poller.register(fd, events)
        elif current != events:
            self.poller.modify(fd, events)
        self._interest[fd] = events
        self._callbacks[fd] = callback

    def interest(self, sock: socket.socket) -> int:
        """The events `sock` is registered for (0 when it is not)."""
        return self._interest.get(sock.fileno(), 0)

    @property
    def registered(self) -> int:
        """How many descriptors are registered."""
        return len(self._interest)

    def forget(self, sock: socket.socket) -> None:
        """Unregister a socket about to be closed (safe if it was never registered)."""
        fd = sock.fileno()
        if fd >= 0 and fd in self._interest:
            self._unregister(fd)

    def _unregister(self, fd: int) -> None:
        del self._interest[fd]
        self._callbacks.pop(fd, None)
        self.poller.unregister(fd)

    # Signals.

    def on_signal(self, signum: int, callback: Callback) -> None:
        """Run `callback` in the loop (not in the signal handler) when `signum` arrives.

        Main thread only, as Python's signal handlers are.
        """
        if not self._signal_callbacks:
            signal.set_wakeup_fd(self._wakeup_writer.fileno(), warn_on_full_buffer=False)
        self._signal_callbacks[signum] = callback
        previous = signal.signal(signum, self._note_signal)
        self._previous_handlers.setdefault(signum, previous)

    def _note_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only note it: the loop runs the callback at its next safe point.
        self._pending_signals.append(signum)

    def call_soon_threadsafe(self, callback: Callback) -> None:
        """Run `callback` in the loop's next turn; safe from another thread or a signal handler
        (it only appends to a list and writes a byte)."""
        self._threadsafe.append(callback)
        with contextlib.suppress(OSError):  # full (a wakeup is pending anyway) or closed
            self._wakeup_writer.send(b"\0")

    def _drain_wakeup(self, mask: int) -> None:
        with contextlib.suppress(*WOULD_BLOCK):
            while self._wakeup_reader.recv(4096):
                pass
        self._run_signals()
        if self._threadsafe:
            handed, self._threadsafe = self._threadsafe, []
            self._soon.extend(handed)

    def _run_signals(self) -> None:
        signals, self._pending_signals = self._pending_signals, []
        for signum in dict.fromkeys(signals):
            self._guarded(self._signal_callbacks[signum])

    # Running.

    def run(self) -> None:
        """Run turns until stop() is called (a stop() asked for before run() counts too)."""
        while not self._stop_requested:
            self.run_once(self._next_timeout())
        self._stop_requested = False  # the loop may be run again

    def run_once(self, timeout_s: float | None = 0.0) -> None:
        """One turn: wait for readiness at most `timeout_s` (None: until some), run what is due.

        `run()` calls this; tests call it to drive a server turn by turn.
        """
        # What was asked for before this turn runs in it; what this turn asks for, in the next.
        soon, self._soon = self._soon, []
        if soon or self._turn_end or self._pending_signals:
            timeout_s = 0.0
        callbacks = self._callbacks
        for fd, mask in self.poller.poll(timeout_s):
            callback = callbacks.get(fd)
            if callback is None:
                continue  # unregistered by an earlier callback of this turn
            try:
                callback(mask)
            except Exception:
                self._ready_failed(fd, callback)
        if self._pending_signals:
            self._run_signals()
        for work in soon:
            self._guarded(work)
        if self._timers:
            self._run_due_timers()
        while self._turn_end:
            turn_end, self._turn_end = self._turn_end, []
            for work in turn_end:
                self._guarded(work)

    def run_until_signalled(
        self, on_stop_signal: Callable[[int], None], on_ready: Callback | None = None
    ) -> None:
        """A command's main loop: run, with SIGINT and SIGTERM as events.

        `on_stop_signal(signum)` is called for each (it stops gracefully, and ends by calling
        `self.stop()`; a second call is the user insisting). A Ctrl-C recorded before this loop
        existed (see stopsignals.py) is replayed into it. `on_ready` runs once the handlers are
        in: print a ready line or start children there, so that a signal sent as soon as that
        is seen finds them. When this returns the process only tears down, so the stop signals
        stay blocked: a late one (demo forwards SIGTERM just after the terminal's SIGINT) stays
        pending and goes with the process, instead of meeting the default action, which would
        end it mid-cleanup with a nonzero status or a KeyboardInterrupt.
        """
        for signum in STOP_SIGNALS:
            self.on_signal(signum, functools.partial(on_stop_signal, signum))
        self.call_soon(stopsignals.replay)
        try:
            if on_ready is not None:
                on_ready()
            self.run()
        finally:
            if hasattr(signal, "pthread_sigmask"):
                signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def stop(self) -> None:
        """Make run() return once the current turn is done."""
        self._stop_requested = True

    def _guarded(self, callback: Callback) -> None:
        try:
            callback()
        except Exception:
            log.exception("callback %r failed; the loop goes on", callback)

    def _ready_failed(self, fd: int, callback: ReadyCallback) -> None:
        log.exception("callback %r for descriptor %d failed; unregistering it", callback, fd)
        if self._callbacks.get(fd) is callback and fd in self._interest:
            self._unregister(fd)

    def close(self) -> None:
        if self._signal_callbacks:
            signal.set_wakeup_fd(-1)
            for signum, previous in self._previous_handlers.items():
                signal.signal(signum, signal.SIG_DFL if previous is None else previous)
            self._signal_callbacks.clear()
        for sock in (self._wakeup_reader, self._wakeup_writer):
            self.forget(sock)
            sock.close()
        self._interest.clear()  # forget() after close() is then a harmless no-op
        self._callbacks.clear()
        self.poller.close()
