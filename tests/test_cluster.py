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
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import StartServer
from redis_server import RedisServer, require_redis_server, running_redis
from support import ServerProcess, run_cli, wait_until
from websockets.sync.client import ClientConnection, connect

from echo_server import defaults
from echo_server.cli import ws_passthrough
from echo_server.cluster import LEADER_KEY, STATS_KEY

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
    assert leader_id not in redis.command("HKEYS", STATS_KEY)
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
