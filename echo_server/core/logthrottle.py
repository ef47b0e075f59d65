"""Log lines about events that a remote party can repeat at will, at a bounded rate.

A `LogThrottle` lets one line through, then holds back the lines that follow within its
interval and counts them; the next line let through says how many were held back. So a flood
of bad data from Redis (or anywhere) costs a few lines a minute, not one line per item, and
nothing is hidden: the count shows there was more.

Not here: deciding what is bad (the callers), or throttling the events themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class LogThrottle:
    """At most one line per `interval_s`; the lines held back are counted in the next one."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.level = level
        self.held_back = 0  # lines not logged since the last one that was
        self._clock = clock
        self._last_s: float | None = None

    def log(self, message: str, *args: object) -> bool:
        """Log `message % args` unless a line went out less than `interval_s` ago.

        Returns whether it was logged.
        """
        now_s = self._clock()
        if self._last_s is not None and now_s - self._last_s < self.interval_s:
            self.held_back += 1
            return False
        if self.held_back:
            assert self._last_s is not None
            message += " (and %d more held back since the last such line, %.0f s ago)"
            args = (*args, self.held_back, now_s - self._last_s)
        self.logger.log(self.level, message, *args)
        self._last_s = now_s
        self.held_back = 0
        return True
