"""The selector loop: timers in deadline order, cancellation, readiness callbacks, signals."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator

import pytest

from echo_server.loop import EVENT_READ, EVENT_WRITE, Loop


@pytest.fixture
def loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


def run_for(loop: Loop, seconds: float) -> None:
    loop.call_later(seconds, loop.stop)
    loop.run()


def test_timers_fire_in_deadline_order_not_in_the_order_set(loop: Loop) -> None:
    fired: list[str] = []
    loop.call_later(0.03, lambda: fired.append("third"))
    loop.call_later(0.01, lambda: fired.append("first"))
    loop.call_later(0.02, lambda: fired.append("second"))
    run_for(loop, 0.05)
    assert fired == ["first", "second", "third"]


def test_timers_with_the_same_deadline_fire_in_the_order_set(loop: Loop) -> None:
    fired: list[int] = []
    for number in range(5):
        loop.call_later(0.0, lambda number=number: fired.append(number))  # type: ignore[misc]
    run_for(loop, 0.01)
    assert fired == [0, 1, 2, 3, 4]


def test_a_cancelled_timer_never_fires(loop: Loop) -> None:
    fired: list[str] = []
    timer = loop.call_later(0.01, lambda: fired.append("no"))
    loop.cancel(timer)
    run_for(loop, 0.03)
    assert fired == []


def test_cancelling_none_or_a_fired_timer_is_harmless(loop: Loop) -> None:
    fired: list[str] = []
    timer = loop.call_later(0.0, lambda: fired.append("yes"))
    run_for(loop, 0.01)
    loop.cancel(timer)
    loop.cancel(None)
    assert fired == ["yes"]


def test_many_cancelled_timers_do_not_stay_in_the_heap(loop: Loop) -> None:
    for _ in range(10_000):
        loop.cancel(loop.call_later(3600, lambda: None))
    assert len(loop._timers) < 2_000


def test_a_timer_may_set_another_timer(loop: Loop) -> None:
    fired: list[str] = []

    def first() -> None:
        fired.append("first")
        loop.call_later(0.0, lambda: fired.append("second"))

    loop.call_later(0.0, first)
    run_for(loop, 0.02)
    assert fired == ["first", "second"]


def test_select_waits_for_the_next_deadline_not_longer(loop: Loop) -> None:
    start = loop.time()
    run_for(loop, 0.05)
    assert loop.time() - start < 2.0  # it returned: the timeout came from the timer heap


def test_a_readable_socket_calls_its_callback_with_the_mask(loop: Loop) -> None:
    left, right = socket.socketpair()
    seen: list[int] = []
    with left, right:

        def on_ready(mask: int) -> None:
            seen.append(mask)
            left.recv(100)
            loop.stop()

        loop.set_interest(left, EVENT_READ, on_ready)
        right.send(b"x")
        loop.run()
        loop.forget(left)
    assert seen == [EVENT_READ]


def test_interest_can_change_and_zero_events_unregisters(loop: Loop) -> None:
    left, right = socket.socketpair()
    with left, right:
        loop.set_interest(left, EVENT_READ | EVENT_WRITE, lambda mask: None)
        assert loop.selector.get_key(left).events == EVENT_READ | EVENT_WRITE
        loop.set_interest(left, EVENT_WRITE, lambda mask: None)
        assert loop.selector.get_key(left).events == EVENT_WRITE
        loop.set_interest(left, 0, lambda mask: None)
        assert left.fileno() not in loop.selector.get_map()
        loop.forget(left)  # forgetting an unregistered socket is harmless


def test_a_signal_runs_its_callback_inside_the_loop(loop: Loop) -> None:
    seen: list[str] = []

    def on_signal() -> None:
        seen.append("usr1")
        loop.stop()

    loop.on_signal(signal.SIGUSR1, on_signal)
    loop.call_later(0.01, lambda: os.kill(os.getpid(), signal.SIGUSR1))
    loop.call_later(5.0, loop.stop)  # bound: the test ends even if the signal is lost
    loop.run()
    assert seen == ["usr1"]
