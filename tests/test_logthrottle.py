"""Log lines about repeatable events, at a bounded rate: one per interval, the rest counted.

The throttle is given a clock of the test's own (a number the test moves on), so the interval
is crossed exactly, without waiting.
"""

from __future__ import annotations

import logging

import pytest

from echo_server.core.logthrottle import LogThrottle

INTERVAL_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(clock: Clock) -> LogThrottle:
    return LogThrottle(logging.getLogger("test_logthrottle"), INTERVAL_S, clock)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_the_first_line_goes_out_at_once(
    throttle: LogThrottle, caplog: pytest.LogCaptureFixture
) -> None:
    assert throttle.log("bad item %d", 1)
    assert lines(caplog) == ["bad item 1"]
    assert caplog.records[0].levelno == logging.WARNING


def test_a_flood_within_the_interval_is_one_line(
    throttle: LogThrottle, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for number in range(10_000):
        clock.now_s += INTERVAL_S / 20_000
        throttle.log("bad item %d", number)
    assert lines(caplog) == ["bad item 0"]
    assert throttle.held_back == 9_999


def test_the_next_line_after_the_interval_says_how_many_were_held_back(
    throttle: LogThrottle, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    throttle.log("bad item %d", 1)
    for number in range(2, 5):
        clock.now_s += 1.0
        assert not throttle.log("bad item %d", number)
    clock.now_s += INTERVAL_S
    assert throttle.log("bad item %d", 5)
    assert lines(caplog)[1] == (
        "bad item 5 (and 3 more held back since the last such line, 13 s ago)"
    )
    assert throttle.held_back == 0


def test_a_line_exactly_one_interval_later_goes_out(
    throttle: LogThrottle, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    throttle.log("first")
    clock.now_s += INTERVAL_S
    assert throttle.log("second")
    assert lines(caplog) == ["first", "second"]
