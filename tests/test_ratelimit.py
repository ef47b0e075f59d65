"""The token bucket, on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from echo_server.app.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_a_new_bucket_allows_a_whole_burst_at_once() -> None:
    bucket = TokenBucket(10, 20, Clock())
    assert all(bucket.take() for _ in range(20))


def test_past_the_burst_a_message_is_refused() -> None:
    bucket = TokenBucket(10, 20, Clock())
    for _ in range(20):
        bucket.take()
    assert not bucket.take()


def test_tokens_come_back_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 20, clock)
    for _ in range(20):
        bucket.take()
    clock.now_s += 0.5  # half a second at 10 per second: five more
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]


def test_an_idle_client_saves_up_no_more_than_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 20, clock)
    clock.now_s += 3600
    assert sum(bucket.take() for _ in range(100)) == 20


def test_a_refused_message_takes_nothing() -> None:
    clock = Clock()
    bucket = TokenBucket(1, 1, clock)
    assert bucket.take()
    assert not bucket.take()
    assert not bucket.take()
    clock.now_s += 1.0
    assert bucket.take()


@pytest.mark.parametrize(("rate", "burst"), [(0, 10), (-1, 10), (10, 0.5)])
def test_a_bucket_that_could_never_allow_a_message_is_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="bucket needs"):
        TokenBucket(rate, burst, Clock())
