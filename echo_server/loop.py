"""The selector loop and its timers: one thread, readiness callbacks, a heap of deadlines.

Everything timed in echo_server (handshake and ping timeouts, close timeouts, later ticks and
streams) is a timer here, so nothing ever sleeps and nothing needs a thread. The select timeout is
the time to the next deadline. Signals are turned into ordinary callbacks run by the loop (through
`signal.set_wakeup_fd`), so a handler never runs in the middle of other work.

This is not a general event loop: no futures, no coroutines, no executors.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import selectors
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE

Callback = Callable[[], None]
ReadyCallback = Callable[[int], None]  # receives the ready mask (EVENT_READ | EVENT_WRITE)


class Timer:
    """A callback due at a monotonic deadline; cancel() makes it a no-op."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callback) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()  # ties in deadline run in the order they were set
        self._cancelled_timers = 0
        self._running = False
        self._signal_callbacks: dict[int, Callback] = {}
        self._pending_signals: list[int] = []
        self._wakeup_reader: socket.socket | None = None
        self._wakeup_writer: socket.socket | None = None

    @staticmethod
    def time() -> float:
        return time.monotonic()

    # Timers.

    def call_later(self, delay_s: float, callback: Callback) -> Timer:
        timer = Timer(self.time() + delay_s, callback)
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
                self._cancelled_timers = 0

    def _run_due_timers(self) -> None:
        now = self.time()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                self._cancelled_timers -= 1
                continue
            timer.cancelled = True  # fired: a later cancel() is a no-op
            timer.callback()

    def _select_timeout(self) -> float | None:
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - self.time())

    # Sockets. A socket is registered with the events it wants; zero events means unregistered.

    def set_interest(self, sock: socket.socket, events: int, callback: ReadyCallback) -> None:
        key = self.selector.get_map().get(sock.fileno()) if sock.fileno() >= 0 else None
        if events == 0:
            if key is not None:
                self.selector.unregister(sock)
        elif key is None:
            self.selector.register(sock, events, callback)
        elif key.events != events:
            self.selector.modify(sock, events, callback)

    def forget(self, sock: socket.socket) -> None:
        """Unregister a socket about to be closed (safe if it was never registered)."""
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)

    # Signals.

    def on_signal(self, signum: int, callback: Callback) -> None:
        """Run `callback` in the loop (not in the signal handler) when `signum` arrives."""
        if self._wakeup_reader is None:
            self._wakeup_reader, self._wakeup_writer = socket.socketpair()
            self._wakeup_reader.setblocking(False)
            self._wakeup_writer.setblocking(False)
            signal.set_wakeup_fd(self._wakeup_writer.fileno(), warn_on_full_buffer=False)
            self.set_interest(self._wakeup_reader, EVENT_READ, self._drain_wakeup)
        self._signal_callbacks[signum] = callback
        signal.signal(signum, self._note_signal)

    def _note_signal(self, signum: int, frame: FrameType | None) -> None:
        self._pending_signals.append(signum)

    def _drain_wakeup(self, mask: int) -> None:
        assert self._wakeup_reader is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._wakeup_reader.recv(4096):
                pass
        signals, self._pending_signals = self._pending_signals, []
        for signum in dict.fromkeys(signals):
            self._signal_callbacks[signum]()

    # Running.

    def run(self) -> None:
        """Dispatch readiness and timers until stop() is called."""
        self._running = True
        select = self.selector.select
        while self._running:
            for key, mask in select(self._select_timeout()):
                key.data(mask)
            self._run_due_timers()

    def stop(self) -> None:
        """Make run() return once the current round of callbacks is done."""
        self._running = False

    def close(self) -> None:
        if self._wakeup_writer is not None:
            signal.set_wakeup_fd(-1)
            for signum in self._signal_callbacks:
                signal.signal(signum, signal.SIG_DFL)
            for sock in (self._wakeup_reader, self._wakeup_writer):
                if sock is not None:
                    self.forget(sock)
                    sock.close()
            self._wakeup_reader = self._wakeup_writer = None
        self.selector.close()
