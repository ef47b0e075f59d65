"""The push routes of the WebSocket server, end to end: /chat, /tick, /stream and the /stats feed.

Each test starts `python -m echo_server ws --port 0` and speaks to it with an independent client
(the `websockets` package), or with exact bytes where a library would hide the answer. What is
checked is what a subscriber sees: who gets which message, how often, in what order, and that a
route ignores what it should ignore.

Timing is checked only with broad liveness tolerances (a tick is "about a second"), never as a
benchmark. Plain HTTP on the WebSocket port (/notify, GET /stats) is in tests/test_endpoints.py;
many subscribers and slow subscribers are in tests/test_broadcast.py.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections import Counter
from typing import Any

import pytest
from conftest import StartServer
from support import ServerProcess, http_exchange, status_of, upgrade_request
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

# Every test here runs twice: with the best selector and with select() forced.
pytestmark = pytest.mark.usefixtures("each_selector")

MIB = 1024 * 1024
TIMEOUT_S = 10.0
# A tick or a stream change is due within about a second; a receive waits this long for one.
PUSH_TIMEOUT_S = 5.0
# Broad bounds for "about one second apart", averaged over several ticks.
TICK_GAP_MIN_S = 0.5
TICK_GAP_MAX_S = 1.5
# The stream's gaps are random in 0-1 s; allow scheduling slack on a loaded machine.
STREAM_GAP_MAX_S = 1.5


def client(server: ServerProcess, path: str) -> ClientConnection:
    return connect(
        server.url(path), max_size=2 * MIB, open_timeout=TIMEOUT_S, compression=None, proxy=None
    )


def recv_json(ws: ClientConnection, timeout_s: float = PUSH_TIMEOUT_S) -> dict[str, Any]:
    message = ws.recv(timeout_s)
    assert isinstance(message, str), f"expected a text message, got {message!r}"
    decoded = json.loads(message)
    assert isinstance(decoded, dict), message
    return decoded


def recv_timed(ws: ClientConnection) -> tuple[float, dict[str, Any]]:
    """The next JSON message and the monotonic time it arrived."""
    message = recv_json(ws)
    return time.monotonic(), message


def nothing_arrives(ws: ClientConnection, timeout_s: float) -> bool:
    try:
        ws.recv(timeout_s)
    except TimeoutError:
        return True
    return False


# /chat


def test_every_chat_client_receives_every_message_once_in_each_senders_order(
    ws_server: ServerProcess,
) -> None:
    per_sender = 20
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(client(ws_server, "/chat")) for _ in range(3)]
        for number in range(per_sender):
            for sender, ws in enumerate(clients):
                ws.send(f"{sender}:{number}")
        total = per_sender * len(clients)
        # Once the first client has all of them, the server has published all of them: a last
        # message from it then arrives after every other, and anything extra would come before.
        first = [clients[0].recv(TIMEOUT_S) for _ in range(total)]
        clients[0].send("end")
        received = [first]
        for ws in clients[1:]:
            messages = []
            for _ in range(total + 1):
                message = ws.recv(TIMEOUT_S)
                if message == "end":
                    break
                messages.append(message)
            received.append(messages)
        assert clients[0].recv(TIMEOUT_S) == "end"

    expected = {f"{sender}:{number}" for sender in range(3) for number in range(per_sender)}
    for messages in received:
        counts = Counter(messages)
        assert set(counts) == expected
        assert max(counts.values()) == 1, "a message was delivered twice"
        for sender in range(3):
            from_sender = [m for m in messages if isinstance(m, str) and m.startswith(f"{sender}:")]
            assert from_sender == [f"{sender}:{number}" for number in range(per_sender)]


def test_a_chat_client_over_the_rate_limit_is_closed_with_1008_and_a_reason(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0", "--rate-limit", "5")
    with client(server, "/chat") as flooder:
        for number in range(100):
            with contextlib.suppress(ConnectionClosed):
                flooder.send(str(number))
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(200):
                flooder.recv(PUSH_TIMEOUT_S)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "rate limit: over 5 messages/s"


def test_a_burst_within_twice_the_rate_limit_is_delivered(start_server: StartServer) -> None:
    server = start_server("ws", "--port", "0", "--rate-limit", "5")
    with client(server, "/chat") as sender, client(server, "/chat") as reader:
        for number in range(10):  # 2 s worth at 5 per second: allowed at once
            sender.send(str(number))
        assert [reader.recv(PUSH_TIMEOUT_S) for _ in range(10)] == [str(n) for n in range(10)]


def test_rate_limit_0_lets_a_chat_client_send_as_fast_as_it_likes(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0", "--rate-limit", "0")
    with client(server, "/chat") as sender:
        for number in range(2000):
            sender.send(str(number))
        assert [sender.recv(PUSH_TIMEOUT_S) for _ in range(2000)] == [str(n) for n in range(2000)]


def test_a_binary_chat_message_reaches_every_client_as_binary(ws_server: ServerProcess) -> None:
    payload = bytes(range(256)) * 3
    with client(ws_server, "/chat") as sender, client(ws_server, "/chat") as other:
        sender.send(payload)
        for ws in (sender, other):
            message = ws.recv(TIMEOUT_S)
            assert isinstance(message, bytes)
            assert message == payload


def test_a_text_chat_message_reaches_every_client_as_text(ws_server: ServerProcess) -> None:
    text = "Grüße, 世界 🌍"
    with client(ws_server, "/chat") as sender, client(ws_server, "/chat") as other:
        sender.send(text)
        assert sender.recv(TIMEOUT_S) == text
        assert other.recv(TIMEOUT_S) == text


def test_a_chat_message_is_not_sent_to_other_routes(ws_server: ServerProcess) -> None:
    with client(ws_server, "/chat") as chat, client(ws_server, "/echo") as echo:
        chat.send("for chat only")
        assert chat.recv(TIMEOUT_S) == "for chat only"
        echo.send("mine")
        # The echo client's own echo is the next thing it gets: the chat message never came.
        assert echo.recv(TIMEOUT_S) == "mine"


# /tick


def test_a_tick_is_json_with_a_tick_number_and_a_unix_time(ws_server: ServerProcess) -> None:
    with client(ws_server, "/tick") as ws:
        message = recv_json(ws)
    assert set(message) == {"tick", "time"}
    assert isinstance(message["tick"], int)
    assert message["tick"] >= 0
    assert abs(message["time"] - time.time()) < 60


def test_two_tick_clients_receive_the_same_tick_numbers(ws_server: ServerProcess) -> None:
    with client(ws_server, "/tick") as first, client(ws_server, "/tick") as second:
        greetings = [recv_json(first), recv_json(second)]
        # Connected one after the other: a tick may fall between the two, never more.
        assert abs(greetings[0]["tick"] - greetings[1]["tick"]) <= 1
        ticks = [[recv_json(ws) for _ in range(3)] for ws in (first, second)]

    for greeting, later in zip(greetings, ticks, strict=True):
        numbers = [message["tick"] for message in later]
        assert numbers == list(range(greeting["tick"] + 1, greeting["tick"] + 4))
    # A tick is one message for everyone: the same number carries the same time.
    by_number = [{message["tick"]: message for message in later} for later in ticks]
    shared = set(by_number[0]) & set(by_number[1])
    assert len(shared) >= 2
    for number in shared:
        assert by_number[0][number] == by_number[1][number]


def test_ticks_come_about_one_second_apart(ws_server: ServerProcess) -> None:
    count = 4
    with client(ws_server, "/tick") as ws:
        recv_json(ws)  # the greeting comes at once, off the tick's beat
        arrivals = [recv_timed(ws) for _ in range(count)]

    numbers = [message["tick"] for _, message in arrivals]
    assert numbers == list(range(numbers[0], numbers[0] + count))
    mean_gap_s = (arrivals[-1][0] - arrivals[0][0]) / (count - 1)
    assert TICK_GAP_MIN_S < mean_gap_s < TICK_GAP_MAX_S, f"ticks {mean_gap_s:.3f} s apart"
    stamped_gap_s = (arrivals[-1][1]["time"] - arrivals[0][1]["time"]) / (count - 1)
    assert TICK_GAP_MIN_S < stamped_gap_s < TICK_GAP_MAX_S, f"stamped {stamped_gap_s:.3f} s apart"


def test_a_late_subscriber_is_first_sent_the_current_tick_not_zero(
    ws_server: ServerProcess,
) -> None:
    with client(ws_server, "/tick") as early:
        latest = recv_json(early)["tick"]
        for _ in range(10):  # about two seconds of ticks, bounded by count and by the timeout
            if latest >= 2:
                break
            latest = recv_json(early)["tick"]
        assert latest >= 2, "the server never reached tick 2"
        with client(ws_server, "/tick") as late:
            first = recv_json(late)
    # At once, not on the next beat: the current tick (or the next, if one fell in between).
    assert first["tick"] in (latest, latest + 1)


def test_tick_ignores_what_a_client_sends(ws_server: ServerProcess) -> None:
    with client(ws_server, "/tick") as ws:
        greeting = recv_json(ws)
        ws.send("please echo this")
        ws.send(b"\x00\x01binary")
        # Only ticks follow, the next ones in order: no echo, no error, no close.
        for number in range(greeting["tick"] + 1, greeting["tick"] + 3):
            assert recv_json(ws)["tick"] == number
        assert ws.ping(b"still there?").wait(TIMEOUT_S)


# /stream


def history_then_points(ws: ClientConnection) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A new /stream client's greeting (the demo's history) and the next two points."""
    return recv_json(ws), [recv_json(ws) for _ in range(2)]


