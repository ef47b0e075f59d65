"""stopsignals: a Ctrl-C before the loop runs is recorded, never raised, and replayed to the loop.

In this process, with the real signal module; each test puts SIGINT's handler back as it was.
The end-to-end view (a Ctrl-C during a command's start-up) is in test_cli.py and test_client.py.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from echo_server.core import stopsignals
from echo_server.core.loop import Loop

BOUND_S = 10.0  # every loop here stops by then, whatever happens


@pytest.fixture
def sigint_restored() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_recorded_ctrl_c_raises_nothing(sigint_restored: None) -> None:
    stopsignals.record()
    signal.raise_signal(signal.SIGINT)  # KeyboardInterrupt here, by default
    assert stopsignals.recorded() == (signal.SIGINT,)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopsignals.replay()  # to nobody: the next test starts with nothing recorded
    assert stopsignals.recorded() == ()


def test_a_recorded_ctrl_c_reaches_the_loop_once_it_runs(sigint_restored: None) -> None:
    stopsignals.record()
    signal.raise_signal(signal.SIGINT)
    loop = Loop()
    seen: list[str] = []

    def on_sigint() -> None:
        seen.append("SIGINT")
        loop.stop()

    try:
        loop.call_later(BOUND_S, loop.stop)
        loop.run_until_signalled(lambda signum: on_sigint())
    finally:
        unblock_stop_signals()
        loop.close()
    assert seen == ["SIGINT"]
    assert stopsignals.recorded() == ()


def test_without_a_recorded_signal_replay_does_nothing(sigint_restored: None) -> None:
    stopsignals.record()
    loop = Loop()
    seen: list[str] = []
    try:
        loop.call_later(0.05, loop.stop)
        loop.run_until_signalled(lambda signum: seen.append("SIGINT"))
    finally:
        unblock_stop_signals()
        loop.close()
    assert seen == []


def test_after_the_loop_the_stop_signals_stay_blocked(sigint_restored: None) -> None:
    loop = Loop()
    try:
        loop.call_later(0.0, loop.stop)
        loop.run_until_signalled(lambda signum: None)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        unblock_stop_signals()
        loop.close()
    assert {signal.SIGINT, signal.SIGTERM} <= blocked


def unblock_stop_signals() -> None:
    """run_until_signalled leaves them blocked for the process's teardown; a test goes on."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM])
