"""Several echo servers as one, through Redis (`--redis`): shared chat, one tick, cluster totals.

With a `Cluster`, what the routes publish on chat, tick and stream goes to a Redis channel
(`echo_server:chat`, `echo_server:tick`, `echo_server:stream`) instead of straight to the local
subscribers, and every node, this one included, delivers what comes back from its subscription.
So a subscriber on any node gets each message once, and all of them in the one order Redis gave.
On Redis a message is one byte of type (`t` text, `b` binary) and then the message's bytes.

The tick and the stream have one producer for the whole cluster: the leader, the node holding
the key `echo_server:leader` (taken with SET NX PX, renewed each second by a script that checks
it still owns it, so a leader that dies is replaced once the key expires). The others follow the
numbers they receive, so that a new leader goes on from the last tick and value everyone saw.

While Redis is down (redisbus.py reconnects by itself) every node is on its own again: it
delivers what it publishes directly and makes its own tick and stream, from where it was.

Each node also writes its statistics to the hash `echo_server:stats` every second and reads
everyone's back; /stats shows the sum of the fresh ones under "cluster".

Not here: the Redis connections themselves (redisbus.py), the routes (routes.py).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING

from echo_server import defaults
from echo_server.loop import Timer
from echo_server.redisbus import RedisBus, RedisLostError, Reply
from echo_server.routes import CHAT, STREAM, TICK

if TYPE_CHECKING:
    from echo_server.server import Server

log = logging.getLogger("echo_server")

PREFIX = "echo_server:"
CHANNELS = {name: f"{PREFIX}{name}".encode() for name in (CHAT, TICK, STREAM)}
LOCAL_CHANNELS = {redis_name: name for name, redis_name in CHANNELS.items()}
LEADER_KEY = f"{PREFIX}leader"
STATS_KEY = f"{PREFIX}stats"
TEXT = b"t"
BINARY = b"b"
# Renew the lease only if this node still holds it: after an expiry another node may have it.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
COUNTED = ("connections", "messages_in", "messages_out", "bytes_in", "bytes_out")


def new_node_id() -> str:
    """Unique per process, and says where it runs: host name, process id, a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def encode_payload(data: str | bytes | bytearray | memoryview) -> bytes:
    if isinstance(data, str):
        return TEXT + data.encode()
    return BINARY + bytes(data)


def decode_payload(payload: bytes) -> str | bytes:
    """The message in a payload from Redis; ValueError if it is not one of ours."""
    kind, data = payload[:1], payload[1:]
    if kind == TEXT:
        return data.decode()
    if kind == BINARY:
        return data
    raise ValueError(f"unknown message type {kind!r}")


def sum_fresh(entries: dict[str, dict[str, float]], now_s: float) -> dict[str, int]:
    """Cluster totals: the entries written in the last CLUSTER_STATS_FRESH_S, added up."""
    totals = dict.fromkeys(("nodes", *COUNTED), 0)
    for entry in entries.values():
        if now_s - entry["time"] <= defaults.CLUSTER_STATS_FRESH_S:
            totals["nodes"] += 1
            for name in COUNTED:
                totals[name] += int(entry[name])
    return totals


