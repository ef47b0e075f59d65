"""The cluster node, in-process: an App joined to a real redis-server, the loop driven by hand.

What `cluster.node.join` wires: chat goes through Redis and comes back to this node's
subscribers, a message another node publishes arrives here, the node takes the lead and says so
in the statistics, and stopping hands the lease on. The node's checks of untrusted data and the
multi-process behaviour are in test_cluster.py (real processes); the bus in test_redisbus.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from inprocess import Harness, client_frame, next_frames, turns
from redis_server import RedisServer, running_redis

from echo_server.app.app import App
from echo_server.cluster.node import CHANNELS, LEADER_KEY, Node, encode_payload, join
from echo_server.core.server import Server
from echo_server.protocol.frames import Opcode
from echo_server.settings import Settings


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    yield from running_redis()


def joined(inproc: Harness, redis: RedisServer) -> tuple[App, Node, Server]:
    app = App(Settings(port=0))
    node = join(app, redis.url())
    server = app.server
    server.listen()
    inproc.servers.append(server)
    turns(server, lambda: node.bus.up, what="the bus up")
    return app, node, server


def test_join_makes_the_node_the_apps_fanout_and_registers_its_stop(
    inproc: Harness, redis: RedisServer
) -> None:
    app, node, server = joined(inproc, redis)
    assert app.fanout is node
    server.close()  # the close hook: the node's connections to Redis go too
    assert not node.bus.up


def test_a_chat_message_goes_through_redis_and_comes_back(
    inproc: Harness, redis: RedisServer
) -> None:
    _, node, server = joined(inproc, redis)
    client = inproc.connect(server, "/chat")
    client.send(client_frame(Opcode.TEXT, b"round trip"))
    assert next_frames(server, client, "the message back") == [(Opcode.TEXT, b"round trip")]
    assert node.bus.up


def test_a_message_another_node_published_reaches_this_nodes_subscribers(
    inproc: Harness, redis: RedisServer
) -> None:
    _, _, server = joined(inproc, redis)
    client = inproc.connect(server, "/chat")
    redis.command("PUBLISH", CHANNELS["chat"], encode_payload("from elsewhere"))
    assert next_frames(server, client, "the message") == [(Opcode.TEXT, b"from elsewhere")]


def test_a_lone_node_comes_to_lead_and_the_statistics_say_so(
    inproc: Harness, redis: RedisServer
) -> None:
    app, node, server = joined(inproc, redis)
    turns(server, lambda: node.is_leader, what="the lead")
    cluster = app.statistics()["cluster"]
    assert (cluster["redis"], cluster["leader"]) == ("up", True)
    assert redis.command("GET", LEADER_KEY) == node.node_id.encode()


def test_stopping_hands_the_lease_on_at_once(inproc: Harness, redis: RedisServer) -> None:
    _, node, server = joined(inproc, redis)
    turns(server, lambda: node.is_leader, what="the lead")
    server.shutdown()
    turns(server, lambda: redis.command("GET", LEADER_KEY) is None, what="the lease released")
