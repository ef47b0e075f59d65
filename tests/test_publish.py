"""Publishing your own numbers: `/publish` on the WebSocket port, and what /stream sends of them.

In-process (tests/inprocess.py): the app's server on a free port, HTTP requests as raw bytes,
/stream clients as raw sockets, the loop driven turn by turn. Who may publish from another host
is tested with the /notify rules in tests/test_endpoints.py (the same code decides both), the
cluster in tests/test_cluster.py, and `echo-server publish` in tests/test_publisher.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from inprocess import Client, Harness, next_frames, raw_exchange, turns

from echo_server import defaults
from echo_server.app.series import Point, SeriesStore, TooManySeriesError
from echo_server.core.server import Server
from echo_server.protocol.frames import Opcode

HEAD_END = b"\r\n\r\n"


def request(
    server: Server, method: str, target: str, body: bytes = b"", headers: str = ""
) -> tuple[int, bytes]:
    """A plain HTTP request to the in-process server: its status and body."""
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    )
    answer = raw_exchange(server, head.encode() + body)
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(HEAD_END)[2]


def publish(server: Server, series: str, body: str) -> dict[str, Any]:
    status, answer = request(server, "POST", f"/publish/{series}", body.encode())
    assert status == 200, answer
    decoded: dict[str, Any] = json.loads(answer)
    return decoded


def messages(server: Server, client: Client, what: str) -> list[dict[str, Any]]:
    """The JSON text messages `client` has received, once at least one has arrived."""
    frames = next_frames(server, client, what)
    assert all(opcode == Opcode.TEXT for opcode, _ in frames), frames
    return [json.loads(payload) for _, payload in frames]


def greeted(server: Server, client: Client, want: int | None = None) -> dict[str, dict[str, Any]]:
    """A new /stream client's greeting: one history per series (`want` of them, by default
    every series the server has), by name."""
    histories: dict[str, dict[str, Any]] = {}
    want = len(server_app_series(server)) if want is None else want

    def all_arrived() -> bool:
        for _, payload in client.frames():
            message = json.loads(payload)
            if "history" in message:
                histories[message["series"]] = message
        return len(histories) >= want

    turns(server, all_arrived, what="every series' history")
    return histories


def server_app_series(server: Server) -> SeriesStore:
    # The routes reach the app through `app`: the series store is the app's.
    store: SeriesStore = server.routes["/stream"].app.series  # type: ignore[attr-defined]
    return store


def points_of(received: list[dict[str, Any]], series: str) -> list[dict[str, Any]]:
    return [message for message in received if message.get("series") == series]


# Publishing and receiving.


def test_a_number_posted_to_a_series_reaches_every_stream_client(inproc: Harness) -> None:
    server = inproc.app_server()
    watcher = inproc.connect(server, "/stream")
    greeted(server, watcher)
    answer = publish(server, "temperature", "21.7\n")
    assert answer == {"published": ["temperature"], "delivered": 1}
    (point,) = points_of(messages(server, watcher, "the point"), "temperature")
    assert point["value"] == 21.7
    assert set(point) == {"series", "time", "value"}


def test_a_json_value_with_a_unit_carries_the_unit(inproc: Harness) -> None:
    server = inproc.app_server()
    watcher = inproc.connect(server, "/stream")
    greeted(server, watcher)
    publish(server, "temperature", '{"value": 21.7, "unit": "°C"}')
    (point,) = points_of(messages(server, watcher, "the point"), "temperature")
    assert (point["value"], point["unit"]) == (21.7, "°C")


def test_several_series_are_published_at_once_with_one_time(inproc: Harness) -> None:
    server = inproc.app_server()
    watcher = inproc.connect(server, "/stream")
    greeted(server, watcher)
    body = b'{"temp": 21.7, "humidity": {"value": 40, "unit": "%"}}'
    status, answer = request(server, "POST", "/publish", body)
    assert status == 200
    assert json.loads(answer) == {"published": ["temp", "humidity"], "delivered": 2}
    received: list[dict[str, Any]] = []

    def both_arrived() -> bool:
        received.extend(json.loads(payload) for _, payload in watcher.frames())
        return len(received) >= 2

    turns(server, both_arrived, what="both points")
    temp, humidity = points_of(received, "temp")[0], points_of(received, "humidity")[0]
    assert (temp["value"], humidity["value"], humidity["unit"]) == (21.7, 40, "%")
    assert temp["time"] == humidity["time"]


def test_get_with_a_value_in_the_query_publishes_for_the_simplest_sensors(
    inproc: Harness,
) -> None:
    server = inproc.app_server()
    status, answer = request(server, "GET", "/publish/door?value=1&unit=open")
    assert status == 200, answer
    series = server_app_series(server).get("door")
    assert series is not None
    assert (list(series.points)[-1][1], series.unit) == (1, "open")


def test_a_stream_client_that_connects_later_gets_each_series_history_at_once(
    inproc: Harness,
) -> None:
    server = inproc.app_server()
    for value in range(5):
        publish(server, "load", str(value / 10))
    histories = greeted(server, inproc.connect(server, "/stream"))
    assert set(histories) == {"demo", "load"}
    assert [value for _, value in histories["load"]["history"]] == [0, 0.1, 0.2, 0.3, 0.4]
    assert histories["load"]["unit"] == ""


def test_the_history_keeps_the_last_600_points_of_each_series(inproc: Harness) -> None:
    server = inproc.app_server()
    store = server_app_series(server)
    for value in range(defaults.SERIES_HISTORY_POINTS + 5):
        store.add(Point("count", float(value), value))
    histories = greeted(server, inproc.connect(server, "/stream?series=count"), want=1)
    values = [value for _, value in histories["count"]["history"]]
    assert values == list(range(5, defaults.SERIES_HISTORY_POINTS + 5))


def test_stream_of_one_series_gets_only_that_series(inproc: Harness) -> None:
    server = inproc.app_server()
    publish(server, "a", "1")
    only_a = inproc.connect(server, "/stream?series=a")
    assert list(greeted(server, only_a, want=1)) == ["a"]
    publish(server, "b", "2")
    publish(server, "a", "3")
    received = messages(server, only_a, "the next point of a")
    assert [message["series"] for message in received] == ["a"]
    assert received[0]["value"] == 3


def test_stream_of_a_series_not_published_yet_starts_with_an_empty_history(
    inproc: Harness,
) -> None:
    server = inproc.app_server()
    watcher = inproc.connect(server, "/stream?series=later")
    (greeting,) = messages(server, watcher, "the greeting")
    assert greeting == {"series": "later", "unit": "", "history": []}
    publish(server, "later", "7")
    (point,) = messages(server, watcher, "the first point")
    assert point["value"] == 7


@pytest.mark.parametrize("query", ["series=a%20b", "series=" + "x" * 65, "series=a&series=b"])
def test_stream_with_a_bad_series_query_is_refused_with_400_before_the_upgrade(
    inproc: Harness, query: str
) -> None:
    server = inproc.app_server()
    upgrade = (
        f"GET /stream?{query} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    answer = raw_exchange(server, upgrade.encode())
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"series name" in answer
    assert not server.connections


# Bad input: a clear 400 (or 409, 405), and nothing published.


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("/publish/a%20b", b"1"),
        ("/publish/", b"1"),
        ("/publish/" + "x" * 65, b"1"),
        ("/publish/a/b", b"1"),
        ("/publish/t", b""),
        ("/publish/t", b"nan"),
        ("/publish/t", b"NaN"),
        ("/publish/t", b"Infinity"),
        ("/publish/t", b"1e999"),
        ("/publish/t", b"9" * 400),
        ("/publish/t", b'"21.7"'),
        ("/publish/t", b"true"),
        ("/publish/t", b"[1]"),
        ("/publish/t", b"21,7"),
        ("/publish/t", b"\xff"),
        ("/publish/t", b'{"value": 1, "colour": "red"}'),
        ("/publish/t", b'{"value": 1, "unit": 5}'),
        ("/publish/t", b'{"value": 1, "unit": "' + b"u" * 17 + b'"}'),
        ("/publish/t", b'{"value": 1, "unit": "\\n"}'),
        ("/publish/t", b'{"a": 1}'),
        ("/publish", b"1"),
        ("/publish", b"{}"),
        ("/publish", b'{"ok": 1, "bad name": 2}'),
        ("/publish", b'{"ok": 1, "bad": "2"}'),
    ],
)
def test_bad_input_is_a_400_that_says_why_and_publishes_nothing(
    inproc: Harness, target: str, body: bytes
) -> None:
    server = inproc.app_server()
    status, answer = request(server, "POST", target, body)
    assert status == 400, answer
    assert b"POST /publish/SERIES" in answer  # the usage, after the reason
    assert [series.name for series in server_app_series(server)] == ["demo"]


@pytest.mark.parametrize(
    "target", ["/publish/t", "/publish/t?value=", "/publish/t?value=1&value=2", "/publish?value=1"]
)
def test_a_get_without_one_finite_value_is_a_400(inproc: Harness, target: str) -> None:
    server = inproc.app_server()
    status, _ = request(server, "GET", target)
    assert status == 400


def test_publishing_to_the_demo_series_is_refused_with_409(inproc: Harness) -> None:
    server = inproc.app_server()
    status, answer = request(server, "POST", "/publish/demo", b"1")
    assert status == 409
    assert b"built-in" in answer


def test_a_new_series_past_max_series_is_a_409_and_known_ones_go_on(inproc: Harness) -> None:
    server = inproc.app_server(max_series=2)
    publish(server, "a", "1")
    publish(server, "b", "1")
    status, answer = request(server, "POST", "/publish/c", b"1")
    assert status == 409
    assert b"--max-series" in answer
    publish(server, "a", "2")  # a series it has still takes points


def test_several_series_that_do_not_all_fit_publish_none(inproc: Harness) -> None:
    server = inproc.app_server(max_series=2)
    publish(server, "a", "1")
    status, _ = request(server, "POST", "/publish", b'{"a": 2, "b": 2, "c": 2}')
    assert status == 409
    assert [series.name for series in server_app_series(server)] == ["demo", "a"]
    assert [value for _, value in server_app_series(server).get("a").points] == [1]  # type: ignore[union-attr]


def test_other_methods_are_refused_with_405_and_allow(inproc: Harness) -> None:
    server = inproc.app_server()
    status, _ = request(server, "PUT", "/publish/t", b"1")
    assert status == 405


def test_a_page_of_another_site_may_not_publish(inproc: Harness) -> None:
    server = inproc.app_server()
    status, answer = request(server, "POST", "/publish/t", b"1", "Origin: http://evil.example\r\n")
    assert status == 403
    assert b"other sites" in answer


def test_this_machine_addressed_by_another_name_may_not_publish(inproc: Harness) -> None:
    server = inproc.app_server()
    head = b"POST /publish/t HTTP/1.1\r\nHost: rebound.example:80\r\nContent-Length: 1\r\n\r\n1"
    assert raw_exchange(server, head).startswith(b"HTTP/1.1 403 ")


# The store and the point messages, without sockets.


def test_the_store_refuses_a_series_past_its_limit_and_not_the_demo() -> None:
    store = SeriesStore(max_series=1)
    store.add(Point("demo", 1.0, 1))
    store.add(Point("a", 1.0, 1))
    with pytest.raises(TooManySeriesError):
        store.add(Point("b", 1.0, 1))
    store.add(Point("a", 2.0, 2))
    assert len(store) == 2


def test_a_point_message_reads_back_as_the_same_point() -> None:
    point = Point("temp", 1795458859.276, 21.7, "°C")
    assert Point.from_message(point.message()) == point


@pytest.mark.parametrize(
    "message",
    [
        "[]",
        '{"time": 1, "value": 1}',
        '{"series": "a b", "time": 1, "value": 1}',
        '{"series": "a", "time": 1, "value": NaN}',
        '{"series": "a", "time": 1, "value": 1e999}',
        '{"series": "a", "time": "1", "value": 1}',
        '{"series": "a", "time": 1, "value": true}',
        '{"series": "a", "time": 1, "value": 1, "unit": "' + "u" * 17 + '"}',
        '{"series": "a", "time": 1, "value": 1, "pad": "' + "x" * 600 + '"}',
        '{"series": "a", "time": 1, "value": ' + "9" * 400 + "}",
    ],
)
def test_a_point_message_not_of_our_shape_is_refused(message: str) -> None:
    with pytest.raises(ValueError):
        Point.from_message(message)