def test_a_new_stream_client_is_greeted_with_the_demo_series_history(
    ws_server: ServerProcess,
) -> None:
    with client(ws_server, "/stream") as ws:
        greeting = recv_json(ws)
    assert set(greeting) == {"series", "unit", "history"}
    assert greeting["series"] == "demo"
    assert greeting["unit"] == ""
    assert greeting["history"][0][1] == 0  # the demo starts at 0, when the server starts
    for when, value in greeting["history"]:
        assert isinstance(value, int)
        assert abs(when - time.time()) < 60


def test_stream_points_are_json_with_the_series_a_value_and_a_unix_time(
    ws_server: ServerProcess,
) -> None:
    with client(ws_server, "/stream") as ws:
        _, points = history_then_points(ws)
    for point in points:
        # "variable" is the value too, as /stream sent before there were series.
        assert set(point) == {"series", "time", "value", "variable"}
        assert point["series"] == "demo"
        assert isinstance(point["value"], int)
        assert point["variable"] == point["value"]
        assert abs(point["time"] - time.time()) < 60


def test_the_stream_value_grows_by_1_to_10_at_gaps_under_a_second(
    ws_server: ServerProcess,
) -> None:
    count = 8
    with client(ws_server, "/stream") as ws:
        # The greeting ends with the current value, so the first change is an increment from it.
        last_known = recv_json(ws)["history"][-1][1]
        arrivals = [recv_timed(ws) for _ in range(count)]

    values = [last_known] + [message["value"] for _, message in arrivals]
    increments = [later - earlier for earlier, later in itertools.pairwise(values)]
    assert all(1 <= step <= 10 for step in increments), increments
    gaps_s = [later[0] - earlier[0] for earlier, later in itertools.pairwise(arrivals)]
    assert max(gaps_s) < STREAM_GAP_MAX_S, f"gaps {gaps_s}"


