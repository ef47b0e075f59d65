"""What the push routes push: the tick and the demo series, made by loop timers, never threads.

`Ticker` counts seconds since the server started and publishes each one; `RandomWalk` is the
series `demo`: one shared value that grows by a random 1-10 at random moments 0-1 s apart. Each
is given the loop to time itself with and a function to publish with (a message on a channel, a
series point); with `--redis` only the cluster's leader produces (`producing()` says whether
this node does) and the others follow the numbers they receive (`follow`).

Not here: who receives what is published (broadcast.py), the routes that subscribe (routes.py),
the series store (series.py).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from echo_server import defaults
from echo_server.app.broadcast import TICK
from echo_server.app.series import DEMO, Point
from echo_server.core.loop import Loop

Publish = Callable[[str, str], object]
PublishPoint = Callable[[Point], object]
Producing = Callable[[], bool]


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def unix_time_s() -> float:
    return round(time.time(), 3)


class Ticker:
    """One tick a second, the same number at the same moment for everyone.

    A repeating loop timer: its deadlines are start + n seconds, so ticks do not drift however
    late a callback runs, and a failing publish does not stop it. `on_tick` runs after each
    (the statistics feed rides on the tick: one timer a second serves both).
    """

    def __init__(
        self,
        loop: Loop,
        publish: Publish,
        producing: Producing,
        *,
        interval_s: float = defaults.TICK_INTERVAL_S,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.tick = 0
        self._publish = publish
        self._producing = producing
        self._on_tick = on_tick
        loop.call_every(interval_s, self._fire)

    def message(self) -> str:
        return to_json({"tick": self.tick, "time": unix_time_s()})

    def follow(self, tick: int) -> None:
        """The cluster's leader said this tick: go on from it if this node comes to lead."""
        self.tick = tick

    def _fire(self) -> None:
        if self._producing():
            self.tick += 1
            self._publish(TICK, self.message())
        if self._on_tick is not None:
            self._on_tick()


class RandomWalk:
    """The demo series: at random intervals of 0-1 s it grows by a random integer of 1-10."""

    def __init__(
        self,
        loop: Loop,
        publish: PublishPoint,
        producing: Producing,
        *,
        max_gap_s: float = defaults.STREAM_MAX_GAP_S,
        rng: random.Random | None = None,
    ) -> None:
        self.value = 0
        self._loop = loop
        self._publish = publish
        self._producing = producing
        self._max_gap_s = max_gap_s
        self._rng = rng or random.Random()
        self._schedule()

    def point(self) -> Point:
        return Point(DEMO, unix_time_s(), self.value)

    def follow(self, value: int) -> None:
        """The cluster's leader said this value: go on from it if this node comes to lead."""
        self.value = value

    def _schedule(self) -> None:
        self._loop.call_later(self._rng.uniform(0.0, self._max_gap_s), self._fire)

    def _fire(self) -> None:
        self._schedule()  # first, so that a failure below cannot stop the stream
        if self._producing():
            self.value += self._rng.randint(1, 10)
            self._publish(self.point())
