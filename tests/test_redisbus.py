"""Redis in the select loop: URLs, commands and replies, publish/subscribe, losing and regaining.

Each test runs a `Loop` in the test process against a real `redis-server` (tests/redis_server.py)
that the test can stop, freeze (SIGSTOP) and start again on the same port. Timings are shortened
through `Timing`, so that reconnects take tenths of a second; every wait is bounded.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import logging
import random
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import hiredis
import pytest
from redis_server import RedisServer, running_redis
from support import free_port

from echo_server.cluster.redisbus import (
    Limits,
    RedisAddress,
    RedisBus,
    RedisConnection,
    RedisLostError,
    Timing,
    backoff_delay_s,
    encode_command,
    parse_url,
)
from echo_server.core.loop import EVENT_READ, Loop

TIMEOUT_S = 10.0
POLL_S = 0.01
FAST = Timing(
    connect_timeout_s=1.0,
    reply_timeout_s=1.0,
    ping_interval_s=0.1,
    backoff_min_s=0.05,
    backoff_max_s=0.4,
)
CHANNELS = (b"test:a", b"test:b")


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture
def redis_with_password() -> Iterator[RedisServer]:
    yield from running_redis(password="s3cret")


@pytest.fixture
def loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


def run_until(
    loop: Loop, condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S
) -> None:
    """Run the loop until `condition()` holds; fail if it does not within `timeout_s`."""
    deadline = loop.time() + timeout_s

    def check() -> None:
        if condition() or loop.time() >= deadline:
            loop.stop()
        else:
            loop.call_later(POLL_S, check)

    loop.call_later(0.0, check)
    loop.run()
    assert condition(), f"not within {timeout_s} s: {what}"


def run_for(loop: Loop, seconds: float) -> None:
    loop.call_later(seconds, loop.stop)
    loop.run()


def connection(loop: Loop, url: str, **options: Any) -> RedisConnection:
    options = {"timing": FAST, **options}
    redis = RedisConnection(loop, parse_url(url), **options)
    redis.start()
    return redis


class Received:
    """What a bus delivered, and when it went up or down."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.changes: list[bool] = []

    def message(self, channel: bytes, data: bytes) -> None:
        self.messages.append((channel, data))

    def change(self, up: bool) -> None:
        self.changes.append(up)


def bus(loop: Loop, url: str, received: Received, **options: Any) -> RedisBus:
    options = {"timing": FAST, **options}
    redis_bus = RedisBus(loop, url, CHANNELS, received.message, received.change, **options)
    redis_bus.start()
    return redis_bus


# URLs, commands, backoff: no Redis needed.


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://127.0.0.1", RedisAddress("127.0.0.1", 6379, 0)),
        ("redis://localhost:6380/2", RedisAddress("localhost", 6380, 2)),
        ("redis://[::1]:7000/0", RedisAddress("::1", 7000, 0)),
        ("redis://:s%40cret@db.lan/1", RedisAddress("db.lan", 6379, 1, None, "s@cret")),
        ("redis://ann:pw@db.lan:6379/", RedisAddress("db.lan", 6379, 0, "ann", "pw")),
    ],
)
def test_a_url_gives_host_port_database_and_login(url: str, address: RedisAddress) -> None:
    assert parse_url(url) == address


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/0",
        "rediss://127.0.0.1:6379/0",
        "redis://",
        "redis://127.0.0.1:port/0",
        "redis://127.0.0.1:6379/zero",
        "redis://127.0.0.1:6379/0?timeout=1",
        "127.0.0.1:6379",
    ],
)
def test_anything_but_a_redis_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="redis"):
        parse_url(url)


def test_an_address_in_a_log_line_never_shows_the_password() -> None:
    address = parse_url("redis://ann:hunter2@db.lan:6380/3")
    assert str(address) == "redis://db.lan:6380/3"


def test_commands_are_encoded_as_arrays_of_bulk_strings() -> None:
    assert encode_command(("SET", b"k\r\n", 42)) == (
        b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n42\r\n"
    )


