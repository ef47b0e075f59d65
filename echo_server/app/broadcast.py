"""Channels of subscribers, and publishing to all of them without letting one slow them down.

A message is encoded into a frame once and the same bytes are queued for every subscriber. A
subscriber whose unsent data is past its write limit when a message arrives is closed with 1008
("too slow") instead of being given more: the others are never delayed and memory stays bounded.

The channels the routes use are named here. Not a message queue: nothing is kept for subscribers
who are not connected.
"""

from __future__ import annotations

from echo_server.core.connection import Connection
from echo_server.protocol.frames import encode_message

# The channels: /chat's messages (and /notify's), the tick, the stream, the statistics feed.
CHAT = "chat"
TICK = "tick"
STREAM = "stream"  # every point of every series (/stream); the demo's, through the cluster
STATS_FEED = "stats"
# Points published to the other series, through the cluster (--redis); locally each goes to
# STREAM and to its own series' channel (/stream?series=NAME).
SERIES = "series"


def series_channel(name: str) -> str:
    """The channel of one series' points (`/stream?series=NAME`)."""
    return f"{STREAM}:{name}"


class Hub:
    def __init__(self) -> None:
        # A dict per channel: a set that keeps subscription order, so delivery order is stable.
        self._channels: dict[str, dict[Connection, None]] = {}

    def subscribe(self, channel: str, connection: Connection) -> None:
        self._channels.setdefault(channel, {})[connection] = None

    def unsubscribe(self, channel: str, connection: Connection) -> None:
        subscribers = self._channels.get(channel)
        if subscribers is not None:
            subscribers.pop(connection, None)

    def count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    def publish(self, channel: str, data: str | bytes | bytearray | memoryview) -> int:
        """Send `data` to every subscriber of `channel`; return how many were given it."""
        subscribers = self._channels.get(channel)
        if not subscribers:
            return 0
        frame = encode_message(data)
        # A copy: a subscriber closed for being too slow unsubscribes during the loop.
        return sum(connection.send_shared(frame) for connection in list(subscribers))
