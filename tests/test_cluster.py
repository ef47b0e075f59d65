"""Several servers as one through Redis (`--redis`): chat, notify, one tick, a new leader, outages.

Each test starts a real `redis-server` (tests/redis_server.py) and two or three
`python -m echo_server ws --port 0 --redis redis://127.0.0.1:P/0` processes, and speaks to them
with the `websockets` client and plain HTTP. What is checked is what clients of different
servers see: the same messages, once each, in the same order; the same tick from one producer,
which goes on from another server when its producer is killed; and local delivery that goes on
while Redis is away and fan-out that comes back with it. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import StartServer
from redis_server import RedisServer, require_redis_server, running_redis
from support import ServerProcess, publish_point, run_cli, wait_until
from websockets.sync.client import ClientConnection, connect

from echo_server import defaults
from echo_server.app.broadcast import CHAT, SERIES, TICK
from echo_server.app.series import load_json
from echo_server.cli import ws_passthrough
from echo_server.cluster.node import (
    CHANNELS,
    COUNTED,
    LEADER_KEY,
    NODES_KEY,
    NodeStats,
    decode_payload,
    followed_number,
    node_key,
    parse_stats_entry,
    sum_fresh,
)

TIMEOUT_S = 10.0
PUSH_TIMEOUT_S = 5.0  # a tick or a stream value is due within about a second
# A killed leader's key expires within LEADER_TTL_S; a beat later another node holds it, and
# its next tick is due a second after that. Broad slack for a loaded machine.
TAKEOVER_TIMEOUT_S = defaults.LEADER_TTL_S + 2 * defaults.CLUSTER_BEAT_S + 5.0
UP = "fanning out through it"


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    yield from running_redis()


def node(start_server: StartServer, redis: RedisServer) -> ServerProcess:
    """A WebSocket server in the cluster, once its Redis subscription is live."""
    server = start_server("ws", "--port", "0", "--redis", redis.url())
    server.wait_for_output(UP, TIMEOUT_S)
    return server


def client(server: ServerProcess, path: str) -> ClientConnection:
    return connect(server.url(path), open_timeout=TIMEOUT_S, compression=None, proxy=None)


def http_get(server: ServerProcess, target: str) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body)
    finally:
        connection.close()


def cluster_stats(server: ServerProcess) -> dict[str, Any]:
    cluster = http_get(server, "/stats")["cluster"]
    assert isinstance(cluster, dict)
    return cluster


def the_leader(servers: list[ServerProcess]) -> ServerProcess:
    """The one server that says it leads, once exactly one does."""
    leaders: list[ServerProcess] = []

    def one_leads() -> bool:
        leaders[:] = [s for s in servers if cluster_stats(s)["leader"]]
        return len(leaders) == 1

    wait_until(one_leads, TIMEOUT_S, "exactly one leader")
    return leaders[0]


def redis_is(a: ServerProcess, b: ServerProcess, state: str) -> None:
    """Wait until both servers' /stats say Redis is `state` ("up" or "down")."""
    wait_until(
        lambda: cluster_stats(a)["redis"] == cluster_stats(b)["redis"] == state,
        TIMEOUT_S,
        f"redis {state} for both servers",
    )


def receive(ws: ClientConnection, count: int) -> list[str | bytes]:
    return [ws.recv(TIMEOUT_S) for _ in range(count)]


def nothing_arrives(ws: ClientConnection, timeout_s: float = 0.3) -> bool:
    try:
        ws.recv(timeout_s)
    except TimeoutError:
        return True
    return False


def tick_of(message: str | bytes) -> int:
    tick = json.loads(message)["tick"]
    assert isinstance(tick, int)
    return tick


def ticks_until(ws: ClientConnection, last: int, timeout_s: float = PUSH_TIMEOUT_S) -> list[str]:
    """Tick messages up to and including tick `last`, each due within `timeout_s`."""
    messages: list[str] = []
    for _ in range(100):
        message = ws.recv(timeout_s)
        assert isinstance(message, str)
        messages.append(message)
        if tick_of(message) >= last:
            return messages
    raise AssertionError(f"no tick {last} in 100 messages: {messages}")


def assert_consecutive(messages: list[str]) -> None:
    ticks = [tick_of(message) for message in messages]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), ticks


# Chat and notify.