def test_backoff_doubles_from_the_minimum_up_to_the_maximum() -> None:
    # With no jitter taken off (uniform always at its top), the delays are the ceilings.
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    delays = [backoff_delay_s(attempt, Top(), 0.1, 5.0) for attempt in range(10)]
    assert delays[:6] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    assert delays[6:] == pytest.approx([5.0] * 4)


def test_backoff_jitter_takes_off_at_most_half_and_never_exceeds_the_maximum() -> None:
    rng = random.Random(1)
    for attempt in range(100):
        ceiling = min(5.0, 0.1 * 2**attempt)
        delay = backoff_delay_s(attempt, rng, 0.1, 5.0)
        assert ceiling / 2 <= delay <= ceiling


def test_backoff_jitter_spreads_nodes_that_fail_together() -> None:
    rng = random.Random(2)
    assert len({backoff_delay_s(3, rng) for _ in range(20)}) == 20


# One connection: commands and replies.


def test_a_command_gets_its_reply(loop: Loop, redis: RedisServer) -> None:
    replies: list[Any] = []
    link = connection(loop, redis.url())
    run_until(loop, lambda: link.ready, "connected")
    assert link.command("SET", "greeting", "hello", callback=replies.append)
    assert link.command("GET", "greeting", callback=replies.append)
    run_until(loop, lambda: len(replies) == 2, "two replies")
    assert replies == [b"OK", b"hello"]
    link.close()


def test_replies_go_to_the_callbacks_in_the_order_the_commands_were_sent(
    loop: Loop, redis: RedisServer
) -> None:
    replies: list[Any] = []
    link = connection(loop, redis.url())
    run_until(loop, lambda: link.ready, "connected")
    for _ in range(500):
        link.command("INCR", "counter", callback=replies.append)
    run_until(loop, lambda: len(replies) == 500, "500 replies")
    assert replies == list(range(1, 501))
    link.close()


def test_an_error_reply_goes_to_its_callback_and_the_connection_stays(
    loop: Loop, redis: RedisServer
) -> None:
    replies: list[Any] = []
    link = connection(loop, redis.url())
    run_until(loop, lambda: link.ready, "connected")
    link.command("SET", "word", "text")
    link.command("INCR", "word", callback=replies.append)
    link.command("PING", callback=replies.append)
    run_until(loop, lambda: len(replies) == 2, "two replies")
    assert isinstance(replies[0], hiredis.ReplyError)
    assert replies[1] == b"PONG"
    assert link.ready
    link.close()


def test_a_command_is_refused_while_not_connected(loop: Loop) -> None:
    link = RedisConnection(loop, parse_url(f"redis://127.0.0.1:{free_port()}/0"), timing=FAST)
    called: list[Any] = []
    assert not link.command("PING", callback=called.append)
    link.start()
    assert not link.command("PING", callback=called.append)
    run_for(loop, 0.2)
    assert called == []
    link.close()


def test_the_database_of_the_url_is_selected(loop: Loop, redis: RedisServer) -> None:
    replies: list[Any] = []
    link = connection(loop, redis.url(db=3))
    run_until(loop, lambda: link.ready, "connected")
    link.command("SET", "where", "three", callback=replies.append)
    run_until(loop, lambda: replies == [b"OK"], "SET answered")
    assert redis.command("GET", "where", db=3) == b"three"
    assert redis.command("GET", "where", db=0) is None
    link.close()


def test_the_password_of_the_url_logs_in(loop: Loop, redis_with_password: RedisServer) -> None:
    link = connection(loop, f"redis://:s3cret@127.0.0.1:{redis_with_password.port}/0")
    run_until(loop, lambda: link.ready, "logged in and connected")
    link.close()