def test_two_stream_clients_see_one_shared_value(ws_server: ServerProcess) -> None:
    with client(ws_server, "/stream") as first, client(ws_server, "/stream") as second:
        values_first = [value for _, value in recv_json(first)["history"]]
        values_second = [recv_json(second)["history"][-1][1]]
        values_second += [recv_json(second)["value"] for _ in range(3)]
        # Read the first client up to the last value the second one saw, bounded by count.
        for _ in range(40):
            if values_first[-1] >= values_second[-1]:
                break
            values_first.append(recv_json(first)["value"])

    # The second client's greeting ends with a value the first had already seen (it connected
    # later), and from there both saw the same changes.
    assert values_second[0] in values_first
    start = values_first.index(values_second[0])
    assert values_first[start : start + len(values_second)] == values_second


# /stats as a WebSocket


def test_the_stats_feed_counts_this_tests_connections_per_route(
    ws_server: ServerProcess,
) -> None:
    with contextlib.ExitStack() as stack:
        for path in ("/chat", "/chat", "/tick", "/echo"):
            stack.enter_context(client(ws_server, path))
        with client(ws_server, "/stats") as stats:
            first = recv_json(stats, TIMEOUT_S)

    connections = first["connections"]
    assert connections["total"] == 5
    assert connections["per_route"]["/chat"] == 2
    assert connections["per_route"]["/tick"] == 1
    assert connections["per_route"]["/echo"] == 1
    assert connections["per_route"]["/stats"] == 1
    assert connections["per_route"]["/stream"] == 0