def test_a_chat_message_reaches_the_chat_clients_of_every_server_once_and_in_order(
    start_server: StartServer, redis: RedisServer
) -> None:
    a, b = node(start_server, redis), node(start_server, redis)
    with client(a, "/chat") as a1, client(a, "/chat") as a2, client(b, "/chat") as b1:
        sent = [f"message {number}" for number in range(20)]
        for message in sent:
            a1.send(message)
        for ws in (a1, a2, b1):
            assert receive(ws, len(sent)) == sent
            assert nothing_arrives(ws)


def test_binary_chat_stays_binary_byte_for_byte_across_servers(
    start_server: StartServer, redis: RedisServer
) -> None:
    a, b = node(start_server, redis), node(start_server, redis)
    every_byte = bytes(range(256))
    with client(a, "/chat") as a1, client(b, "/chat") as b1:
        a1.send(every_byte)
        a1.send("t")  # a text message of the letter the wire format uses for text
        for ws in (a1, b1):
            assert receive(ws, 2) == [every_byte, "t"]


def test_chat_from_both_servers_arrives_in_one_order_everywhere(
    start_server: StartServer, redis: RedisServer
) -> None:
    a, b = node(start_server, redis), node(start_server, redis)
    per_sender = 30
    with client(a, "/chat") as a1, client(b, "/chat") as b1, client(b, "/chat") as b2:
        for number in range(per_sender):
            a1.send(f"a {number}")
            b1.send(f"b {number}")
        seen = [receive(ws, 2 * per_sender) for ws in (a1, b1, b2)]
        assert seen[0] == seen[1] == seen[2]
        for sender in "ab":
            mine = [m for m in seen[0] if isinstance(m, str) and m.startswith(sender)]
            assert mine == [f"{sender} {number}" for number in range(per_sender)]
        for ws in (a1, b1, b2):
            assert nothing_arrives(ws)


def test_notify_on_one_server_reaches_the_chat_clients_of_both(
    start_server: StartServer, redis: RedisServer
) -> None:
    a, b = node(start_server, redis), node(start_server, redis)
    with client(a, "/chat") as a1, client(b, "/chat") as b1, client(b, "/chat") as b2:
        # The count is of this server's chat clients: those on others are not known here.
        assert http_get(a, "/notify?msg=backup%20done") == {"delivered": 1}
        for ws in (a1, b1, b2):
            assert ws.recv(TIMEOUT_S) == "backup done"
            assert nothing_arrives(ws)


# One tick and one stream for the cluster.


def test_exactly_one_server_leads(start_server: StartServer, redis: RedisServer) -> None:
    servers = [node(start_server, redis) for _ in range(3)]
    leader = the_leader(servers)
    assert redis.command("GET", LEADER_KEY).decode() == cluster_stats(leader)["node"]
    leader.wait_for_output("leads: it makes the tick and the stream")


def test_every_server_shows_the_same_tick_from_the_one_leader(
    start_server: StartServer, redis: RedisServer
) -> None:
    a, b = node(start_server, redis), node(start_server, redis)
    the_leader([a, b])
    with client(a, "/tick") as on_a, client(b, "/tick") as on_b:
        greetings = [tick_of(on_a.recv(TIMEOUT_S)), tick_of(on_b.recv(TIMEOUT_S))]
        assert abs(greetings[0] - greetings[1]) <= 1
        pushed_a = [on_a.recv(PUSH_TIMEOUT_S) for _ in range(4)]
        pushed_b = [on_b.recv(PUSH_TIMEOUT_S) for _ in range(4)]
    for on_a_tick, on_b_tick in zip(pushed_a, pushed_b, strict=True):
        assert abs(tick_of(on_a_tick) - tick_of(on_b_tick)) <= 1
    # One producer: the very same messages, time stamp included, not two counts that agree.
    assert len(set(pushed_a) & set(pushed_b)) >= 3, (pushed_a, pushed_b)


def test_every_server_shows_the_same_stream_values(
    start_server: StartServer, redis: RedisServer
) -> None:
    a, b = node(start_server, redis), node(start_server, redis)
    the_leader([a, b])
    with client(a, "/stream") as on_a, client(b, "/stream") as on_b:
        on_a.recv(TIMEOUT_S)
        on_b.recv(TIMEOUT_S)
        pushed_a = [on_a.recv(PUSH_TIMEOUT_S) for _ in range(6)]
        pushed_b = [on_b.recv(PUSH_TIMEOUT_S) for _ in range(6)]
    values = [json.loads(message)["variable"] for message in pushed_a]
    assert values == sorted(set(values))  # growing
    assert len(set(pushed_a) & set(pushed_b)) >= 5, (pushed_a, pushed_b)