class Cluster:
    """This node's part in the cluster: publishing, following the leader, sharing statistics."""

    def __init__(self, server: Server, url: str) -> None:
        self.server = server
        self.node_id = new_node_id()
        self.leader = False  # this node may hold the lease; `is_leader` says whether it still does
        self._lease_until_s = 0.0
        self._entries: dict[str, dict[str, float]] = {}  # every node's last statistics, by node id
        self._stopping = False
        self.bus = RedisBus(server.loop, url, list(CHANNELS.values()), self._receive, self._changed)
        self.bus.start()
        self._timer: Timer | None = server.loop.call_later(defaults.CLUSTER_BEAT_S, self._beat)

    @property
    def is_leader(self) -> bool:
        return self.leader and self.bus.up and self.server.loop.time() < self._lease_until_s

    @property
    def producing(self) -> bool:
        """Whether this node makes the tick and the stream: as leader, or alone without Redis."""
        return not self.bus.up or self.is_leader

    def publish(self, channel: str, data: str | bytes | bytearray | memoryview) -> bool:
        """Publish through Redis; False if this channel is local or the bus is down."""
        redis_channel = CHANNELS.get(channel)
        return redis_channel is not None and self.bus.publish(redis_channel, encode_payload(data))

    def statistics(self) -> dict[str, object]:
        """/stats "cluster": this node, and the totals of the nodes seen in the last seconds.

        While Redis is down the totals are this node's own: the others' cannot be known.
        """
        if self.bus.up and self._entries:
            totals = sum_fresh(self._entries, time.time())
        else:
            totals = {"nodes": 1, **self._own_statistics()}
        return {
            "node": self.node_id,
            "redis": "up" if self.bus.up else "down",
            "leader": self.is_leader,
            **totals,
        }

    def shutdown(self) -> None:
        """Stopping: hand the lease on at once, rather than at its expiry, and leave the totals."""
        self._stopping = True
        if self.leader:
            self.bus.command("EVAL", RELEASE_SCRIPT, 1, LEADER_KEY, self.node_id)
            self._set_leader(False)
        self.bus.command("HDEL", STATS_KEY, self.node_id)

    def close(self) -> None:
        self._stopping = True
        self.server.loop.cancel(self._timer)
        self.bus.close()

    # Receiving.

    def _receive(self, redis_channel: bytes, payload: bytes) -> None:
        channel = LOCAL_CHANNELS.get(redis_channel)
        try:
            if channel is None:
                raise ValueError(f"not our channel: {redis_channel!r}")
            data = decode_payload(payload)
        except ValueError as error:
            log.warning("redis: dropped a message: %s", error)
            return
        if channel != CHAT and not self.producing:
            self._follow(channel, data)
        self.server.hub.publish(channel, data)

    def _follow(self, channel: str, data: str | bytes) -> None:
        """Keep the leader's numbers, to greet new subscribers and to go on from if it dies."""
        try:
            message = json.loads(data)
            if channel == TICK:
                self.server.ticker.tick = int(message["tick"])
            elif channel == STREAM:
                self.server.random_walk.value = int(message["variable"])
        except (ValueError, KeyError, TypeError):
            pass  # not in the shape of ours: nothing to follow

    def _changed(self, up: bool) -> None:
        if up:
            self._beat()  # claim or renew the lease now, not a second later
        else:
            # Redis may have lost the key; when it is back, the lease counts only once renewed.
            self._lease_until_s = 0.0

    # Each second: the lease, and the statistics.

    def _beat(self) -> None:
        self.server.loop.cancel(self._timer)
        self._timer = self.server.loop.call_later(defaults.CLUSTER_BEAT_S, self._beat)
        if self._stopping or not self.bus.up:
            return
        self._elect()
        entry = {"time": time.time(), **self._own_statistics()}
        self.bus.command("HSET", STATS_KEY, self.node_id, json.dumps(entry))
        self.bus.command("HGETALL", STATS_KEY, callback=self._read_statistics)

    def _elect(self) -> None:
        sent_s = self.server.loop.time()
        ttl_ms = round(defaults.LEADER_TTL_S * 1000)

        def renewed(reply: Reply) -> None:
            if not isinstance(reply, RedisLostError):  # no answer says nothing about the lease
                self._leased(reply == 1, sent_s)

        def taken(reply: Reply) -> None:
            if not isinstance(reply, RedisLostError):
                self._leased(reply == b"OK", sent_s)

        if self.leader:
            self.bus.command(
                "EVAL", RENEW_SCRIPT, 1, LEADER_KEY, self.node_id, ttl_ms, callback=renewed
            )
        else:
            self.bus.command("SET", LEADER_KEY, self.node_id, "NX", "PX", ttl_ms, callback=taken)

    def _leased(self, held: bool, sent_s: float) -> None:
        if self._stopping:
            return
        if held:
            # The key expires LEADER_TTL_S after Redis got the command, so no sooner than this
            # (a beat is kept in hand, so that the lease ends here before it ends in Redis).
            self._lease_until_s = sent_s + defaults.LEADER_TTL_S - defaults.CLUSTER_BEAT_S
        was_leader = self.leader
        self._set_leader(held)
        if was_leader and not held:
            self._elect()  # the key may simply be gone (Redis restarted): try to take it

    def _set_leader(self, leader: bool) -> None:
        if leader != self.leader:
            self.leader = leader
            if leader:
                log.info("cluster: node %s leads: it makes the tick and the stream", self.node_id)
            else:
                log.info("cluster: node %s no longer leads", self.node_id)

    def _own_statistics(self) -> dict[str, int]:
        stats = self.server.stats
        return {
            "connections": len(self.server.connections),
            "messages_in": stats.messages_in,
            "messages_out": stats.messages_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
        }

    def _read_statistics(self, reply: Reply) -> None:
        if not isinstance(reply, list):
            return
        now_s = time.time()
        entries: dict[str, dict[str, float]] = {}
        forget: list[bytes] = []
        for node, value in zip(reply[::2], reply[1::2], strict=True):
            try:
                written = json.loads(value)
                entry = {name: float(written[name]) for name in ("time", *COUNTED)}
            except (ValueError, KeyError, TypeError):
                forget.append(node)
                continue
            if now_s - entry["time"] > defaults.CLUSTER_STATS_FORGET_S:
                forget.append(node)  # a node that died without saying so
            else:
                entries[node.decode(errors="replace")] = entry
        self._entries = entries
        if forget:
            self.bus.command("HDEL", STATS_KEY, *forget)
