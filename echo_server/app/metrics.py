"""`GET /metrics`: the server's counts in the Prometheus text format, and the loop's lag.

The numbers are read when a scrape asks for them, from what the server counts anyway
(`core.stats.Stats`, its connections, the series store, the Redis node): nothing is counted
twice and nothing is paid between scrapes. prometheus_client formats them (its own registry per
server, never the global one, so that servers in one process do not mix), with its standard
process metrics (CPU, memory, descriptors) from /proc.

The one thing measured here is loop lag: a loop timer (`LagProbe`) every LOOP_LAG_PROBE_S notes
how late it runs, in a histogram. A loop kept busy (a flood, a slow callback) runs its timers
late; an idle one runs them within a millisecond.

Not here: who may read it (anyone who may read /stats: see endpoints.py), the statistics JSON
(app.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from echo_server import defaults
from echo_server.app.series import SeriesStore
from echo_server.core.loop import Loop
from echo_server.core.server import Server
from echo_server.settings import Settings

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "echo_server_"
# Loop lag: an idle loop is within the first bucket; a second's lag means clients waited.
LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsSource(Protocol):
    """What the metrics read of the application."""

    settings: Settings
    server: Server
    series: SeriesStore

    def redis_state(self) -> tuple[bool, bool] | None:
        """(Redis is up, this node leads) with --redis; None without."""
        ...


class LagProbe:
    """A loop timer every `interval_s` that tells `observe` how late it ran, in seconds."""

    def __init__(self, loop: Loop, interval_s: float, observe: Callable[[float], None]) -> None:
        self._loop = loop
        self._interval_s = interval_s
        self._observe = observe
        self._due = loop.time() + interval_s
        self._timer = loop.call_later(interval_s, self._fire)

    def _fire(self) -> None:
        now = self._loop.time()
        self._observe(max(0.0, now - self._due))
        self._due = now + self._interval_s
        self._timer = self._loop.call_later(self._interval_s, self._fire)

    def stop(self) -> None:
        self._loop.cancel(self._timer)


class ServerCollector(Collector):
    """The server's counts, read at each scrape."""

    def __init__(self, source: MetricsSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        source = self.source
        server = source.server
        stats = server.stats
        per_route = dict.fromkeys(sorted(server.routes), 0)
        for connection in server.connections.values():
            per_route[connection.route] = per_route.get(connection.route, 0) + 1
        yield _gauge("connections", "Open WebSocket connections, by route.", "route", per_route)
        yield _gauge(
            "handshaking",
            "Sockets still in their TLS or HTTP handshake.",
            "",
            {"": len(server.upgrades)},
        )
        yield _counter("connections_accepted", "Connections accepted.", "", {"": stats.accepted})
        yield _counter(
            "connections_over_limit",
            "Connections answered 503 at once, over --max-connections or out of descriptors.",
            "",
            {"": stats.refused},
        )
        directions = {"in": stats.messages_in, "out": stats.messages_out}
        yield _counter("messages", "WebSocket messages received and sent.", "direction", directions)
        directions = {"in": stats.bytes_in, "out": stats.bytes_out}
        yield _counter("bytes", "Bytes received and queued to send.", "direction", directions)
        yield _counter(
            "handshakes_refused",
            "WebSocket upgrades refused, by the HTTP status sent.",
            "status",
            {str(status): count for status, count in sorted(stats.handshakes_refused.items())},
        )
        yield _counter(
            "http_requests",
            "Plain HTTP requests answered on the WebSocket port (/publish, ...), by status.",
            "status",
            {str(status): count for status, count in sorted(stats.plain_requests.items())},
        )
        yield _counter(
            "closes",
            "Connections closed, by the code of their closing handshake (1006: none).",
            "code",
            {str(code): count for code, count in sorted(stats.closes.items())},
        )
        store = source.series
        yield _gauge("series", "Series kept for /stream (the demo included).", "", {"": len(store)})
        yield _counter(
            "points", "Points of all series kept since start.", "", {"": store.points_added}
        )
        settings = source.settings
        info = GaugeMetricFamily(
            PREFIX + "info",
            "This server: the readiness API, which worker of how many.",
            labels=["selector", "worker", "workers"],
        )
        info.add_metric(
            [server.loop.poller.name, str(settings.worker_index), str(settings.workers)], 1
        )
        yield info
        redis = source.redis_state()
        if redis is not None:
            up, leader = redis
            yield _gauge(
                "redis_up", "1 while the Redis connection is up (--redis).", "", {"": int(up)}
            )
            yield _gauge(
                "cluster_leader",
                "1 while this node makes the tick and the demo.",
                "",
                {"": int(leader)},
            )


def _gauge(name: str, help_text: str, label: str, values: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(PREFIX + name, help_text, labels=[label] if label else None)
    _add(family, label, values)
    return family


def _counter(name: str, help_text: str, label: str, values: dict[str, int]) -> Metric:
    family = CounterMetricFamily(PREFIX + name, help_text, labels=[label] if label else None)
    _add(family, label, values)
    return family


def _add(
    family: GaugeMetricFamily | CounterMetricFamily, label: str, values: dict[str, int]
) -> None:
    for key, value in values.items():
        family.add_metric([key] if label else [], value)


class Metrics:
    """One server's metrics: its registry, and the loop lag probe (started here)."""

    def __init__(self, source: MetricsSource, loop: Loop) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServerCollector(source))
        ProcessCollector(registry=self.registry)
        self.lag = Histogram(
            PREFIX + "loop_lag_seconds",
            f"How late a loop timer runs (one every {defaults.LOOP_LAG_PROBE_S:g} s).",
            buckets=LAG_BUCKETS_S,
            registry=self.registry,
        )
        self.probe = LagProbe(loop, defaults.LOOP_LAG_PROBE_S, self.lag.observe)

    def exposition(self) -> bytes:
        """The text format a Prometheus scrape reads."""
        return generate_latest(self.registry)

    def families(self) -> Iterable[Metric]:
        return self.registry.collect()