def test_when_the_leader_is_killed_another_server_goes_on_counting_within_seconds(
    start_server: StartServer, redis: RedisServer
) -> None:
    servers = [node(start_server, redis) for _ in range(3)]
    leader = the_leader(servers)
    first, second = (server for server in servers if server is not leader)
    with client(first, "/tick") as on_first, client(second, "/tick") as on_second:
        greeting = tick_of(on_first.recv(TIMEOUT_S))
        on_second.recv(TIMEOUT_S)
        before = ticks_until(on_first, greeting + 2)
        killed_at = time.monotonic()
        leader.stop(signal.SIGKILL)
        last_before = tick_of(before[-1])
        # The next tick comes from a new leader, and is the next number: nothing lost, nothing
        # repeated, no restart from zero.
        after_first = ticks_until(on_first, last_before + 4, timeout_s=TAKEOVER_TIMEOUT_S)
        after_second = ticks_until(on_second, last_before + 4, timeout_s=TAKEOVER_TIMEOUT_S)
    assert time.monotonic() - killed_at < TAKEOVER_TIMEOUT_S + 4 * PUSH_TIMEOUT_S
    assert_consecutive(before + after_first)
    assert_consecutive(after_second)
    by_tick = {tick_of(message): message for message in after_first}
    for message in after_second:
        assert by_tick.get(tick_of(message), message) == message  # one producer, still
    new_leader = the_leader([first, second])
    new_leader.wait_for_output("leads: it makes the tick and the stream")


def test_a_leader_stopped_gracefully_gives_up_its_lease_and_its_statistics(
    start_server: StartServer, redis: RedisServer
) -> None:
    servers = [node(start_server, redis) for _ in range(2)]
    leader = the_leader(servers)
    leader_id = cluster_stats(leader)["node"].encode()
    assert leader.stop(signal.SIGTERM) == 0
    # Not left to expire: the key is gone at once, or already another server's.
    assert redis.command("GET", LEADER_KEY) != leader_id
    assert redis.command("ZSCORE", NODES_KEY, leader_id) is None
    assert redis.command("EXISTS", node_key(leader_id)) == 0
    (other,) = (server for server in servers if server is not leader)
    wait_until(lambda: cluster_stats(other)["leader"], TIMEOUT_S, "the other server leads")


# Redis away and back.


def test_while_redis_is_away_echo_and_chat_go_on_locally_and_fan_out_resumes_after(
    start_server: StartServer, redis: RedisServer
) -> None:
    a, b = node(start_server, redis), node(start_server, redis)
    with (
        client(a, "/") as echo,
        client(a, "/chat") as a1,
        client(b, "/chat") as b1,
    ):
        a1.send("before")
        assert a1.recv(TIMEOUT_S) == b1.recv(TIMEOUT_S) == "before"

        redis.stop(signal.SIGKILL)
        echo.send("right after")  # echo never needed Redis
        assert echo.recv(TIMEOUT_S) == "right after"
        redis_is(a, b, "down")
        a1.send("during, on a")
        b1.send("during, on b")
        assert a1.recv(TIMEOUT_S) == "during, on a"  # once, directly
        assert b1.recv(TIMEOUT_S) == "during, on b"
        echo.send("during")
        assert echo.recv(TIMEOUT_S) == "during"
        assert nothing_arrives(a1)
        assert nothing_arrives(b1)

        redis.start()
        redis_is(a, b, "up")
        a1.send("after")
        assert a1.recv(TIMEOUT_S) == b1.recv(TIMEOUT_S) == "after"
        assert nothing_arrives(a1)
        assert nothing_arrives(b1)
    for server in (a, b):
        output = server.output()
        assert output.count("connection lost") == 1, output
        assert output.count("back; fanning out") == 1, output


def test_ticks_go_on_while_redis_is_away(start_server: StartServer, redis: RedisServer) -> None:
    a = node(start_server, redis)
    the_leader([a])
    with client(a, "/tick") as ticks:
        greeting = tick_of(ticks.recv(TIMEOUT_S))
        redis.stop(signal.SIGKILL)
        during = ticks_until(ticks, greeting + 3)
        redis.start()
        a.wait_for_output("back; " + UP, TIMEOUT_S)
        after = ticks_until(ticks, tick_of(during[-1]) + 3)
    ticks_seen = [tick_of(message) for message in during + after]
    assert ticks_seen == sorted(set(ticks_seen)), ticks_seen


