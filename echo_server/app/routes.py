"""What each WebSocket path does: echo, inspect, chat, tick, stream, stats. Each is a Connection.

A route's handler only decides what to send; the connection does the framing, the limits and
the closing. The routes reach the application (its hub, its producers, its statistics) through
`RouteHost`, which `make_routes(app)` gives each route class it makes; they never reach through
the server. Nothing here blocks.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qs

from echo_server import defaults
from echo_server.app.broadcast import CHAT, STATS_FEED, STREAM, TICK, Hub, series_channel
from echo_server.app.echo import Echo, Inspect
from echo_server.app.producers import to_json
from echo_server.app.ratelimit import TokenBucket
from echo_server.app.series import NAME_RULE, Series, SeriesStore, valid_name
from echo_server.core.connection import Connection, ConnectionFactory, Host
from echo_server.protocol.frames import CloseCode
from echo_server.protocol.http import HttpError, Request

log = logging.getLogger(__name__)


class RouteHost(Protocol):
    """What the routes need of the application."""

    hub: Hub
    series: SeriesStore

    def publish(self, channel: str, data: str | bytes) -> int: ...
    def tick_message(self) -> str: ...
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
    """The points of every series (the demo's, and what is published), each history first.

    `/stream?series=NAME` is one series only. A query naming no valid series is refused before
    the upgrade, with 400 (an HttpError raised here, while the request is still an upgrade).
    """

    channel = STREAM

    def __init__(self, server: Host, sock: socket.socket, address: Any, request: Request) -> None:
        names = parse_qs(request.query, keep_blank_values=True).get("series", [])
        if len(names) > 1 or (names and not valid_name(names[0])):
            raise HttpError(400, f"?series= must be one series name: {NAME_RULE}.")
        super().__init__(server, sock, address, request)
        self.only = names[0] if names else None
        if self.only is not None:
            self.channel = series_channel(self.only)

    def greet(self) -> None:
        store = self.app.series
        if self.only is None:
            for series in store:
                self.send_message(series.history_message())
            return
        # A series not published yet: an empty history, so the client knows where it stands.
        series = store.get(self.only) or Series(self.only, keep=0)
        self.send_message(series.history_message())


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
