"""Ctrl-C before a loop listens for it: recorded, never raised, and handed to the loop later.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be:
inside an import, a lock held by another thread, a `finally` block. The program then dies with
a traceback, hangs on a lock that is never released, or prints "Exception ignored". Every
echo_server command stops through its loop instead (`Loop.on_signal` turns a signal into an
ordinary callback, run between other callbacks). This module covers the time before that loop
exists: `python -m echo_server` calls `record()` before importing anything else, and each
command's loop, once it has its own handlers (`Loop.run_until_signalled`), calls `replay()`,
so that a Ctrl-C pressed during start-up still stops the command, at a safe point.

SIGTERM is left alone until a loop takes it: its default action ends the process at once and
silently, which is the right answer to a SIGTERM that arrives before there is anything to stop
gracefully.

What this is not: a signal API for the rest of the program. Use `Loop.on_signal`.
"""

from __future__ import annotations

import signal
from types import FrameType

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