def test_a_server_starts_without_redis_and_joins_when_redis_comes(
    start_server: StartServer,
) -> None:
    require_redis_server()
    redis = RedisServer()  # its port chosen, not started yet
    try:
        a = start_server("ws", "--port", "0", "--redis", redis.url())
        a.wait_for_output("cannot connect")
        with client(a, "/") as echo, client(a, "/chat") as a1:
            echo.send("no redis")
            assert echo.recv(TIMEOUT_S) == "no redis"
            a1.send("alone")
            assert a1.recv(TIMEOUT_S) == "alone"
            assert nothing_arrives(a1)
            redis.start()
            a.wait_for_output("connected; " + UP, TIMEOUT_S)
            b = node(start_server, redis)
            with client(b, "/chat") as b1:
                a1.send("together")
                assert a1.recv(TIMEOUT_S) == b1.recv(TIMEOUT_S) == "together"
        assert a.output().count("cannot connect") == 1
    finally:
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)


# Statistics.


def test_stats_adds_up_the_connections_of_every_server(
    start_server: StartServer, redis: RedisServer
) -> None:
    a, b = node(start_server, redis), node(start_server, redis)
    with contextlib.ExitStack() as stack:
        for server, count in ((a, 2), (b, 3)):
            for _ in range(count):
                stack.enter_context(client(server, "/echo"))

        def five_on_two_nodes() -> bool:
            cluster = cluster_stats(a)
            return bool(cluster["nodes"] == 2 and cluster["connections"] == 5)

        wait_until(five_on_two_nodes, TIMEOUT_S, "5 connections on 2 nodes in a's /stats")
        cluster = cluster_stats(b)
        assert cluster["redis"] == "up"
        for name in ("messages_in", "messages_out", "bytes_in", "bytes_out"):
            assert isinstance(cluster[name], int), name
    assert cluster_stats(a)["node"] != cluster_stats(b)["node"]


def test_without_redis_stats_has_no_cluster(ws_server: ServerProcess) -> None:
    assert "cluster" not in http_get(ws_server, "/stats")


# The option.


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/0", "redis://127.0.0.1:6379/zero", "127.0.0.1:6379"]
)
def test_a_bad_redis_url_is_a_usage_error(url: str) -> None:
    result = run_cli(["ws", "--port", "0", "--redis", url])
    assert result.returncode == 2
    assert "redis" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_demo_passes_redis_on_to_its_websocket_server() -> None:
    url = "redis://127.0.0.1:6379/0"
    assert ws_passthrough(["--redis", url, "--port", "8080"]) == ["--redis", url]
    assert ws_passthrough([f"--redis={url}"]) == [f"--redis={url}"]


# What comes from Redis is untrusted: each kind checked by its own function (no Redis needed).


def test_a_message_of_the_max_message_size_is_taken_and_one_byte_more_is_not() -> None:
    assert decode_payload(b"t" + b"a" * 100, 100) == "a" * 100
    assert decode_payload(b"b" + b"\xff" * 100, 100) == b"\xff" * 100
    with pytest.raises(ValueError, match="101 bytes, over the 100 allowed"):
        decode_payload(b"t" + b"a" * 101, 100)
    with pytest.raises(ValueError, match="101 bytes, over the 100 allowed"):
        decode_payload(b"b" + b"a" * 101, 100)


@pytest.mark.parametrize(
    "payload",
    [b"", b"x", b"xhello", b"Thello", b"t\xff\xfe", b"t\xed\xa0\x80", b"t\xc3"],
    ids=["empty", "type-only", "unknown-type", "upper-case-type", "not-utf8", "surrogate", "cut"],
)
def test_a_message_of_no_known_type_or_not_utf8_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_payload(payload, 1024)


@pytest.mark.parametrize(
    ("message", "number"),
    [
        ('{"tick":0,"time":1.5}', 0),
        ('{"tick": 41, "time": 1764500000}', 41),
        (f'{{"tick":{2**53 - 1},"time":0}}', 2**53 - 1),
    ],
)
def test_a_tick_of_our_shape_gives_its_number(message: str, number: int) -> None:
    assert followed_number(message, "tick") == number