def test_the_stats_feed_sends_again_about_every_second(ws_server: ServerProcess) -> None:
    with client(ws_server, "/stats") as stats:
        recv_json(stats, TIMEOUT_S)
        arrivals = [recv_timed(stats) for _ in range(3)]
    gap_s = (arrivals[-1][0] - arrivals[0][0]) / 2
    assert TICK_GAP_MIN_S < gap_s < TICK_GAP_MAX_S, f"stats {gap_s:.3f} s apart"
    uptimes = [message["uptime_s"] for _, message in arrivals]
    assert uptimes == sorted(uptimes)


def test_the_stats_feed_shows_a_client_leaving(ws_server: ServerProcess) -> None:
    with client(ws_server, "/stats") as stats:
        chat_counts = [chat_count(recv_json(stats, TIMEOUT_S))]  # the greeting: before the client
        with client(ws_server, "/chat"):
            chat_counts += until_chat_count(stats, 1)
        chat_counts += until_chat_count(stats, 0)
    assert chat_counts[0] == 0
    assert chat_counts[-1] == 0
    assert 1 in chat_counts


def chat_count(statistics: dict[str, Any]) -> int:
    count = statistics["connections"]["per_route"]["/chat"]
    assert isinstance(count, int)
    return count


def until_chat_count(stats: ClientConnection, wanted: int) -> list[int]:
    """Read the feed until it shows `wanted` /chat clients; a few seconds, bounded by count."""
    counts: list[int] = []
    for _ in range(5):
        counts.append(chat_count(recv_json(stats)))
        if counts[-1] == wanted:
            return counts
    raise AssertionError(f"the feed never showed {wanted} /chat client(s): {counts}")


# Unknown paths


@pytest.mark.parametrize("path", ["/nope", "/chat/room", "/ticks", "/notify"])
def test_an_upgrade_to_an_unknown_path_is_refused_with_404(
    ws_server: ServerProcess, path: str
) -> None:
    response = http_exchange(ws_server.port, upgrade_request(ws_server.port, path))
    assert status_of(response) == 404


def test_the_server_keeps_serving_after_an_unknown_path(start_server: StartServer) -> None:
    server = start_server("ws", "--port", "0")
    http_exchange(server.port, upgrade_request(server.port, "/nope"))
    with client(server, "/chat") as ws:
        ws.send("still here")
        assert ws.recv(TIMEOUT_S) == "still here"
