"""The loop: timers in deadline order, cancellation, readiness, signals, turns, and guards."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from echo_server.core.loop import EVENT_READ, EVENT_WRITE, SELECT_MAX_FD, SELECTORS, Loop


@pytest.fixture(params=sorted(SELECTORS))
def loop(request: pytest.FixtureRequest) -> Iterator[Loop]:
    """Every test runs on each poller this platform has (epoll, poll, select, ...)."""
    loop = Loop(selector=request.param)
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
    before = loop.registered
    with left, right:
        loop.set_interest(left, EVENT_READ | EVENT_WRITE, lambda mask: None)
        assert loop.interest(left) == EVENT_READ | EVENT_WRITE
        loop.set_interest(left, EVENT_WRITE, lambda mask: None)
        assert loop.interest(left) == EVENT_WRITE
        loop.set_interest(left, 0, lambda mask: None)
        assert loop.interest(left) == 0
        assert loop.registered == before
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


def test_a_write_ready_socket_reports_write(loop: Loop) -> None:
    left, right = socket.socketpair()
    seen: list[int] = []
    with left, right:

        def on_ready(mask: int) -> None:
            seen.append(mask)
            loop.stop()

        loop.set_interest(left, EVENT_WRITE, on_ready)
        loop.run()
        loop.forget(left)
    assert seen == [EVENT_WRITE]


def test_a_peer_hanging_up_wakes_a_reader(loop: Loop) -> None:
    left, right = socket.socketpair()
    seen: list[bytes] = []
    with left:

        def on_ready(mask: int) -> None:
            seen.append(left.recv(10))
            loop.stop()

        loop.set_interest(left, EVENT_READ, on_ready)
        right.close()
        loop.call_later(5.0, loop.stop)
        loop.run()
        loop.forget(left)
    assert seen == [b""]


# Turns: what runs when.


def test_call_soon_runs_in_the_next_turn_after_the_ready_callbacks(loop: Loop) -> None:
    left, right = socket.socketpair()
    order: list[str] = []
    with left, right:

        def on_ready(mask: int) -> None:
            left.recv(10)
            order.append("ready")
            loop.call_soon(lambda: order.append("soon"))

        loop.set_interest(left, EVENT_READ, on_ready)
        right.send(b"x")
        loop.run_once(5.0)
        assert order == ["ready"]
        right.send(b"y")
        loop.run_once(5.0)
        loop.forget(left)
    assert order == ["ready", "ready", "soon"]


def test_turn_end_callbacks_run_after_everything_else_of_the_turn(loop: Loop) -> None:
    order: list[str] = []

    def timer() -> None:
        order.append("timer")
        loop.at_turn_end(lambda: order.append("end"))
        loop.call_soon(lambda: order.append("soon, next turn"))

    loop.call_later(0.0, timer)
    loop.call_later(0.0, lambda: order.append("second timer"))
    run_for(loop, 0.02)
    assert order == ["timer", "second timer", "end", "soon, next turn"]


def test_a_turn_end_callback_may_ask_for_another_in_the_same_turn(loop: Loop) -> None:
    order: list[str] = []
    loop.call_later(
        0.0, lambda: loop.at_turn_end(lambda: loop.at_turn_end(lambda: order.append("x")))
    )
    run_for(loop, 0.02)
    assert order == ["x"]


def test_pending_soon_work_does_not_wait_for_the_next_timer(loop: Loop) -> None:
    fired: list[str] = []
    loop.call_later(3600, lambda: None)  # a far timer must not become the wait
    loop.call_soon(lambda: fired.append("soon"))
    loop.call_soon(loop.stop)
    start = loop.time()
    loop.run()
    assert fired == ["soon"]
    assert loop.time() - start < 5.0


# Repeating timers.


def test_a_repeating_timer_fires_every_interval(loop: Loop) -> None:
    fired: list[float] = []
    loop.call_every(0.01, lambda: fired.append(loop.time()))
    run_for(loop, 0.055)
    assert 3 <= len(fired) <= 6


def test_a_cancelled_repeating_timer_stops(loop: Loop) -> None:
    fired: list[int] = []
    timer = loop.call_every(0.01, lambda: fired.append(1))
    loop.call_later(0.025, lambda: loop.cancel(timer))
    run_for(loop, 0.08)
    assert 1 <= len(fired) <= 3


def test_a_late_repeating_timer_skips_what_it_missed_instead_of_bunching(loop: Loop) -> None:
    fired: list[int] = []
    loop.call_every(0.01, lambda: fired.append(1), first_s=0.0)
    # One turn that takes 0.1 s: ten intervals missed, fired once for them, not ten times.
    loop.call_later(0.0, lambda: busy(0.1))
    run_for(loop, 0.105)
    assert len(fired) <= 4


def boom() -> None:
    raise ZeroDivisionError("a bug in a callback")


def busy(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


# Guards: one failing callback never stops the loop.


def test_a_failing_timer_is_logged_and_the_loop_goes_on(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    fired: list[str] = []
    loop.call_later(0.0, boom)
    loop.call_later(0.01, lambda: fired.append("after"))
    run_for(loop, 0.03)
    assert fired == ["after"]
    assert "ZeroDivisionError" in caplog.text


def test_a_failing_repeating_timer_keeps_repeating(loop: Loop) -> None:
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise RuntimeError("every time")

    loop.call_every(0.01, fail)
    run_for(loop, 0.055)
    assert len(calls) >= 3


def test_a_failing_ready_callback_is_logged_and_unregistered(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    left, right = socket.socketpair()
    calls: list[int] = []
    with left, right:

        def fail(mask: int) -> None:
            calls.append(mask)
            raise RuntimeError("a bug in the owner")

        loop.set_interest(left, EVENT_READ, fail)
        right.send(b"x")  # stays unread: without the unregistering, it would fail every turn
        run_for(loop, 0.05)
        assert loop.interest(left) == 0
    assert calls == [EVENT_READ]
    assert "a bug in the owner" in caplog.text


def test_a_failing_signal_callback_is_logged_and_the_loop_goes_on(loop: Loop) -> None:
    fired: list[str] = []

    def fail() -> None:
        raise RuntimeError("signal handler bug")

    loop.on_signal(signal.SIGUSR2, fail)
    loop.call_later(0.0, lambda: os.kill(os.getpid(), signal.SIGUSR2))
    loop.call_later(0.05, lambda: fired.append("after"))
    run_for(loop, 0.1)
    assert fired == ["after"]


def test_a_failing_soon_or_turn_end_callback_does_not_stop_the_others(loop: Loop) -> None:
    fired: list[str] = []
    loop.call_soon(boom)
    loop.call_soon(lambda: fired.append("soon"))
    loop.call_later(0.0, lambda: loop.at_turn_end(boom))
    loop.call_later(0.0, lambda: loop.at_turn_end(lambda: fired.append("end")))
    run_for(loop, 0.02)
    assert fired == ["soon", "end"]


# Pollers.


def test_an_unknown_poller_is_refused_with_the_ones_there_are() -> None:
    with pytest.raises(ValueError, match="select"):
        Loop(selector="carrier-pigeon")


def test_select_refuses_a_descriptor_it_cannot_watch_with_a_clear_error() -> None:
    loop = Loop(selector="select")
    left, right = socket.socketpair()
    high = os.dup2(left.fileno(), SELECT_MAX_FD + 5)
    try:
        with socket.socket(fileno=high) as beyond, pytest.raises(OSError, match="select"):
            loop.set_interest(beyond, EVENT_READ, lambda mask: None)
    finally:
        left.close()
        right.close()
        loop.close()


def test_forgetting_a_socket_after_the_loop_is_closed_is_harmless() -> None:
    loop = Loop()
    left, right = socket.socketpair()
    with left, right:
        loop.set_interest(left, EVENT_READ, lambda mask: None)
        loop.close()
        loop.forget(left)


def test_another_thread_can_hand_the_loop_a_callback(loop: Loop) -> None:
    seen: list[str] = []

    def from_the_loop() -> None:
        seen.append(threading.current_thread().name)
        loop.stop()

    thread = threading.Thread(target=lambda: loop.call_soon_threadsafe(from_the_loop))
    loop.call_later(5.0, loop.stop)  # bound: the test ends even if the wakeup is lost
    thread.start()
    loop.run()  # without a timer due soon, only the wakeup can end this wait in time
    thread.join()
    assert seen == [threading.main_thread().name]