NOT_A_TICK = {
    "too-big": f'{{"tick":{2**53},"time":1}}',
    "4300-digits": '{"tick":' + "9" * 4300 + ',"time":1}',
    "5000-digits": '{"tick":' + "9" * 5000 + ',"time":1}',
    "negative": '{"tick":-1,"time":1}',
    "fraction": '{"tick":1.5,"time":1}',
    "float": '{"tick":1e3,"time":1}',
    "boolean": '{"tick":true,"time":1}',
    "string": '{"tick":"1","time":1}',
    "null": '{"tick":null,"time":1}',
    "missing": '{"tock":1,"time":1}',
    "no-time": '{"tick":1}',
    "nan-time": '{"tick":1,"time":NaN}',
    "infinite-time": '{"tick":1,"time":1e999}',
    "array": "[1, 2]",
    "not-json": "tick 1",
    "too-long": '{"tick":1,"time":1,"pad":"' + "x" * 300 + '"}',
}


@pytest.mark.parametrize("message", NOT_A_TICK.values(), ids=NOT_A_TICK.keys())
def test_a_tick_not_of_our_shape_is_refused(message: str) -> None:
    with pytest.raises(ValueError):
        followed_number(message, "tick")


def test_a_tick_sent_as_binary_is_refused() -> None:
    with pytest.raises(ValueError, match="not text"):
        followed_number(b'{"tick":1,"time":1}', "tick")


@pytest.mark.parametrize(
    "text", ["[" * 100_000, '{"a":' * 100_000, "NaN", "-Infinity", "[Infinity]", "", "{"]
)
def test_json_from_redis_that_is_not_json_or_nested_too_deeply_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        load_json(text)


NOW_S = 1_764_500_000.0
COUNTS = dict.fromkeys(COUNTED, 1)
FORGET_S = defaults.CLUSTER_STATS_FORGET_S
StatsValue = Callable[[float], bytes]  # an entry as written at a given time


def stats_json(now_s: float = NOW_S, **changes: object) -> bytes:
    entry: dict[str, object] = {"time": now_s, **dict.fromkeys(COUNTED, 7), **changes}
    return json.dumps(entry).encode()


def test_a_sound_stats_entry_gives_its_time_and_counts() -> None:
    entry = parse_stats_entry(stats_json(connections=3, bytes_out=2**53 - 1), NOW_S + 1)
    assert entry.time_s == NOW_S
    assert entry.counts == {**dict.fromkeys(COUNTED, 7), "connections": 3, "bytes_out": 2**53 - 1}


@pytest.mark.parametrize("offset_s", [-FORGET_S, FORGET_S])
def test_a_stats_entry_dated_up_to_the_forget_time_either_way_is_sound(offset_s: float) -> None:
    assert parse_stats_entry(stats_json(NOW_S + offset_s), NOW_S).time_s == NOW_S + offset_s


BAD_STATS: dict[str, StatsValue] = {
    "infinite-time": lambda now_s: stats_json(now_s).replace(str(now_s).encode(), b"1e999"),
    "nan-time": lambda now_s: stats_json(now_s, time=float("nan")),
    "infinite-count": lambda now_s: stats_json(now_s, bytes_in=float("inf")),
    "string-time": lambda now_s: stats_json(now_s, time="now"),
    "boolean-time": lambda now_s: stats_json(now_s, time=True),
    "old-time": lambda now_s: stats_json(now_s - FORGET_S - 30),
    "future-time": lambda now_s: stats_json(now_s + FORGET_S + 30),
    "negative-count": lambda now_s: stats_json(now_s, connections=-1),
    "fraction-count": lambda now_s: stats_json(now_s, messages_in=1.5),
    "string-count": lambda now_s: stats_json(now_s, messages_out="1"),
    "boolean-count": lambda now_s: stats_json(now_s, bytes_in=True),
    "too-big-count": lambda now_s: stats_json(now_s, bytes_out=2**53),
    "5000-digit-count": lambda now_s: stats_json(now_s).replace(
        b": 7}", b": " + b"9" * 5000 + b"}"
    ),
    "missing-count": lambda now_s: json.dumps({"time": now_s, "connections": 1}).encode(),
    "array": lambda now_s: b"[1, 2, 3]",
    "not-json": lambda now_s: b"connections=1",
    "not-utf8": lambda now_s: b"\xff\xfe",
    "too-long": lambda now_s: stats_json(now_s, pad="x" * defaults.CLUSTER_MAX_STATS_ENTRY_BYTES),
}