def test_a_wrong_password_is_a_failed_attempt_and_is_tried_again(
    loop: Loop, redis_with_password: RedisServer
) -> None:
    reasons: list[str] = []
    url = f"redis://:wrong@127.0.0.1:{redis_with_password.port}/0"
    link = connection(loop, url, on_lost=reasons.append)
    run_until(loop, lambda: len(reasons) >= 3, "three refused attempts")
    assert not link.ready
    assert all("refused" in reason for reason in reasons), reasons
    link.close()


def test_pending_callbacks_are_told_when_the_connection_is_lost(
    loop: Loop, redis: RedisServer
) -> None:
    replies: list[Any] = []
    link = connection(loop, redis.url())
    run_until(loop, lambda: link.ready, "connected")
    link.command("BLPOP", "nothing-comes", 0, callback=replies.append)  # blocks in Redis
    run_for(loop, 0.1)
    redis.stop(signal.SIGKILL)
    run_until(loop, lambda: bool(replies), "the pending command is answered")
    assert isinstance(replies[0], RedisLostError)
    assert not link.ready
    link.close()


def test_a_server_that_accepts_but_never_answers_is_given_up_after_the_connect_timeout(
    loop: Loop,
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        reasons: list[str] = []
        started_s = time.monotonic()
        link = connection(
            loop, f"redis://127.0.0.1:{silent.getsockname()[1]}/0", on_lost=reasons.append
        )
        run_until(loop, lambda: bool(reasons), "the attempt given up")
        assert reasons[0] == f"no answer in {FAST.connect_timeout_s:g} s"
        assert time.monotonic() - started_s >= FAST.connect_timeout_s
        link.close()


def test_a_redis_that_stops_answering_is_dropped_after_the_reply_timeout(
    loop: Loop, redis: RedisServer
) -> None:
    reasons: list[str] = []
    link = connection(loop, redis.url(), on_lost=reasons.append)
    run_until(loop, lambda: link.ready, "connected")
    redis.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        # Idle, the connection pings by itself: the unanswered ping is what gives it away.
        run_until(loop, lambda: bool(reasons), "the silence noticed")
        assert reasons[0] == f"no reply in {FAST.reply_timeout_s:g} s"
    finally:
        redis.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    run_until(loop, lambda: link.ready, "connected again")
    link.close()


def connected_clients(redis: RedisServer) -> int:
    """How many clients Redis has, the one asking included."""
    info = redis.command("INFO", "clients")
    line = next(line for line in info.split(b"\r\n") if line.startswith(b"connected_clients:"))
    return int(line.split(b":")[1])


def test_a_closed_connection_does_not_reconnect(loop: Loop, redis: RedisServer) -> None:
    link = connection(loop, redis.url())
    run_until(loop, lambda: link.ready, "connected")
    assert connected_clients(redis) == 2
    link.close()
    run_for(loop, 3 * FAST.backoff_max_s)
    assert connected_clients(redis) == 1


# The bus: publish and subscribe through two connections.


def test_a_published_message_comes_back_through_the_subscription(
    loop: Loop, redis: RedisServer
) -> None:
    received = Received()
    redis_bus = bus(loop, redis.url(), received)
    run_until(loop, lambda: redis_bus.up, "the bus up")
    every_byte = bytes(range(256))
    assert redis_bus.publish(b"test:a", b"text")
    assert redis_bus.publish(b"test:b", every_byte)
    run_until(loop, lambda: len(received.messages) == 2, "two messages")
    assert received.messages == [(b"test:a", b"text"), (b"test:b", every_byte)]
    redis_bus.close()


def test_the_bus_is_up_only_once_every_channel_is_subscribed(
    loop: Loop, redis: RedisServer
) -> None:
    received = Received()
    redis_bus = bus(loop, redis.url(), received)
    run_until(loop, lambda: redis_bus.up, "the bus up")
    assert received.changes == [True]
    numsub = redis.command("PUBSUB", "NUMSUB", *CHANNELS)
    assert numsub == [b"test:a", 1, b"test:b", 1]
    redis_bus.close()
    assert received.changes == [True, False]


def test_messages_of_other_channels_are_not_delivered(loop: Loop, redis: RedisServer) -> None:
    received = Received()
    redis_bus = bus(loop, redis.url(), received)
    run_until(loop, lambda: redis_bus.up, "the bus up")
    redis.command("PUBLISH", "test:other", "no")
    redis.command("PUBLISH", "test:a", "yes")
    run_until(loop, lambda: bool(received.messages), "a message")
    run_for(loop, 0.1)
    assert received.messages == [(b"test:a", b"yes")]
    redis_bus.close()


def test_two_buses_receive_everything_both_publish_once_in_the_same_order(
    loop: Loop, redis: RedisServer
) -> None:
    first, second = Received(), Received()
    buses = [bus(loop, redis.url(), first), bus(loop, redis.url(), second)]
    run_until(loop, lambda: all(b.up for b in buses), "both buses up")
    for number in range(200):
        for index, redis_bus in enumerate(buses):
            assert redis_bus.publish(b"test:a", b"%d:%d" % (index, number))
    run_until(loop, lambda: len(first.messages) == len(second.messages) == 400, "400 each")
    assert first.messages == second.messages
    for index in range(2):
        mine = [data for _, data in first.messages if data.startswith(b"%d:" % index)]
        assert mine == [b"%d:%d" % (index, number) for number in range(200)]
    for redis_bus in buses:
        redis_bus.close()


def test_publish_is_refused_while_redis_is_unreachable(loop: Loop) -> None:
    received = Received()
    redis_bus = bus(loop, f"redis://127.0.0.1:{free_port()}/0", received)
    run_for(loop, 0.3)
    assert not redis_bus.up
    assert not redis_bus.publish(b"test:a", b"nowhere")
    assert received.changes == []
    redis_bus.close()


def test_the_bus_comes_back_when_redis_restarts_on_the_same_port(
    loop: Loop, redis: RedisServer
) -> None:
    received = Received()
    redis_bus = bus(loop, redis.url(), received)
    run_until(loop, lambda: redis_bus.up, "the bus up")
    redis.stop(signal.SIGKILL)
    run_until(loop, lambda: not redis_bus.up, "the bus down")
    assert not redis_bus.publish(b"test:a", b"lost")
    redis.start()
    run_until(loop, lambda: redis_bus.up, "the bus up again")
    assert received.changes == [True, False, True]
    assert redis_bus.publish(b"test:a", b"after")
    run_until(loop, lambda: bool(received.messages), "a message")
    assert received.messages == [(b"test:a", b"after")]
    redis_bus.close()


def test_an_outage_is_logged_once_however_many_attempts_fail(
    loop: Loop, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="echo_server")
    received = Received()
    redis_bus = bus(loop, redis.url(), received)
    run_until(loop, lambda: redis_bus.up, "the bus up")
    redis.stop(signal.SIGKILL)
    run_until(
        loop,
        lambda: redis_bus.commands.failures >= 5 and redis_bus.subscriber.failures >= 5,
        "five failed attempts on each connection",
    )
    redis.start()
    run_until(loop, lambda: redis_bus.up, "the bus up again")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([line for line in lines if "connection lost" in line]) == 1, lines
    assert len([line for line in lines if "back; fanning out" in line]) == 1, lines
    redis_bus.close()


def test_an_unreachable_redis_at_start_is_logged_once(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="echo_server")
    received = Received()
    redis_bus = bus(loop, f"redis://127.0.0.1:{free_port()}/0", received)
    run_until(loop, lambda: redis_bus.commands.failures >= 5, "five failed attempts")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "cannot connect" in warnings[0]
    redis_bus.close()


def test_reconnect_attempts_are_spaced_by_a_bounded_backoff(loop: Loop) -> None:
    failures: list[float] = []
    link = connection(
        loop, f"redis://127.0.0.1:{free_port()}/0", on_lost=lambda _: failures.append(loop.time())
    )
    run_until(loop, lambda: len(failures) >= 12, "twelve failed attempts")
    gaps = [later - earlier for earlier, later in itertools.pairwise(failures)]
    slack_s = 0.1  # the loop's own latency on a busy machine
    for attempt, gap in enumerate(gaps):
        ceiling = min(FAST.backoff_max_s, FAST.backoff_min_s * 2**attempt)
        assert ceiling / 2 <= gap <= ceiling + slack_s, (attempt, gaps)
    link.close()


# What Redis sends is untrusted: bounded in size, in work per wakeup, and in log lines.

SMALL = Limits(max_reply_bytes=64 * 1024, replies_per_wakeup=10)


def test_a_reply_over_the_limit_is_refused_and_the_connection_made_again(
    loop: Loop, redis: RedisServer
) -> None:
    redis.command("SET", "huge", b"x" * (20 * 1024 * 1024))
    replies: list[Any] = []
    reasons: list[str] = []
    link = connection(loop, redis.url(), limits=SMALL, on_lost=reasons.append)
    run_until(loop, lambda: link.ready, "connected")
    link.command("GET", "huge", callback=replies.append)
    run_until(loop, lambda: bool(replies), "the GET answered")
    assert isinstance(replies[0], RedisLostError)
    assert reasons == [f"a reply of over {SMALL.max_reply_bytes} bytes: refused"]
    run_until(loop, lambda: link.ready, "connected again")
    link.command("GET", "missing", callback=replies.append)
    run_until(loop, lambda: len(replies) == 2, "the next command answered")
    assert replies[1] is None
    link.close()


def test_a_reply_of_exactly_the_limit_is_taken(loop: Loop, redis: RedisServer) -> None:
    # "$65527\r\n" + the value + "\r\n" is 65,536 bytes: the whole reply, framing included.
    value = b"y" * (SMALL.max_reply_bytes - len(b"$65527\r\n\r\n"))
    redis.command("SET", "just-fits", value)
    replies: list[Any] = []
    link = connection(loop, redis.url(), limits=SMALL)
    run_until(loop, lambda: link.ready, "connected")
    link.command("GET", "just-fits", callback=replies.append)
    run_until(loop, lambda: bool(replies), "the GET answered")
    assert replies == [value]
    link.close()


def test_a_published_message_over_the_limit_is_dropped_and_the_next_is_delivered(
    loop: Loop, redis: RedisServer
) -> None:
    received = Received()
    redis_bus = bus(loop, redis.url(), received, limits=SMALL)
    run_until(loop, lambda: redis_bus.up, "the bus up")
    redis.command("PUBLISH", "test:a", b"x" * (20 * 1024 * 1024))
    run_until(loop, lambda: received.changes == [True, False, True], "dropped and back")
    assert redis_bus.publish(b"test:a", b"next")
    run_until(loop, lambda: bool(received.messages), "the next message")
    assert received.messages == [(b"test:a", b"next")]
    redis_bus.close()


def test_a_flood_of_messages_takes_turns_with_the_rest_of_the_loop(
    loop: Loop, redis: RedisServer
) -> None:
    received = Received()
    redis_bus = bus(loop, redis.url(), received, limits=SMALL)
    run_until(loop, lambda: redis_bus.up, "the bus up")
    # Sent while the loop is not running: they wait in our socket, read in one go.
    redis.pipeline([("PUBLISH", "test:a", b"%d" % number) for number in range(1000)])
    turns = [0]  # how often the rest of the loop (here: a timer) has had its turn
    seen_at_turn: list[int] = []

    def other_work() -> None:
        turns[0] += 1
        if len(received.messages) < 1000:
            loop.call_later(0.0, other_work)

    def note(channel: bytes, data: bytes) -> None:
        received.message(channel, data)
        seen_at_turn.append(turns[0])

    redis_bus._on_message = note
    loop.call_later(0.0, other_work)
    run_until(loop, lambda: len(received.messages) == 1000, "1000 messages")
    assert [data for _, data in received.messages] == [b"%d" % n for n in range(1000)]
    # At most one batch from the socket's readiness and one from the timer between two turns.
    per_turn = collections.Counter(seen_at_turn)
    assert max(per_turn.values()) <= 2 * SMALL.replies_per_wakeup, per_turn
    redis_bus.close()


def publish_oversized(loop: Loop, redis: RedisServer, received: Received) -> None:
    """Publish a message over SMALL's limit, and wait until the bus is back up after it."""
    ups = received.changes.count(True)
    redis.command("PUBLISH", "test:a", b"x" * (2 * SMALL.max_reply_bytes))
    run_until(loop, lambda: received.changes.count(True) == ups + 1, "dropped and back")


def test_a_flood_of_oversized_messages_is_logged_once_not_per_message(
    loop: Loop, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="echo_server")
    received = Received()
    redis_bus = bus(loop, redis.url(), received, limits=SMALL)
    run_until(loop, lambda: redis_bus.up, "the bus up")
    for _ in range(5):
        publish_oversized(loop, redis, received)
    assert received.messages == []
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([line for line in lines if "connection lost" in line]) == 1, lines
    assert len([line for line in lines if "back; fanning out" in line]) == 1, lines
    redis_bus.close()


def test_an_outage_after_short_ones_is_logged_with_their_count(
    loop: Loop, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="echo_server")
    received = Received()
    timing = dataclasses.replace(FAST, outage_log_interval_s=60.0, outage_report_after_s=0.5)
    redis_bus = bus(loop, redis.url(), received, limits=SMALL, timing=timing)
    run_until(loop, lambda: redis_bus.up, "the bus up")
    for _ in range(3):  # one logged, then two short ones only counted
        publish_oversized(loop, redis, received)
    redis.stop(signal.SIGKILL)  # a real outage, longer than outage_report_after_s
    run_until(loop, lambda: "2 short outage(s)" in caplog.text, "the long outage logged")
    redis.start()
    run_until(loop, lambda: redis_bus.up, "the bus up again")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([line for line in lines if "connection lost" in line]) == 2, lines
    assert len([line for line in lines if "back; fanning out" in line]) == 2, lines
    redis_bus.close()


class HostileRedis:
    """A server in the test's loop that greets like Redis, then sends `then` and stays."""

    def __init__(self, loop: Loop, then: bytes) -> None:
        self.loop = loop
        self.then = then
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        loop.set_interest(self.listener, EVENT_READ, self._accept)

    def _accept(self, mask: int) -> None:
        sock, _ = self.listener.accept()
        self.accepted.append(sock)
        sock.setblocking(False)
        self.loop.set_interest(sock, EVENT_READ, functools.partial(self._greet, sock))

    def _greet(self, sock: socket.socket, mask: int) -> None:
        if sock.recv(65536):  # the PING; the answer, then what a broken Redis might send
            sock.send(b"+PONG\r\n" + self.then)
        self.loop.forget(sock)

    def close(self) -> None:
        self.loop.forget(self.listener)
        for sock in (self.listener, *self.accepted):
            sock.close()


@pytest.mark.parametrize(
    "then",
    [
        b"*4294967295\r\n",  # an array of four billion elements: hiredis cannot allocate it
        b"*99999999999\r\n",  # more than RESP allows
        b"?what\r\n",  # not RESP at all
        b"+OK\r\n",  # a reply nobody asked for
    ],
)
def test_a_redis_that_sends_nonsense_costs_the_connection_never_the_loop(
    loop: Loop, then: bytes
) -> None:
    hostile = HostileRedis(loop, then)
    reasons: list[str] = []
    link = connection(loop, f"redis://127.0.0.1:{hostile.port}/0", on_lost=reasons.append)
    run_until(loop, lambda: bool(reasons), "the connection given up")
    assert not link.ready
    assert "internal error" not in reasons[0]  # refused as bad input, not crashed on
    link.close()
    hostile.close()
