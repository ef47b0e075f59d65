"""A token bucket: how many messages one client may send per second, with a bounded burst.

The broadcast routes (/chat) give each client one, because each message a client sends there
costs the server a frame per subscriber: without a limit, one client's flood is everyone's
outage. A bucket holds up to `burst` tokens, refills at `rate_per_s`, and each message takes
one; a message that finds the bucket empty is over the limit. Time comes from the caller's
clock (the loop's), so the bucket holds no timer and needs no thread.

Not a traffic shaper: nothing is delayed or queued, a message is within the limit or not.
"""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    __slots__ = ("_clock", "_last_s", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float]) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a bucket needs a rate above 0 and a burst of 1 or more: {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = burst  # a new client may burst at once
        self._last_s = clock()

    def take(self) -> bool:
        """Take one token; False (and nothing taken) if the bucket is empty."""
        now_s = self._clock()
        self._tokens = min(self.burst, self._tokens + (now_s - self._last_s) * self.rate_per_s)
        self._last_s = now_s
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
