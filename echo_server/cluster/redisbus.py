"""Redis inside the select loop: a connection that never blocks, and a publish/subscribe bus.

`RedisConnection` is one non-blocking socket registered with `loop.Loop`: it connects with
`connect_ex` (EINPROGRESS, bounded by a timer), says AUTH and SELECT from the URL, then sends
commands and hands each reply to the callback given with it, in order (Redis answers in the
order it was asked). Replies are parsed by hiredis's Reader (C). A connection that fails, or
stays silent past a reply timeout, is closed, its pending callbacks get a `RedisLostError`, and it
reconnects after an exponential backoff with jitter; nothing is ever raised into the loop.

What Redis sends is untrusted, and its cost to the loop is bounded (`Limits`): one read of at
most REDIS_RECV_BYTES per wakeup, and no further read until those bytes are handled; at most
REDIS_REPLIES_PER_WAKEUP replies handed out per wakeup, the rest on a zero-delay timer, so that
a flood of messages takes turns with the clients; and a reply that grows past `max_reply_bytes`
before it is complete drops the connection (hiredis holds a bulk string whole until its last
byte, so this is the only way not to hold a 500 MiB one).

`RedisBus` is two of them, as Redis requires: one SUBSCRIBEd to a fixed set of channels, one
for PUBLISH and any other command. It is "up" when both are connected and every subscription is
confirmed; `publish` refuses (returns False) when it is not, so the caller can deliver on its own
instead. It logs once when Redis goes away and once when it is back, not per retry; and short
outages that follow a logged one within REDIS_OUTAGE_LOG_INTERVAL_S (a flood of oversized
replies, each dropping the connection) are only counted, in the next outage's line.

The host name is resolved once, when the bus is made (before the loop runs); after that nothing
here blocks, sleeps or starts a thread.

This is not a Redis client library: RESP2 only, no TLS, no Sentinel or Redis Cluster, no retry
of commands, no blocking commands (BLPOP and the like: a reply later than the reply timeout is
taken for a dead connection). A command whose connection is lost may or may not have been
carried out. What the echo server puts through Redis, and why, is in cluster.py.
"""

from __future__ import annotations

import collections
import errno
import functools
import logging
import os
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

from echo_server import defaults
from echo_server.core.loop import EVENT_READ, EVENT_WRITE, WOULD_BLOCK, Loop, Timer

log = logging.getLogger(__name__)

Arg = bytes | str | int
Reply = (
    Any  # bytes, int, None, a list of replies, or an exception (hiredis.ReplyError, RedisLostError)
)
ReplyCallback = Callable[[Reply], None]
SockAddr = tuple[socket.AddressFamily, Any]


class RedisLostError(ConnectionError):
    """Given to the callback of a command whose reply will never come: the connection is gone."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where Redis is and how to log in, from `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`."""

    host: str
    port: int = defaults.REDIS_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        # For log lines: never the password.
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def parse_url(url: str) -> RedisAddress:
    """The address in a redis:// URL; ValueError with a short reason if it is not one."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"not a redis:// URL: {url!r}")
    try:
        port = parts.port or defaults.REDIS_PORT
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the path must be a database number, as in redis://HOST:6379/0: {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"no query or fragment allowed in {url!r}")
    return RedisAddress(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def resolve(address: RedisAddress) -> SockAddr:
    """The first address of the host (blocking: call it at start-up, never in the loop)."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM
        )[0]
    except OSError as error:
        # The command line prints an OSError's text: say which host it was about.
        raise OSError(f"cannot resolve Redis host {address.host!r}: {error.strerror}") from None
    return family, sockaddr


