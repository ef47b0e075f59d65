"""The echo server as a product: the one place that wires a server from its settings.

`App(settings)` makes the loop, the broadcast `Hub`, the series store, the producers of the tick
and the demo series, this machine's names, the metrics, and a core `Server` given the routes
(`make_routes(app)`) and the plain HTTP endpoints (`Endpoints(app)`). It is what the routes and
the endpoints reach: publishing, notify, the statistics. Nothing below it imports it.

Every point of a series, the demo's or a published one, arrives in `deliver`, which keeps it
in the store and sends it to /stream and to /stream?series=NAME: so a page that connects later
is greeted with the history of each series.

With `--redis` the cluster layer plugs a `Fanout` in (cluster/node.py, `join`): chat, tick, the
demo and published points then go through Redis and come back to every node's `deliver`, and
only the cluster's leader produces the tick and the demo. Without it, everything is local.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

from echo_server import defaults
from echo_server.app.broadcast import CHAT, SERIES, STATS_FEED, STREAM, TICK, Hub, series_channel
from echo_server.app.endpoints import Endpoints
from echo_server.app.machinenames import MachineNames
from echo_server.app.metrics import CONTENT_TYPE, Metrics
from echo_server.app.producers import RandomWalk, Ticker, to_json
from echo_server.app.refusals import Refusals
from echo_server.app.routes import make_routes
from echo_server.app.series import DEMO, Point, SeriesStore, TooManySeriesError
from echo_server.core.logthrottle import LogThrottle
from echo_server.core.loop import Loop
from echo_server.core.server import Server
from echo_server.settings import Settings

log = logging.getLogger(__name__)


class Fanout(Protocol):
    """Publishing beyond this process (the cluster layer's Redis node)."""

    @property
    def producing(self) -> bool:
        """Whether this process makes the tick and the demo (the cluster has one leader)."""
        ...

    @property
    def up(self) -> bool:
        """Whether the connection beyond (to Redis) is up."""
        ...

    @property
    def is_leader(self) -> bool: ...

    def publish(self, channel: str, data: str | bytes) -> bool:
        """Publish to every node (this one included); False when it cannot (Redis is down)."""
        ...

    def statistics(self) -> dict[str, object]: ...


class App:
    def __init__(self, settings: Settings, loop: Loop | None = None) -> None:
        self.settings = settings
        self.loop = loop or Loop(selector=settings.selector)
        self.hub = Hub()
        self.series = SeriesStore(settings.max_series)
        self.fanout: Fanout | None = None
        self.machine_names = MachineNames.started(self.loop, defaults.MACHINE_NAMES_REFRESH_S)
        self.refusals = Refusals(self.loop.time)
        self.server = Server(settings, make_routes(self), http=Endpoints(self), loop=self.loop)
        self.server.on_refused(self.refusals.record)
        self.ticker = Ticker(self.loop, self.publish, self.producing, on_tick=self._stats_feed)
        # Points that cannot be kept (from Redis: a series past --max-series, or not ours).
        self._dropped = LogThrottle(log, defaults.LOG_THROTTLE_S, self.loop.time)
        self.random_walk = RandomWalk(self.loop, self.publish_point, self.producing)
        self._record(self.random_walk.point())  # the demo starts at 0, now
        self.exporter = Metrics(self, self.loop)

    # What the routes and the endpoints use.

    def publish(self, channel: str, data: str | bytes) -> int:
        """Send `data` to every subscriber of `channel`; return how many here were given it.

        Through the fanout when there is one and it is up: the message then comes back to every
        node's subscribers, this one's included (`deliver`), and the count is this node's.
        """
        if self.fanout is not None and self.fanout.publish(channel, data):
            return self.hub.count(channel)
        return self.hub.publish(channel, data)

    def publish_point(self, point: Point) -> int:
        """Publish a point of a series; return how many /stream clients here were given it.

        The demo's go on the stream channel (the cluster's followers follow its value), the
        others on the series channel. Either way they come back to `deliver`.
        """
        channel = STREAM if point.series == DEMO else SERIES
        data = point.message()
        if self.fanout is not None and self.fanout.publish(channel, data):
            return self.hub.count(STREAM) + self.hub.count(series_channel(point.series))
        return self._record(point, data)

    def publish_points(self, points: Sequence[Point]) -> int:
        """Points from /publish (checked there: names, values, room for new series)."""
        delivered = sum(self.publish_point(point) for point in points)
        log.debug("publish: %d point(s), %d message(s) sent", len(points), delivered)
        return delivered

    @property
    def stopping(self) -> bool:
        return self.server.stopping

    def metrics(self) -> tuple[bytes, str]:
        return self.exporter.exposition(), CONTENT_TYPE

    def redis_state(self) -> tuple[bool, bool] | None:
        if self.fanout is None:
            return None
        return self.fanout.up, self.fanout.is_leader

    def notify(self, message: str) -> int:
        """A message from /notify: to every chat client."""
        delivered = self.publish(CHAT, message)
        log.info("notify: delivered to %d chat client(s)", delivered)
        return delivered

    def tick_message(self) -> str:
        return self.ticker.message()

    def producing(self) -> bool:
        """Whether this process makes the tick and the demo (with --redis, one node does)."""
        return self.fanout is None or self.fanout.producing

    def statistics(self) -> dict[str, Any]:
        server = self.server
        per_route = dict.fromkeys(sorted(server.routes), 0)
        for connection in server.connections.values():
            per_route[connection.route] = per_route.get(connection.route, 0) + 1
        stats = server.stats
        answer: dict[str, Any] = {
            "uptime_s": round(time.time() - stats.started_s, 3),
            "connections": {
                "total": len(server.connections),
                "handshaking": len(server.upgrades),
                "per_route": per_route,
            },
            "accepted": stats.accepted,
            "refused": stats.refused,
            "refused_by_status": {
                str(status): count for status, count in sorted(stats.handshakes_refused.items())
            },
            "messages_in": stats.messages_in,
            "messages_out": stats.messages_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
            "series": len(self.series),
            "selector": self.loop.poller.name,  # the readiness API the loop waits with
            # With --workers, each process answers for itself: say which one this is.
            "worker": {
                "index": self.settings.worker_index,
                "pid": os.getpid(),
                "workers": self.settings.workers,
            },
        }
        if self.fanout is not None:
            answer["cluster"] = self.fanout.statistics()
        return answer

    # What the fanout calls.

    def deliver(self, channel: str, data: str | bytes) -> None:
        """A message that came back through the fanout: to this node's subscribers.

        A point (on the stream or series channel) is kept first. It was checked by the fanout
        (Redis is untrusted input); it is read again here, and one that names the wrong series
        for its channel, or a new series past --max-series, is dropped.
        """
        if channel not in (STREAM, SERIES):
            self.hub.publish(channel, data)
            return
        try:
            point = Point.from_message(data)
            if (point.series == DEMO) != (channel == STREAM):
                raise ValueError(f"series {point.series!r} on the {channel} channel")
        except ValueError as error:
            self._dropped.log("dropped a point: %s", str(error)[:200])
            return
        self._record(point, data)

    def _record(self, point: Point, data: str | bytes | None = None) -> int:
        """Keep `point` and send it to /stream and to its series' subscribers."""
        try:
            self.series.add(point)
        except TooManySeriesError as error:
            self._dropped.log("dropped a point of %r: %s", point.series, error)
            return 0
        message = point.message() if data is None else data
        return self.hub.publish(STREAM, message) + self.hub.publish(
            series_channel(point.series), message
        )

    def follow(self, channel: str, number: int) -> None:
        """The leader's tick or demo value: kept, to greet with and to go on from."""
        if channel == TICK:
            self.ticker.follow(number)
        elif channel == STREAM:
            self.random_walk.follow(number)

    def counters(self) -> dict[str, int]:
        """This node's own numbers, for the cluster totals."""
        stats = self.server.stats
        return {
            "connections": len(self.server.connections),
            "messages_in": stats.messages_in,
            "messages_out": stats.messages_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
        }

    def _stats_feed(self) -> None:
        if self.hub.count(STATS_FEED):
            self.hub.publish(STATS_FEED, to_json(self.statistics()))
