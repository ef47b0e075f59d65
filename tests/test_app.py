"""The app, in-process: routes, broadcast, producers and statistics, as App wires them.

The app layer's rules seen from raw clients of an in-process server, on a loop the test drives
(see inprocess.py); the same routes end to end, against a real process, are in test_routes.py
and test_push.py.
"""

from __future__ import annotations

import json

from inprocess import Harness, client_frame, next_frames, raw_exchange

from echo_server.app.app import App
from echo_server.app.broadcast import CHAT, Hub
from echo_server.app.producers import RandomWalk, Ticker
from echo_server.app.routes import ROUTES, make_routes
from echo_server.core.loop import Loop
from echo_server.protocol.frames import Opcode
from echo_server.settings import Settings


def test_make_routes_gives_every_path_a_class_bound_to_the_app() -> None:
    app = App(Settings(port=0))
    try:
        routes = make_routes(app)
        assert set(routes) == set(ROUTES)
        for path, route in routes.items():
            assert issubclass(route, ROUTES[path])  # type: ignore[arg-type]
            assert route.app is app  # type: ignore[attr-defined]
        assert routes["/"] is routes["/echo"]  # one class per route, not per path
    finally:
        app.loop.close()


def test_a_chat_message_reaches_every_chat_client_the_sender_included(inproc: Harness) -> None:
    server = inproc.app_server()
    sender, other = inproc.connect(server, "/chat"), inproc.connect(server, "/chat")
    echo = inproc.connect(server, "/echo")
    sender.send(client_frame(Opcode.TEXT, b"to all"))
    assert next_frames(server, sender, "the sender's copy") == [(Opcode.TEXT, b"to all")]
    assert next_frames(server, other, "the other's copy") == [(Opcode.TEXT, b"to all")]
    server.loop.run_once(0.05)
    assert echo.frames() == []  # not a chat client


def test_a_new_tick_client_is_greeted_with_the_current_tick(inproc: Harness) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/tick")
    ((opcode, payload),) = next_frames(server, client, "the greeting")
    assert opcode == Opcode.TEXT
    assert set(json.loads(payload)) == {"tick", "time"}


def test_the_stats_feed_counts_the_connections_per_route(inproc: Harness) -> None:
    server = inproc.app_server()
    inproc.connect(server, "/chat")
    client = inproc.connect(server, "/stats")
    ((_, payload),) = next_frames(server, client, "the statistics")
    stats = json.loads(payload)
    assert stats["connections"]["per_route"]["/chat"] == 1
    assert stats["connections"]["per_route"]["/stats"] == 1
    assert stats["selector"] == server.loop.poller.name


def test_notify_delivers_to_the_chat_clients_and_counts_them(inproc: Harness) -> None:
    server = inproc.app_server()
    chat = inproc.connect(server, "/chat")
    request = b"GET /notify?msg=hi HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = raw_exchange(server, request)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"delivered": 1}
    assert next_frames(server, chat, "the notification") == [(Opcode.TEXT, b"hi")]


# The producers, each on a loop of its own, publishing to a list.


def test_the_ticker_publishes_one_tick_per_interval_while_it_produces() -> None:
    loop = Loop()
    published: list[tuple[str, str]] = []
    producing = [True]
    try:
        ticker = Ticker(
            loop, lambda c, m: published.append((c, m)), lambda: producing[0], interval_s=0.01
        )
        loop.call_later(0.055, loop.stop)
        loop.run()
        ticks = [json.loads(message)["tick"] for _, message in published]
        assert ticks == list(range(1, len(ticks) + 1))
        assert len(ticks) >= 3
        producing[0] = False  # a follower: counts nothing, publishes nothing
        before = len(published)
        ticker.follow(1000)
        loop.call_later(0.03, loop.stop)
        loop.run()
        assert len(published) == before
        assert json.loads(ticker.message())["tick"] == 1000
    finally:
        loop.close()


def test_the_random_walk_grows_by_1_to_10_at_each_step() -> None:
    loop = Loop()
    values: list[float] = []
    try:
        RandomWalk(
            loop,
            lambda point: values.append(point.value),
            lambda: True,
            max_gap_s=0.005,
        )
        turns_left = 1000
        while len(values) < 5 and turns_left:
            loop.run_once(0.01)
            turns_left -= 1
    finally:
        loop.close()
    steps = [b - a for a, b in zip([0, *values], values, strict=False)]
    assert len(values) >= 5
    assert all(1 <= step <= 10 for step in steps)


# The hub alone.


def test_the_hub_counts_and_forgets_subscribers(inproc: Harness) -> None:
    server = inproc.app_server()
    hub = Hub()
    client = inproc.connect(server, "/echo")
    (connection,) = server.connections.values()
    hub.subscribe(CHAT, connection)
    assert hub.count(CHAT) == 1
    assert hub.publish(CHAT, "one") == 1
    assert next_frames(server, client, "the message") == [(Opcode.TEXT, b"one")]
    hub.unsubscribe(CHAT, connection)
    assert hub.count(CHAT) == 0
    assert hub.publish(CHAT, "none") == 0