def encode_command(args: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = (
            arg.encode() if isinstance(arg, str) else b"%d" % arg if isinstance(arg, int) else arg
        )
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


def backoff_delay_s(
    attempt: int,
    rng: random.Random,
    min_s: float = defaults.REDIS_BACKOFF_MIN_S,
    max_s: float = defaults.REDIS_BACKOFF_MAX_S,
) -> float:
    """The wait before reconnect attempt `attempt` (0 for the first after a loss).

    `min_s` doubled per attempt up to `max_s`, then a random part of it taken off (up to half),
    so that nodes which lost Redis at the same moment do not all come back at the same moment.
    """
    ceiling = min(max_s, min_s * 2.0 ** min(attempt, 32))
    return ceiling * rng.uniform(0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Timing:
    """The time limits of a connection; the defaults are defaults.py's, tests pass shorter ones."""

    connect_timeout_s: float = defaults.REDIS_CONNECT_TIMEOUT_S
    reply_timeout_s: float = defaults.REDIS_REPLY_TIMEOUT_S
    ping_interval_s: float = defaults.REDIS_PING_INTERVAL_S
    backoff_min_s: float = defaults.REDIS_BACKOFF_MIN_S
    backoff_max_s: float = defaults.REDIS_BACKOFF_MAX_S
    outage_log_interval_s: float = defaults.REDIS_OUTAGE_LOG_INTERVAL_S
    outage_report_after_s: float = defaults.REDIS_OUTAGE_REPORT_AFTER_S


@dataclass(frozen=True, slots=True)
class Limits:
    """What a connection holds and does per wakeup; the owner sets `max_reply_bytes`."""

    max_unsent_bytes: int = defaults.REDIS_MAX_UNSENT_BYTES
    # The largest reply taken (hiredis.Reader's "maxbuf" is not this: it only says when an
    # idle buffer is freed). The cluster makes it --max-message-size plus a margin.
    max_reply_bytes: int = defaults.MAX_MESSAGE_BYTES + defaults.REDIS_REPLY_MARGIN_BYTES
    recv_bytes: int = defaults.REDIS_RECV_BYTES
    replies_per_wakeup: int = defaults.REDIS_REPLIES_PER_WAKEUP


class State(Enum):
    WAITING = "waiting"  # not started, or waiting out the backoff before the next attempt
    CONNECTING = "connecting"  # TCP connect under way
    GREETING = "greeting"  # connected; AUTH, SELECT and PING sent, not all answered yet
    READY = "ready"
    CLOSED = "closed"  # closed by its owner: final


class RedisConnection:
    """One connection to Redis in the loop: commands with callbacks, reconnecting by itself.

    `on_ready()` is called each time it is connected and greeted; `on_lost(reason)` each time a
    connection or an attempt fails (a reconnect is then already scheduled). With `on_push`, the
    connection is a subscriber: the messages of its channels go there as (channel, data).
    """

    def __init__(
        self,
        loop: Loop,
        address: RedisAddress,
        sockaddr: SockAddr | None = None,
        *,
        on_ready: Callable[[], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        on_push: Callable[[bytes, bytes], None] | None = None,
        timing: Timing | None = None,
        limits: Limits | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.loop = loop
        self.address = address
        self.sockaddr = sockaddr or resolve(address)
        self.timing = timing or Timing()
        self.limits = limits or Limits()
        self.state = State.WAITING
        self.failures = 0  # attempts failed in a row, since the last success (or the start)
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._on_push = on_push
        self._rng = rng or random.Random()
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()
        # Bytes fed to the reader and not yet given back as replies (an upper bound: the
        # reader keeps up to 1 KiB of what it has parsed). Bounded by `max_reply_bytes`.
        self._unparsed_bytes = 0
        self._backlog = False  # replies may be parsed and not handed out yet: read no more
        self._resume: Timer | None = None  # the zero-delay timer that goes on handing out
        self._out = bytearray()
        self._interest = 0
        # Callbacks of the commands sent, oldest first, with when each was sent.
        self._pending: collections.deque[tuple[float, ReplyCallback | None]] = collections.deque()
        self._timer: Timer | None = None  # the connect timeout, the backoff, or the health check

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    def start(self) -> None:
        """Connect now (later ones happen by themselves)."""
        if self.state is State.WAITING:
            self.loop.cancel(self._timer)
            self._connect()

    def command(self, *args: Arg, callback: ReplyCallback | None = None) -> bool:
        """Send a command; `callback` gets its reply. False (and no callback) if not ready."""
        if self.state is not State.READY:
            return False
        self._send(args, callback)
        return True

    def close(self) -> None:
        """Close for good: no reconnect; pending callbacks get RedisLostError."""
        if self.state is not State.CLOSED:
            self._teardown("closed")
            self.state = State.CLOSED

    # Connecting.

    def _connect(self) -> None:
        self.state = State.CONNECTING
        self._reader = hiredis.Reader()
        self._unparsed_bytes = 0
        self._timer = self.loop.call_later(self.timing.connect_timeout_s, self._connect_timed_out)
        family, sockaddr = self.sockaddr
        try:
            self._sock = socket.socket(family, socket.SOCK_STREAM)
            self._sock.setblocking(False)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = self._sock.connect_ex(sockaddr)
        except OSError as error:  # out of descriptors, say: a failed attempt like any other
            self._lose(error.strerror or str(error))
            return
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self._lose(os.strerror(code))
            return
        self._set_interest(EVENT_WRITE)

    def _connect_timed_out(self) -> None:
        self._timer = None
        self._lose(f"no answer in {self.timing.connect_timeout_s:g} s")

    def _connected(self) -> None:
        assert self._sock is not None
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._lose(os.strerror(code))
            return
        self.state = State.GREETING
        address = self.address
        if address.password is not None:
            user = (address.username,) if address.username else ()
            self._send(("AUTH", *user, address.password), self._greeted)
        if address.db:
            self._send(("SELECT", address.db), self._greeted)
        # Ready means Redis has answered, not merely that something accepted the connection.
        self._send(("PING",), self._greeted_last)
        self._update_interest()

    def _greeted(self, reply: Reply) -> None:
        if isinstance(reply, Exception) and self.state is State.GREETING:
            self._lose(f"refused: {reply}")

    def _greeted_last(self, reply: Reply) -> None:
        self._greeted(reply)
        if self.state is not State.GREETING:
            return
        self.state = State.READY
        self.failures = 0
        self.loop.cancel(self._timer)
        self._timer = self.loop.call_later(self.timing.ping_interval_s, self._check_health)
        if self._on_ready is not None:
            self._call(self._on_ready)

    def _check_health(self) -> None:
        """Ping an idle connection; drop one whose oldest command is unanswered for too long."""
        self._timer = self.loop.call_later(self.timing.ping_interval_s, self._check_health)
        if self._pending:
            if self.loop.time() - self._pending[0][0] > self.timing.reply_timeout_s:
                self._lose(f"no reply in {self.timing.reply_timeout_s:g} s")
        else:
            self._send(("PING",), None)

    # Losing and reconnecting.

    def _lose(self, reason: str) -> None:
        if self.state is State.CLOSED or self.state is State.WAITING:
            return
        self._teardown(reason)
        delay_s = backoff_delay_s(
            self.failures, self._rng, self.timing.backoff_min_s, self.timing.backoff_max_s
        )
        self.failures += 1
        self._timer = self.loop.call_later(delay_s, self._connect)
        log.debug("%s: %s; next attempt in %.2f s", self.address, reason, delay_s)
        if self._on_lost is not None:
            self._call(self._on_lost, reason)

    def _teardown(self, reason: str) -> None:
        self.state = State.WAITING
        self.loop.cancel(self._timer)
        self._timer = None
        self.loop.cancel(self._resume)
        self._resume = None
        self._backlog = False
        if self._sock is not None:
            self.loop.forget(self._sock)
            self._sock.close()
            self._sock = None
        self._interest = 0
        self._out.clear()
        pending, self._pending = self._pending, collections.deque()
        lost = RedisLostError(reason)
        for _, callback in pending:
            if callback is not None:
                self._call(callback, lost)

    # Bytes in and out.

    def _send(self, args: Sequence[Arg], callback: ReplyCallback | None) -> None:
        self._out += encode_command(args)
        self._pending.append((self.loop.time(), callback))
        if len(self._out) > self.limits.max_unsent_bytes:
            self._lose(f"over {self.limits.max_unsent_bytes} bytes unsent: Redis is not keeping up")
        elif not self._interest & EVENT_WRITE:
            self._flush()  # at once: one send per command when Redis keeps up, no extra wakeup

    def _flush(self) -> None:
        if self._sock is None or self.state is State.CONNECTING:
            return
        try:
            sent = self._sock.send(self._out)
        except WOULD_BLOCK:
            sent = 0
        except OSError as error:
            self._lose(error.strerror or str(error))
            return
        del self._out[:sent]
        self._update_interest()

    def _update_interest(self) -> None:
        self._set_interest(EVENT_READ | (EVENT_WRITE if self._out else 0))

    def _set_interest(self, events: int) -> None:
        if self._sock is not None and events != self._interest:
            self._interest = events
            self.loop.set_interest(self._sock, events, self._on_ready_to_io)

    def _on_ready_to_io(self, mask: int) -> None:
        try:
            if self.state is State.CONNECTING:
                if mask & (EVENT_WRITE | EVENT_READ):
                    self._connected()
                return
            if mask & EVENT_WRITE:
                self._flush()
            if mask & EVENT_READ and self._sock is not None:
                self._read()
        except Exception as error:
            self._internal_error(error)

    def _internal_error(self, error: Exception) -> None:
        # A bug here (or in a callback) must cost this connection, never the server's loop.
        log.exception("%s: internal error", self.address)
        self._lose(f"internal error: {error!r}")

    def _read(self) -> None:
        assert self._sock is not None
        if not self._backlog:  # what was read before is handed out first (see _hand_out)
            try:
                data = self._sock.recv(self.limits.recv_bytes)
            except WOULD_BLOCK:
                return
            except OSError as error:
                self._lose(error.strerror or str(error))
                return
            if not data:
                self._lose("connection closed by Redis")
                return
            self._reader.feed(data)
            self._unparsed_bytes += len(data)
        self._hand_out()

    def _hand_out(self) -> None:
        """Give out the complete replies read, up to `replies_per_wakeup`; the rest later."""
        self._backlog = False
        for _ in range(self.limits.replies_per_wakeup):
            if self._sock is None:  # lost or closed by a callback
                return
            try:
                reply = self._reader.gets()
            except (hiredis.ProtocolError, MemoryError) as error:
                # MemoryError: an array header of billions of elements, say.
                self._lose(f"protocol error: {str(error) or type(error).__name__}")
                return
            # RESP2 has no false value, so hiredis's False means "no complete reply yet".
            if reply is False:
                if self._unparsed_bytes > self.limits.max_reply_bytes:
                    self._lose(f"a reply of over {self.limits.max_reply_bytes} bytes: refused")
                return
            self._unparsed_bytes = self._reader.len()
            self._dispatch(reply)
        # Budget spent: let the loop serve others, and go on at once after them. Until the
        # backlog is handed out nothing more is read, so the reader holds one read at most.
        self._backlog = True
        if self._resume is None:
            self._resume = self.loop.call_later(0.0, self._go_on)

    def _go_on(self) -> None:
        self._resume = None
        if self._backlog and self._sock is not None:
            try:
                self._hand_out()
            except Exception as error:
                self._internal_error(error)

    def _dispatch(self, reply: Reply) -> None:
        if (
            self._on_push is not None
            and isinstance(reply, list)
            and len(reply) == 3
            and reply[0] == b"message"
        ):
            self._call(self._on_push, reply[1], reply[2])
            return
        if not self._pending:
            self._lose(f"a reply nobody asked for: {reply!r:.80}")
            return
        _, callback = self._pending.popleft()
        if callback is not None:
            self._call(callback, reply)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        # The owner's code runs inside this connection's callbacks and timers: a bug there is
        # logged, and must neither break this connection's state nor escape into the loop.
        try:
            callback(*args)
        except Exception:
            log.exception("%s: callback %r failed", self.address, callback)


class RedisBus:
    """Publish to and receive from a fixed set of Redis channels, through two connections.

    `on_message(channel, data)` gets every message of the channels, in Redis's order, this
    process's own included. `on_change(up)` is told when the bus goes up or down.
    """

    def __init__(
        self,
        loop: Loop,
        url: str,
        channels: Sequence[bytes],
        on_message: Callable[[bytes, bytes], None],
        on_change: Callable[[bool], None] | None = None,
        *,
        timing: Timing | None = None,
        limits: Limits | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.loop = loop
        self.timing = timing or Timing()
        self.address = parse_url(url)
        sockaddr = resolve(self.address)
        self.channels = tuple(channels)
        self.up = False
        self._on_message = on_message
        self._on_change = on_change
        self._subscribed: set[bytes] = set()
        self._down_since_s = loop.time()  # when the bus last went down (or was made)
        self._outage_logged = False  # the current outage has been logged
        self._last_outage_log_s: float | None = None
        self._unlogged_outages = 0  # short outages since the last logged one
        self._was_up = False
        self.commands = RedisConnection(
            loop,
            self.address,
            sockaddr,
            on_ready=self._update,
            on_lost=self._lost,
            timing=timing,
            limits=limits,
            rng=rng,
        )
        self.subscriber = RedisConnection(
            loop,
            self.address,
            sockaddr,
            on_ready=self._subscribe,
            on_lost=self._lost,
            on_push=self._push,
            timing=timing,
            limits=limits,
            rng=rng,
        )

    def start(self) -> None:
        self.commands.start()
        self.subscriber.start()

    def publish(self, channel: bytes, data: bytes) -> bool:
        """PUBLISH, if the bus is up; False if not, and then nothing was sent."""
        return self.up and self.commands.command("PUBLISH", channel, data)

    def command(self, *args: Arg, callback: ReplyCallback | None = None) -> bool:
        """Any command on the command connection; False (and no callback) if it is not ready."""
        return self.commands.command(*args, callback=callback)

    def close(self) -> None:
        self.commands.close()
        self.subscriber.close()
        self._update()

    def _subscribe(self) -> None:
        self._subscribed.clear()
        for channel in self.channels:
            self.subscriber.command(
                "SUBSCRIBE", channel, callback=functools.partial(self._confirmed, channel)
            )

    def _confirmed(self, channel: bytes, reply: Reply) -> None:
        if isinstance(reply, list) and reply[:2] == [b"subscribe", channel]:
            self._subscribed.add(channel)
            self._update()

    def _push(self, channel: bytes, data: bytes) -> None:
        # Delivered even while the command connection is down: a message that reached Redis was
        # never delivered directly, so taking it here cannot duplicate it.
        self._on_message(channel, data)

    def _lost(self, reason: str) -> None:
        if not self.subscriber.ready:
            self._subscribed.clear()
        self._update()
        if not self._outage_logged and self._outage_worth_a_line():
            self._log_outage(reason)

    def _outage_worth_a_line(self) -> bool:
        """The first outage, one long after the last logged, or one that has lasted a while."""
        now_s = self.loop.time()
        return (
            self._last_outage_log_s is None
            or now_s - self._last_outage_log_s >= self.timing.outage_log_interval_s
            or now_s - self._down_since_s >= self.timing.outage_report_after_s
        )

    def _log_outage(self, reason: str) -> None:
        self._outage_logged = True
        self._last_outage_log_s = self.loop.time()
        unlogged = self._unlogged_outages
        self._unlogged_outages = 0
        also = f"; {unlogged} short outage(s) since the last one logged" if unlogged else ""
        if self._was_up:
            log.warning(
                "%s: connection lost (%s%s); delivering locally, reconnecting",
                self.address,
                reason,
                also,
            )
        else:
            log.warning(
                "%s: cannot connect (%s); delivering locally, retrying", self.address, reason
            )

    def _update(self) -> None:
        up = (
            self.commands.ready
            and self.subscriber.ready
            and len(self._subscribed) == len(self.channels)
        )
        if up == self.up:
            return
        self.up = up
        if up:
            # "back" only after a logged outage: the log never says back without gone.
            if self._outage_logged or not self._was_up:
                log.info(
                    "%s: %s; fanning out through it",
                    self.address,
                    "back" if self._was_up else "connected",
                )
            else:
                self._unlogged_outages += 1
                log.debug("%s: back after a short outage; fanning out through it", self.address)
            self._was_up = True
            self._outage_logged = False
        else:
            self._down_since_s = self.loop.time()
        if self._on_change is not None:
            self._on_change(up)
