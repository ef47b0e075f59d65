"""Ctrl-C before a loop listens for it: recorded, never raised, and handed to the loop later.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be:
inside an import, a lock held by another thread, a `finally` block. The program then dies with
a traceback, hangs on a lock that is never released, or prints "Exception ignored". Every
echo_server command stops through its loop instead (`Loop.on_signal` turns a signal into an
ordinary callback, run between other callbacks). This module covers the time before that loop
exists: `python -m echo_server` calls `record()` before importing anything else, and each
command, once its loop has its own handlers, calls `replay_when_running(loop)`, so that a
Ctrl-C pressed during start-up still stops the command, at a safe point.

SIGTERM is left alone until a loop takes it: its default action ends the process at once and
silently, which is the right answer to a SIGTERM that arrives before there is anything to stop
gracefully.

What this is not: a signal API for the rest of the program. Use `Loop.on_signal`.
"""

from __future__ import annotations

import signal
from types import FrameType

# Not `from typing import TYPE_CHECKING`: this module is imported before record() can run, and
# importing typing would be most of its cost. Type checkers treat this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from echo_server.loop import Loop

# Recorded, in arrival order, until replayed. A list, not a flag: the handler runs in the main
# thread between bytecodes, so appending needs no lock.
_recorded: list[int] = []


def _record(signum: int, frame: FrameType | None) -> None:
    _recorded.append(signum)


def record() -> None:
    """From now on SIGINT is recorded instead of raising KeyboardInterrupt (main thread only)."""
    signal.signal(signal.SIGINT, _record)


def recorded() -> tuple[int, ...]:
    """The signals recorded and not replayed yet, each once, in arrival order."""
    return tuple(dict.fromkeys(_recorded))


def replay() -> None:
    """Raise each recorded signal again, for whichever handler is installed now."""
    pending = recorded()
    _recorded.clear()
    for signum in pending:
        signal.raise_signal(signum)


def replay_when_running(loop: Loop) -> None:
    """Replay the recorded signals in `loop`'s first round, once its handlers are installed.

    Call it before `loop.run()` (or a `serve...` method that installs its signal handlers and
    then runs the loop): the replayed signal then reaches the loop's handler, not `_record`.
    """
    loop.call_later(0.0, replay)
