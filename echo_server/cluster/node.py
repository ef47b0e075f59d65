"""Several echo servers as one, through Redis (`--redis`): shared chat, one tick, cluster totals.

With a `Node`, what the routes publish on chat, tick, stream (the demo series) and series (the
published points) goes to a Redis channel (`echo_server:chat`, `echo_server:tick`,
`echo_server:stream`, `echo_server:series`) instead of straight to the local subscribers, and
every node, this one included, delivers what comes back from its subscription (and keeps the
points, so that every node greets new /stream clients with the same history).
So a subscriber on any node gets each message once, and all of them in the one order Redis gave.
On Redis a message is one byte of type (`t` text, `b` binary) and then the message's bytes.

The tick and the stream have one producer for the whole cluster: the leader, the node holding
the key `echo_server:leader` (taken with SET NX PX, renewed each second by a script that checks
it still owns it, so a leader that dies is replaced once the key expires). The others follow the
numbers they receive, so that a new leader goes on from the last tick and value everyone saw.

While Redis is down (redisbus.py reconnects by itself) every node is on its own again: it
delivers what it publishes directly and makes its own tick and stream, from where it was.

Each node also writes its statistics every second, as JSON, to its own key
`echo_server:node:<id>`, which expires by itself (CLUSTER_STATS_FORGET_S), and notes the time in
the sorted set `echo_server:nodes`; then it reads back those of the nodes noted in the last few
seconds, newest first and at most MAX_CLUSTER_NODES of them, and /stats shows their sum under
"cluster". All of that is one Lua script per beat (`STATS_SCRIPT`), so its cost is bounded
whatever else is in Redis, and stale entries are swept out of the set a bounded number at a time.

Whatever comes from Redis is untrusted (any program that can reach it can write anything there)
and is checked here before use, by one function per kind: `decode_payload` (a message: its type,
UTF-8 for text, at most --max-message-size), `followed_number` (a tick or demo value from the
leader: a JSON integer of 0 to 2**53), `Point.from_message` (a point of a series: a valid name,
finite numbers, a short unit; app/series.py), `parse_stats_entry` (a node's statistics: finite,
bounded, dated near now). What fails is dropped (bad statistics are deleted from Redis too) and
logged at most once per CLUSTER_LOG_INTERVAL_S. The sizes read are bounded in redisbus.py.

Not here: the Redis connections themselves (redisbus.py), the routes (routes.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeGuard

from echo_server import defaults
from echo_server.app.app import Fanout
from echo_server.app.broadcast import CHAT, SERIES, STREAM, TICK
from echo_server.app.series import Point, load_json, load_json_object
from echo_server.cluster.redisbus import Limits, RedisBus, RedisLostError, Reply
from echo_server.core.logthrottle import LogThrottle
from echo_server.core.loop import Loop, Timer
from echo_server.core.server import Server
from echo_server.protocol.frames import Opcode, message_payload
from echo_server.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "echo_server:"
CHANNELS = {name: f"{PREFIX}{name}".encode() for name in (CHAT, TICK, STREAM, SERIES)}
LOCAL_CHANNELS = {redis_name: name for name, redis_name in CHANNELS.items()}
LEADER_KEY = f"{PREFIX}leader"
NODES_KEY = f"{PREFIX}nodes"  # sorted set: node id -> when it last wrote its statistics (ms)
NODE_KEY_PREFIX = f"{PREFIX}node:"  # + node id: its statistics, as JSON
TEXT = b"t"
BINARY = b"b"
FOLLOWED = {TICK: "tick", STREAM: "variable"}  # the number in each producer's messages
POINTS = (STREAM, SERIES)  # the channels of series points
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
# One beat of statistics. KEYS[1]: the index (NODES_KEY). ARGV: [1] this node's id, [2] its
# entry, [3] now, [4] the entries' time to live (ms), [5] [6] the scores outside which a node is
# forgotten, [7] [8] those within which it is read, [9] the most ids read or forgotten in one
# beat, [10] the longest id, [11] the longest entry taken (bytes), [12] NODE_KEY_PREFIX.
# The reply: node id, entry, node id, entry, ... (an entry one byte over the longest is too long).
STATS_SCRIPT = """
local index, prefix = KEYS[1], ARGV[12]
local most, longest_id = tonumber(ARGV[9]), tonumber(ARGV[10])
redis.call('SET', prefix .. ARGV[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', index, ARGV[3], ARGV[1])
-- Nodes not heard of within the time to live, either way of now (dated in the future: a clock
-- far off, or not a node at all), are forgotten with their entries, a bounded number a beat.
local function forget(min, max)
    for _, node in ipairs(redis.call('ZRANGEBYSCORE', index, min, max, 'LIMIT', 0, most)) do
        redis.call('ZREM', index, node)
        if #node <= longest_id then redis.call('DEL', prefix .. node) end
    end
end
forget('-inf', '(' .. ARGV[5])
forget('(' .. ARGV[6], '+inf')
local read = {}
local nodes = redis.call('ZREVRANGEBYSCORE', index, ARGV[8], ARGV[7], 'LIMIT', 0, most)
for _, node in ipairs(nodes) do
    local key = prefix .. node
    local kind = 'none'
    if #node <= longest_id then kind = redis.call('TYPE', key)['ok'] end
    if kind ~= 'string' then
        -- Not a node of ours, or its entry has expired: out of the index.
        redis.call('ZREM', index, node)
        if kind ~= 'none' then redis.call('DEL', key) end
    else
        -- An entry written without an expiry gets one: none stays forever.
        if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[4]) end
        read[#read + 1] = node
        read[#read + 1] = redis.call('GETRANGE', key, 0, ARGV[11])
    end
end
return read
"""
COUNTED = ("connections", "messages_in", "messages_out", "bytes_in", "bytes_out")


def new_node_id() -> str:
    """Unique per process, and says where it runs: host name, process id, a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def node_key(node_id: str | bytes) -> bytes:
    return NODE_KEY_PREFIX.encode() + (node_id.encode() if isinstance(node_id, str) else node_id)


def encode_payload(data: str | bytes | bytearray | memoryview) -> bytes:
    """A message on Redis: its type byte, then its bytes."""
    opcode, payload = message_payload(data)
    return (TEXT if opcode is Opcode.TEXT else BINARY) + bytes(payload)


def decode_payload(payload: bytes, max_message_bytes: int) -> str | bytes:
    """The message in a payload from Redis; ValueError if it is not one of ours or too big."""
    if len(payload) - 1 > max_message_bytes:
        raise ValueError(f"{len(payload) - 1} bytes, over the {max_message_bytes} allowed")
    kind, data = payload[:1], payload[1:]
    if kind == TEXT:
        return data.decode()  # UnicodeDecodeError is a ValueError
    if kind == BINARY:
        return data
    raise ValueError(f"unknown message type {kind!r}")


def is_finite_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def bounded_count(value: object, name: str) -> int:
    """An integer of 0 to CLUSTER_MAX_NUMBER (excluded); ValueError for anything else."""
    if type(value) is not int or not 0 <= value < defaults.CLUSTER_MAX_NUMBER:
        raise ValueError(f"{name} is {value!r:.40}, not an integer of 0 to 2**53")
    return value


def followed_number(data: str | bytes, name: str) -> int:
    """The number in a producer's message on the tick or stream channel, `{name: n, "time": t}`.

    ValueError if the message is not of that shape, or the number not an integer of 0 to 2**53:
    a follower that took a number of 4,300 digits would crash when it next produced one.
    """
    message = load_json_object(data, defaults.CLUSTER_MAX_FOLLOWED_BYTES)
    if not is_finite_number(message.get("time")):
        raise ValueError(f"time is {message.get('time')!r:.40}, not a number")
    return bounded_count(message.get(name), name)


@dataclass(frozen=True, slots=True)
class NodeStats:
    """One node's statistics, as it last wrote them to Redis."""

    time_s: float  # when it wrote them (Unix time, its clock)
    counts: dict[str, int]  # each of COUNTED


def parse_stats_entry(value: bytes, now_s: float) -> NodeStats:
    """A node's statistics as read from Redis; ValueError if they are not sound.

    Sound: a JSON object of at most CLUSTER_MAX_STATS_ENTRY_BYTES, whose "time" is a number
    within CLUSTER_STATS_FORGET_S of `now_s`, and whose counts are integers of 0 to 2**53.
    """
    if len(value) > defaults.CLUSTER_MAX_STATS_ENTRY_BYTES:
        raise ValueError(f"over {defaults.CLUSTER_MAX_STATS_ENTRY_BYTES} bytes")
    written = load_json(value)
    if not isinstance(written, dict):
        raise ValueError("not a JSON object")
    time_s = written.get("time")
    if not is_finite_number(time_s):
        raise ValueError(f"time is {time_s!r:.40}, not a number")
    if abs(time_s - now_s) > defaults.CLUSTER_STATS_FORGET_S:
        raise ValueError(
            f"time {time_s} is not within {defaults.CLUSTER_STATS_FORGET_S:g} s of now"
        )
    counts = {name: bounded_count(written.get(name), name) for name in COUNTED}
    return NodeStats(float(time_s), counts)


def sum_fresh(entries: dict[str, NodeStats], now_s: float) -> dict[str, int]:
    """Cluster totals: the entries dated within CLUSTER_STATS_FRESH_S of now, added up."""
    totals = dict.fromkeys(("nodes", *COUNTED), 0)
    for entry in entries.values():
        if abs(now_s - entry.time_s) <= defaults.CLUSTER_STATS_FRESH_S:
            totals["nodes"] += 1
            for name in COUNTED:
                totals[name] += entry.counts[name]
    return totals


class Node:
    """This process's part in the cluster: publishing, following the leader, sharing statistics.

    What it does with what comes back is given to it: `deliver(channel, data)` to this node's
    subscribers, `follow(channel, number)` the leader's tick or stream value, `counters()` this
    node's own numbers for the totals. It is the app's `Fanout` (see `join`).
    """

    def __init__(
        self,
        loop: Loop,
        url: str,
        *,
        max_message_bytes: int,
        deliver: Callable[[str, str | bytes], None],
        follow: Callable[[str, int], None],
        counters: Callable[[], dict[str, int]],
    ) -> None:
        self.loop = loop
        self._deliver = deliver
        self._follow_number = follow
        self._counters = counters
        self.node_id = new_node_id()
        self.leader = False  # this node may hold the lease; `is_leader` says whether it still does
        self._lease_until_s = 0.0
        self._entries: dict[str, NodeStats] = {}  # the nodes' last statistics, by node id
        self._stopping = False
        self.max_message_bytes = max_message_bytes
        # A log line per bad item would let whoever writes to Redis flood the log.
        self._dropped = LogThrottle(log, defaults.CLUSTER_LOG_INTERVAL_S, loop.time)
        self._deleted = LogThrottle(log, defaults.CLUSTER_LOG_INTERVAL_S, loop.time)
        limits = Limits(
            # A message with its type byte; the margin covers its framing as a message of a
            # channel, and a statistics read (at most 256 ids and entries: about 170 KiB).
            max_reply_bytes=self.max_message_bytes + 1 + defaults.REDIS_REPLY_MARGIN_BYTES
        )
        self.bus = RedisBus(
            loop,
            url,
            list(CHANNELS.values()),
            self._receive,
            self._changed,
            limits=limits,
        )
        self.bus.start()
        self._timer: Timer | None = loop.call_later(defaults.CLUSTER_BEAT_S, self._beat)

    @property
    def is_leader(self) -> bool:
        return self.leader and self.bus.up and self.loop.time() < self._lease_until_s

    @property
    def up(self) -> bool:
        return self.bus.up

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
        self.bus.command("ZREM", NODES_KEY, self.node_id)
        self.bus.command("DEL", node_key(self.node_id))

    def close(self) -> None:
        self._stopping = True
        self.loop.cancel(self._timer)
        self.bus.close()

    # Receiving.

    def _receive(self, redis_channel: bytes, payload: bytes) -> None:
        channel = LOCAL_CHANNELS.get(redis_channel)
        try:
            if channel is None:
                raise ValueError("not our channel")
            data = decode_payload(payload, self.max_message_bytes)
            number = followed_number(data, FOLLOWED[channel]) if channel in FOLLOWED else 0
            if channel in POINTS:
                Point.from_message(data)
        except ValueError as error:
            self._dropped.log(
                "redis: dropped a message on %r: %s", redis_channel[:80], str(error)[:200]
            )
            return
        if channel in FOLLOWED and not self.producing:
            # Keep the leader's numbers, to greet new subscribers and to go on from if it dies.
            self._follow_number(channel, number)
        self._deliver(channel, data)

    def _changed(self, up: bool) -> None:
        if up:
            self._beat()  # claim or renew the lease now, not a second later
        else:
            # Redis may have lost the key; when it is back, the lease counts only once renewed.
            self._lease_until_s = 0.0

    # Each second: the lease, and the statistics.

    def _beat(self) -> None:
        self.loop.cancel(self._timer)
        self._timer = self.loop.call_later(defaults.CLUSTER_BEAT_S, self._beat)
        if self._stopping or not self.bus.up:
            return
        self._elect()
        self._share_statistics()

    def _elect(self) -> None:
        sent_s = self.loop.time()
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
        counts = self._counters()
        return {name: counts[name] for name in COUNTED}

    def _share_statistics(self) -> None:
        """Write this node's statistics and read the others', in one bounded script."""
        now_s = time.time()
        now_ms = round(now_s * 1000)
        ttl_ms = round(defaults.CLUSTER_STATS_FORGET_S * 1000)
        fresh_ms = round(defaults.CLUSTER_STATS_FRESH_S * 1000)
        entry = json.dumps({"time": now_s, **self._own_statistics()})
        self.bus.command(
            "EVAL",
            STATS_SCRIPT,
            1,
            NODES_KEY,
            self.node_id,
            entry,
            now_ms,
            ttl_ms,
            now_ms - ttl_ms,
            now_ms + ttl_ms,
            now_ms - fresh_ms,
            now_ms + fresh_ms,
            defaults.MAX_CLUSTER_NODES,
            defaults.CLUSTER_MAX_NODE_ID_BYTES,
            defaults.CLUSTER_MAX_STATS_ENTRY_BYTES,
            NODE_KEY_PREFIX,
            callback=self._read_statistics,
        )

    def _read_statistics(self, reply: Reply) -> None:
        if isinstance(reply, RedisLostError):
            return  # no answer: the last statistics read stay until the next beat
        if not isinstance(reply, list) or len(reply) % 2:
            self._dropped.log("redis: the statistics read gave %.200r", reply)
            return
        now_s = time.time()
        entries: dict[str, NodeStats] = {}
        bad: list[bytes] = []
        reason = ""
        # The script reads no more than this; a Redis that sends more is not believed.
        read = reply[: 2 * defaults.MAX_CLUSTER_NODES]
        for node, value in zip(read[::2], read[1::2], strict=True):
            if not isinstance(node, bytes) or len(node) > defaults.CLUSTER_MAX_NODE_ID_BYTES:
                continue
            try:
                if not isinstance(value, bytes):
                    raise ValueError(f"{type(value).__name__}, not a string")
                entries[node.decode(errors="replace")] = parse_stats_entry(value, now_s)
            except ValueError as error:
                bad.append(node)
                reason = f"{node[:80]!r}: {str(error)[:200]}"
        self._entries = entries
        if bad:
            self._deleted.log(
                "redis: deleted %d bad statistics entries, such as %s", len(bad), reason
            )
            self.bus.command("ZREM", NODES_KEY, *bad)
            self.bus.command("DEL", *map(node_key, bad))


class Joinable(Protocol):
    """What `join` needs of the application (app/app.py's App)."""

    loop: Loop
    settings: Settings
    server: Server
    fanout: Fanout | None

    def deliver(self, channel: str, data: str | bytes) -> None: ...
    def follow(self, channel: str, number: int) -> None: ...
    def counters(self) -> dict[str, int]: ...


def join(app: Joinable, url: str) -> Node:
    """Make `app` a node of the cluster on the Redis at `url` (resolved now: call it at start)."""
    node = Node(
        app.loop,
        url,
        max_message_bytes=app.settings.max_message_bytes,
        deliver=app.deliver,
        follow=app.follow,
        counters=app.counters,
    )
    app.fanout = node
    app.server.on_shutdown(node.shutdown)
    app.server.on_close(node.close)
    return node