@pytest.mark.parametrize("value", BAD_STATS.values(), ids=BAD_STATS.keys())
def test_an_unsound_stats_entry_is_refused(value: StatsValue) -> None:
    with pytest.raises(ValueError):
        parse_stats_entry(value(NOW_S), NOW_S)


def test_only_entries_dated_near_now_either_way_are_added_up() -> None:
    fresh_s = defaults.CLUSTER_STATS_FRESH_S
    entries = {
        str(offset_s): NodeStats(NOW_S + offset_s, dict.fromkeys(COUNTED, 1))
        for offset_s in (-fresh_s - 0.1, -fresh_s, 0.0, fresh_s, fresh_s + 0.1)
    }
    assert sum_fresh(entries, NOW_S) == {"nodes": 3, **dict.fromkeys(COUNTED, 3)}


# What comes from Redis is untrusted: hostile data written there by another program.


def write_stats_entry(
    redis: RedisServer, node_id: str | bytes, value: bytes, *, score_ms: int | None = None
) -> None:
    """What a node writes in a beat, but as anything else might: with no expiry."""
    score = round(time.time() * 1000) if score_ms is None else score_ms
    redis.pipeline([("SET", node_key(node_id), value), ("ZADD", NODES_KEY, score, node_id)])


def gone_from_redis(redis: RedisServer, node_id: str | bytes) -> bool:
    return bool(
        redis.command("EXISTS", node_key(node_id)) == 0
        and redis.command("ZSCORE", NODES_KEY, node_id) is None
    )


@pytest.mark.parametrize("value", BAD_STATS.values(), ids=BAD_STATS.keys())
def test_a_bad_stats_entry_in_redis_is_deleted_and_never_counted(
    start_server: StartServer, redis: RedisServer, value: StatsValue
) -> None:
    a = node(start_server, redis)
    wait_until(lambda: cluster_stats(a)["nodes"] == 1, TIMEOUT_S, "a counts itself")
    write_stats_entry(redis, "evil", value(time.time()))
    wait_until(lambda: gone_from_redis(redis, "evil"), TIMEOUT_S, "the bad entry deleted")
    for _ in range(3):
        assert cluster_stats(a)["nodes"] == 1  # and /stats answers, every time
    a.wait_for_output("deleted 1 bad statistics entries")


def test_a_stats_entry_written_without_expiry_is_given_one(
    start_server: StartServer, redis: RedisServer
) -> None:
    a = node(start_server, redis)
    write_stats_entry(redis, "no-expiry", json.dumps({"time": time.time(), **COUNTS}).encode())
    assert redis.command("PTTL", node_key("no-expiry")) == -1
    wait_until(
        lambda: redis.command("PTTL", node_key("no-expiry")) > 0, TIMEOUT_S, "an expiry given"
    )
    assert redis.command("PTTL", node_key("no-expiry")) <= defaults.CLUSTER_STATS_FORGET_S * 1000
    wait_until(lambda: cluster_stats(a)["nodes"] == 2, TIMEOUT_S, "counted meanwhile: it is sound")


def test_entries_not_renewed_for_long_or_dated_far_ahead_are_swept_with_their_keys(
    start_server: StartServer, redis: RedisServer
) -> None:
    now_ms = round(time.time() * 1000)
    stale = [f"stale:{number}" for number in range(300)]  # more than one beat sweeps
    ahead = [f"ahead:{number}" for number in range(300)]
    entry = json.dumps({"time": time.time(), **COUNTS}).encode()
    commands: list[tuple[str | bytes | int, ...]] = []
    for node_id in stale:
        commands += [
            ("SET", node_key(node_id), entry),
            ("ZADD", NODES_KEY, now_ms - 120_000, node_id),
        ]
    for node_id in ahead:
        commands += [("SET", node_key(node_id), entry), ("ZADD", NODES_KEY, 10**15, node_id)]
    redis.pipeline(commands)
    a = node(start_server, redis)
    wait_until(lambda: redis.command("ZCARD", NODES_KEY) == 1, TIMEOUT_S, "only a left indexed")
    assert redis.command("ZRANGE", NODES_KEY, 0, -1) == [cluster_stats(a)["node"].encode()]
    assert redis.command("EXISTS", *(node_key(node_id) for node_id in stale + ahead)) == 0
    assert cluster_stats(a)["nodes"] == 1


