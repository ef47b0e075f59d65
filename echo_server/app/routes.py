"""What each WebSocket path does: echo, inspect, chat, tick, stream, stats. Each is a Connection.

A route's handler only decides what to send; the connection does the framing, the limits and
the closing. The routes reach the application (its hub, its producers, its statistics) through
`RouteHost`, which `make_routes(app)` gives each route class it makes; they never reach through
the server. Nothing here blocks.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Protocol

from echo_server import defaults
from echo_server.app.broadcast import CHAT, STATS_FEED, STREAM, TICK, Hub
from echo_server.app.echo import Echo, Inspect
from echo_server.app.producers import to_json
from echo_server.app.ratelimit import TokenBucket
from echo_server.core.connection import Connection, ConnectionFactory
from echo_server.protocol.frames import CloseCode

log = logging.getLogger(__name__)


class RouteHost(Protocol):
    """What the routes need of the application."""

    hub: Hub

    def publish(self, channel: str, data: str | bytes) -> int: ...
    def tick_message(self) -> str: ...
    def stream_message(self) -> str: ...
    def statistics(self) -> dict[str, Any]: ...


class Route(Connection):
    """A connection of the application's: `app` is set by make_routes."""

    app: ClassVar[RouteHost]


class Subscriber(Route):
    """A client of a channel: subscribed while connected; what it sends is ignored."""

    channel = ""

    def connected(self) -> None:
        self.app.hub.subscribe(self.channel, self)
        self.greet()

    def greet(self) -> None:
        """What a new subscriber is sent first."""

    def handle_close(self) -> None:
        self.app.hub.unsubscribe(self.channel, self)


class Chat(Subscriber):
    """Every message any chat client sends goes to every chat client, the sender included.

    Each message costs a frame per subscriber, so each client has a rate limit
    (`--rate-limit`, messages per second, bursts of twice that): over it, it is closed with
    1008 and a reason that says so.
    """

    channel = CHAT

    def connected(self) -> None:
        rate_per_s = self.server.settings.rate_limit_per_s
        burst = rate_per_s * defaults.RATE_LIMIT_BURST_S
        self._bucket = TokenBucket(rate_per_s, burst, self.server.loop.time) if rate_per_s else None
        super().connected()

    def handle(self) -> None:
        if self._bucket is not None and not self._bucket.take():
            log.warning("closing %s: over the rate limit", self.address)
            self.close(
                CloseCode.POLICY_VIOLATION,
                f"rate limit: over {self._bucket.rate_per_s:g} messages/s",
            )
            return
        self.app.publish(CHAT, self.data)


class Tick(Subscriber):
    """One tick a second, the same number at the same moment for everyone."""

    channel = TICK

    def greet(self) -> None:
        self.send_message(self.app.tick_message())


class Stream(Subscriber):
    """A shared value that grows by 1-10 at random moments, 0-1 s apart."""

    channel = STREAM

    def greet(self) -> None:
        self.send_message(self.app.stream_message())


class StatsFeed(Subscriber):
    """The server's statistics (as `GET /stats` gives them), once a second."""

    channel = STATS_FEED

    def greet(self) -> None:
        self.send_message(to_json(self.app.statistics()))


ROUTES: dict[str, type[Connection]] = {
    "/": Echo,
    "/echo": Echo,
    "/inspect": Inspect,
    "/chat": Chat,
    "/tick": Tick,
    "/stream": Stream,
    "/stats": StatsFeed,
}


def make_routes(app: RouteHost) -> dict[str, ConnectionFactory]:
    """The routes of `app`: each route class, subclassed with `app` set."""
    bound: dict[type[Connection], ConnectionFactory] = {}
    for route in ROUTES.values():
        if route not in bound:
            bound[route] = type(route.__name__, (route,), {"app": app})
    return {path: bound[route] for path, route in ROUTES.items()}
