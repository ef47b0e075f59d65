"""The echo server as a product: the one place that wires a server from its settings.

`App(settings)` makes the loop, the broadcast `Hub`, the producers of the tick and the stream,
this machine's names, and a core `Server` given the routes (`make_routes(app)`) and the plain
HTTP endpoints (`Endpoints(app)`). It is what the routes and the endpoints reach: publishing,
notify, the statistics. Nothing below it imports it.

With `--redis` the cluster layer plugs a `Fanout` in (cluster/node.py, `join`): chat, tick and
stream then go through Redis and come back to every node's subscribers, and only the cluster's
leader produces the tick and the stream. Without it, everything is local.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Protocol

from echo_server import defaults
from echo_server.app.broadcast import CHAT, STATS_FEED, STREAM, TICK, Hub
from echo_server.app.endpoints import Endpoints
from echo_server.app.machinenames import MachineNames
from echo_server.app.producers import RandomWalk, Ticker, to_json
from echo_server.app.refusals import Refusals
from echo_server.app.routes import make_routes
from echo_server.core.loop import Loop
from echo_server.core.server import Server
from echo_server.settings import Settings

log = logging.getLogger(__name__)


class Fanout(Protocol):
    """Publishing beyond this process (the cluster layer's Redis node)."""

    @property
    def producing(self) -> bool:
        """Whether this process makes the tick and the stream (the cluster has one leader)."""
        ...

    def publish(self, channel: str, data: str | bytes) -> bool:
        """Publish to every node (this one included); False when it cannot (Redis is down)."""
        ...

    def statistics(self) -> dict[str, object]: ...


class App:
    def __init__(self, settings: Settings, loop: Loop | None = None) -> None:
        self.settings = settings
        self.loop = loop or Loop(selector=settings.selector)
        self.hub = Hub()
        self.fanout: Fanout | None = None
        self.machine_names = MachineNames.started(self.loop, defaults.MACHINE_NAMES_REFRESH_S)
        self.refusals = Refusals(self.loop.time)
        self.server = Server(settings, make_routes(self), http=Endpoints(self), loop=self.loop)
        self.server.on_refused(self.refusals.record)
        self.ticker = Ticker(self.loop, self.publish, self.producing, on_tick=self._stats_feed)
        self.random_walk = RandomWalk(self.loop, self.publish, self.producing)

    # What the routes and the endpoints use.

    def publish(self, channel: str, data: str | bytes) -> int:
        """Send `data` to every subscriber of `channel`; return how many here were given it.

        Through the fanout when there is one and it is up: the message then comes back to every
        node's subscribers, this one's included (`deliver`), and the count is this node's.
        """
        if self.fanout is not None and self.fanout.publish(channel, data):
            return self.hub.count(channel)
        return self.hub.publish(channel, data)

    def notify(self, message: str) -> int:
        """A message from /notify: to every chat client."""
        delivered = self.publish(CHAT, message)
        log.info("notify: delivered to %d chat client(s)", delivered)
        return delivered

    def tick_message(self) -> str:
        return self.ticker.message()

    def stream_message(self) -> str:
        return self.random_walk.message()

    def producing(self) -> bool:
        """Whether this process makes the tick and the stream (with --redis, one node does)."""
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
                str(status): count for status, count in sorted(stats.refused_by_status.items())
            },
            "messages_in": stats.messages_in,
            "messages_out": stats.messages_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
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
        """A message that came back through the fanout: to this node's subscribers."""
        self.hub.publish(channel, data)

    def follow(self, channel: str, number: int) -> None:
        """The leader's tick or stream value: kept, to greet with and to go on from."""
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