def test_index_entries_with_no_entry_or_an_overlong_id_are_removed(
    start_server: StartServer, redis: RedisServer
) -> None:
    a = node(start_server, redis)
    overlong = "x" * (defaults.CLUSTER_MAX_NODE_ID_BYTES + 1)
    write_stats_entry(redis, overlong, json.dumps({"time": time.time(), **COUNTS}).encode())
    redis.command("ZADD", NODES_KEY, round(time.time() * 1000), "ghost")
    now_ms = round(time.time() * 1000)
    redis.pipeline([("HSET", node_key("a-hash"), "time", 1), ("ZADD", NODES_KEY, now_ms, "a-hash")])
    wait_until(lambda: redis.command("ZCARD", NODES_KEY) == 1, TIMEOUT_S, "only a left indexed")
    assert redis.command("EXISTS", node_key("a-hash")) == 0
    assert cluster_stats(a)["nodes"] == 1


def test_thirty_thousand_junk_entries_cost_one_bounded_read_a_beat_and_age_out(
    start_server: StartServer, redis: RedisServer
) -> None:
    a = node(start_server, redis)
    now_ms = round(time.time() * 1000)
    entry = json.dumps({"time": time.time(), **COUNTS}).encode()
    commands: list[tuple[str | bytes | int, ...]] = []
    for number in range(30_000):
        commands += [("SET", node_key(f"junk:{number}"), entry)]
        commands += [("ZADD", NODES_KEY, now_ms, f"junk:{number}")]
    redis.pipeline(commands)
    with client(a, "/") as echo:
        # They look like nodes, so some are counted while fresh: no more than a beat reads.
        def counted() -> int:
            echo.send("still here")
            assert echo.recv(TIMEOUT_S) == "still here"
            nodes = cluster_stats(a)["nodes"]
            assert 1 <= nodes <= defaults.MAX_CLUSTER_NODES
            return int(nodes)

        wait_until(lambda: counted() > 1, TIMEOUT_S, "junk read")
        wait_until(
            lambda: counted() == 1,
            defaults.CLUSTER_STATS_FRESH_S + TIMEOUT_S,
            "the junk no longer counted once not fresh",
        )
    # Those read were given an expiry: written without one, they still go away by themselves.
    ttls = redis.pipeline([("PTTL", node_key(f"junk:{n}")) for n in range(0, 30_000, 100)])
    assert any(ttl > 0 for ttl in ttls), ttls


# What comes from Redis is untrusted: hostile messages published on our channels.


def test_a_20_mib_publish_on_chat_never_reaches_a_chat_client(
    start_server: StartServer, redis: RedisServer
) -> None:
    a = node(start_server, redis)
    with connect(a.url("/chat"), open_timeout=TIMEOUT_S, max_size=None, proxy=None) as ws:
        redis.command("PUBLISH", CHANNELS[CHAT], b"t" + b"x" * (20 * 1024 * 1024))
        a.wait_for_output("over .* bytes: refused")
        ws.send("next")
        assert ws.recv(TIMEOUT_S) == "next"
        assert nothing_arrives(ws)
    a.wait_for_output("back; " + UP, TIMEOUT_S)
    assert a.proc.poll() is None


def test_a_publish_just_over_the_max_message_size_is_dropped_and_one_of_it_delivered(
    start_server: StartServer, redis: RedisServer
) -> None:
    a = start_server("ws", "--port", "0", "--redis", redis.url(), "--max-message-size", "1000")
    a.wait_for_output(UP, TIMEOUT_S)
    with client(a, "/chat") as ws:
        redis.command("PUBLISH", CHANNELS[CHAT], b"t" + b"x" * 1001)
        redis.command("PUBLISH", CHANNELS[CHAT], b"t" + b"y" * 1000)
        assert ws.recv(TIMEOUT_S) == "y" * 1000
    a.wait_for_output("dropped a message on .*: 1001 bytes, over the 1000 allowed")


def test_a_flood_of_bad_messages_is_one_log_line_not_a_flood(
    start_server: StartServer, redis: RedisServer
) -> None:
    a = node(start_server, redis)
    with client(a, "/chat") as ws:
        redis.pipeline([("PUBLISH", CHANNELS[CHAT], b"?bad %d" % n) for n in range(500)])
        ws.send("next")
        assert ws.recv(TIMEOUT_S) == "next"
    assert a.output().count("dropped a message") == 1, a.output()


