"""What each WebSocket path does: echo, chat, tick, stream, stats. Each route is a Connection.

A route's handler only decides what to send; the connection does the framing, the limits and
the closing. Nothing here blocks: the tick and the stream are timers in the server's loop
(`Ticker`, `RandomWalk`), publishing to the subscribers of their channel through the server's
`Hub`, never sleeping handlers or threads.
"""

from __future__ import annotations

import json
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from echo_server import defaults
from echo_server.app.ratelimit import TokenBucket
from echo_server.core.connection import Connection
from echo_server.protocol.frames import CloseCode

if TYPE_CHECKING:
    from echo_server.core.server import Server

log = logging.getLogger(__name__)

CHAT = "chat"
TICK = "tick"
STREAM = "stream"
STATS = "stats"


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def unix_time_s() -> float:
    return round(time.time(), 3)


class Echo(Connection):
    """Every message comes back unchanged: text as text, binary as binary, byte for byte."""

    def handle(self) -> None:
        self.send_message(self.data)


class Subscriber(Connection):
    """A client of a channel: subscribed while connected; what it sends is ignored."""

    channel = ""

    def connected(self) -> None:
        self.server.hub.subscribe(self.channel, self)
        self.greet()

    def greet(self) -> None:
        """What a new subscriber is sent first."""

    def handle(self) -> None:
        pass

    def handle_close(self) -> None:
        self.server.hub.unsubscribe(self.channel, self)


class Chat(Subscriber):
    """Every message any chat client sends goes to every chat client, the sender included.

    Each message costs a frame per subscriber, so each client has a rate limit
    (`--rate-limit`, messages per second, bursts of twice that): over it, it is closed with
    1008 and a reason that says so.
    """

    channel = CHAT

    def connected(self) -> None:
        rate_per_s = self.server.settings.rate_limit_per_s
        self._bucket = (
            TokenBucket(rate_per_s, rate_per_s * defaults.RATE_LIMIT_BURST_S, self.server.loop.time)
            if rate_per_s
            else None
        )
        super().connected()

    def handle(self) -> None:
        if self._bucket is not None and not self._bucket.take():
            log.warning("closing %s: over the rate limit", self.address)
            self.close(
                CloseCode.POLICY_VIOLATION,
                f"rate limit: over {self._bucket.rate_per_s:g} messages/s",
            )
            return
        self.server.publish(CHAT, self.data)


class Tick(Subscriber):
    """One tick a second, the same number at the same moment for everyone."""

    channel = TICK

    def greet(self) -> None:
        self.send_message(self.server.ticker.message())


class Stream(Subscriber):
    """A shared value that grows by 1-10 at random moments, 0-1 s apart."""

    channel = STREAM

    def greet(self) -> None:
        self.send_message(self.server.random_walk.message())


class StatsFeed(Subscriber):
    """The server's statistics (as `GET /stats` gives them), once a second."""

    channel = STATS

    def greet(self) -> None:
        self.send_message(to_json(self.server.statistics()))


class Ticker:
    """Counts seconds since the server started and publishes each one.

    Deadlines are start + n seconds, so ticks do not drift however late a callback runs. With
    --redis only the cluster's leader counts; the others take `tick` from it (cluster.py).
    """

    def __init__(self, server: Server, interval_s: float = defaults.TICK_INTERVAL_S) -> None:
        self.server = server
        self.interval_s = interval_s
        self.tick = 0
        # A repeating timer: it keeps its deadlines (no drift) and survives a failing call.
        server.loop.call_every(interval_s, self._fire)

    def message(self) -> str:
        return to_json({"tick": self.tick, "time": unix_time_s()})

    def _fire(self) -> None:
        if self.server.is_producer:
            self.tick += 1
            self.server.publish(TICK, self.message())
        # The statistics feed rides on the tick: one timer a second serves both.
        if self.server.hub.count(STATS):
            self.server.publish(STATS, to_json(self.server.statistics()))


class RandomWalk:
    """One shared value: at random intervals of 0-1 s it grows by a random integer of 1-10."""

    def __init__(
        self,
        server: Server,
        max_gap_s: float = defaults.STREAM_MAX_GAP_S,
        rng: random.Random | None = None,
    ) -> None:
        self.server = server
        self.max_gap_s = max_gap_s
        self.value = 0
        self._rng = rng or random.Random()
        self._schedule()

    def message(self) -> str:
        return to_json({"variable": self.value, "time": unix_time_s()})

    def _schedule(self) -> None:
        self.server.loop.call_later(self._rng.uniform(0.0, self.max_gap_s), self._fire)

    def _fire(self) -> None:
        self._schedule()  # first, so that a failure below cannot stop the stream
        if self.server.is_producer:  # with --redis, the cluster's leader (cluster.py)
            self.value += self._rng.randint(1, 10)
            self.server.publish(STREAM, self.message())


ROUTES: dict[str, type[Connection]] = {
    "/": Echo,
    "/echo": Echo,
    "/chat": Chat,
    "/tick": Tick,
    "/stream": Stream,
    "/stats": StatsFeed,
}