@pytest.mark.parametrize(
    "payload",
    [
        b"thello",
        b'b{"tick":1,"time":1}',
        b't{"tick":-1,"time":1}',
        b't{"tick":' + b"9" * 4300 + b',"time":1}',
    ],
    ids=["not-json", "binary", "negative", "4300-digits"],
)
def test_a_tick_not_of_our_shape_is_not_delivered(
    start_server: StartServer, redis: RedisServer, payload: bytes
) -> None:
    a = node(start_server, redis)
    the_leader([a])
    with client(a, "/tick") as ticks:
        greeting = ticks.recv(TIMEOUT_S)
        redis.command("PUBLISH", CHANNELS[TICK], payload)
        pushed = [ticks.recv(PUSH_TIMEOUT_S) for _ in range(3)]
    texts = [message for message in (greeting, *pushed) if isinstance(message, str)]
    assert len(texts) == 4, pushed
    assert_consecutive(texts)


def test_a_follower_sent_a_4300_digit_tick_goes_on_sanely_when_it_comes_to_lead(
    start_server: StartServer, redis: RedisServer
) -> None:
    servers = [node(start_server, redis) for _ in range(2)]
    leader = the_leader(servers)
    (follower,) = (server for server in servers if server is not leader)
    with client(follower, "/tick") as ticks:
        greeting = tick_of(ticks.recv(TIMEOUT_S))
        before = ticks_until(ticks, greeting + 1)
        huge = b't{"tick":' + b"9" * 4300 + b',"time":1}'
        redis.command("PUBLISH", CHANNELS[TICK], huge)
        leader.stop(signal.SIGKILL)
        # The follower leads now, and counts on from the leader's last sane tick.
        after = ticks_until(ticks, tick_of(before[-1]) + 4, timeout_s=TAKEOVER_TIMEOUT_S)
    assert_consecutive(before + after)
    follower.wait_for_output("leads: it makes the tick and the stream")
    assert follower.proc.poll() is None


# Published series, through Redis: every node delivers and keeps every point.


def test_a_point_published_on_one_server_reaches_and_stays_on_every_server(
    start_server: StartServer, redis: RedisServer
) -> None:
    a, b = node(start_server, redis), node(start_server, redis)
    with client(b, "/stream?series=temp") as on_b:
        assert json.loads(on_b.recv(TIMEOUT_S))["history"] == []
        publish_point(a, "temp", '{"value": 21.5, "unit": "°C"}')
        point = json.loads(on_b.recv(TIMEOUT_S))
    assert (point["series"], point["value"], point["unit"]) == ("temp", 21.5, "°C")
    # A page that connects to either server later is greeted with the same history.
    for server in (a, b):
        with client(server, "/stream?series=temp") as late:
            history = json.loads(late.recv(TIMEOUT_S))
        assert [value for _, value in history["history"]] == [21.5]


@pytest.mark.parametrize(
    "payload",
    [
        b't{"series":"a b","time":1,"value":1}',
        b't{"series":"x","time":1,"value":NaN}',
        b't{"series":"x","time":1,"value":"1"}',
        b't{"series":"demo","time":1,"value":1}',
        b't{"series":"x","time":1,"value":1,"unit":"' + b"u" * 40 + b'"}',
        b"b" + b'{"series":"x","time":1,"value":1}',
    ],
    ids=["bad-name", "nan", "text-value", "demo-on-series", "long-unit", "binary"],
)
def test_a_point_not_of_our_shape_from_redis_is_not_delivered_or_kept(
    start_server: StartServer, redis: RedisServer, payload: bytes
) -> None:
    a = node(start_server, redis)
    with client(a, "/stream?series=x") as watcher:
        assert json.loads(watcher.recv(TIMEOUT_S))["history"] == []
        redis.command("PUBLISH", CHANNELS[SERIES], payload)
        redis.command("PUBLISH", CHANNELS[SERIES], b't{"series":"x","time":1,"value":2}')
        assert json.loads(watcher.recv(TIMEOUT_S))["value"] == 2  # only the good one
    assert http_get(a, "/stats")["series"] == 2  # the demo and x


def test_metrics_say_redis_is_up_and_whether_this_node_leads(
    start_server: StartServer, redis: RedisServer
) -> None:
    a = node(start_server, redis)
    the_leader([a])
    connection = http.client.HTTPConnection("127.0.0.1", a.port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    assert "echo_server_redis_up 1.0" in text
    assert "echo_server_cluster_leader 1.0" in text
