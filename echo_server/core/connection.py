"""An open WebSocket connection: bytes from the socket, frames to the handler, frames back out.

`Connection` has the handler API of simple-websocket-server, the package this project builds on:
subclass it, override `connected()`, `handle()` (the message is in `self.data`: `str` for text,
`bytes` for binary) and `handle_close()`; call `send_message()` and `close()`. Under that API it
is hardened where upstream's `WebSocket` breaks under load or hostile peers:

- bytes go to the Sans-IO `frames.FrameReader` (strict RFC 6455: masks, message limits, close
  codes, UTF-8), whose `ProtocolError` becomes a close frame in `_fail`, and nowhere else; a
  client's bytes are parsed at most FRAMES_PER_TURN frames per loop turn;
- frames go to a `SendBuffer`, flushed once per loop turn, with a write limit: above it the
  connection stops reading (back-pressure), and a broadcast subscriber that far behind is closed;
- `close` starts a real closing handshake bounded by a close timeout, and the server pings;
- a handler exception, or a bug in this code for one connection, is logged with its traceback
  and the client is closed with 1011; no exception leaves a connection's callbacks.

What a connection needs of its server is `Host`: the loop, the settings, the statistics, the
shared receive buffer and a way to say "forget me". Handler classes written for upstream's own
`simple_websocket_server.WebSocket` run on this class through compat.py. The handshake happens
before a Connection exists (see upgrade.py).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from echo_server import defaults
from echo_server.core.loop import EVENT_READ, EVENT_WRITE, WOULD_BLOCK, Loop, Timer
from echo_server.core.sendbuffer import Buffer, SendBuffer
from echo_server.core.stats import Stats
from echo_server.protocol.frames import (
    Close,
    CloseCode,
    FrameReader,
    Message,
    Opcode,
    Ping,
    Pong,
    ProtocolError,
    encode_close,
    frame_header,
    message_payload,
)
from echo_server.protocol.http import Request
from echo_server.settings import Settings

log = logging.getLogger(__name__)


class Host(Protocol):
    """What a connection needs of its server."""

    loop: Loop
    settings: Settings
    stats: Stats
    recv_buffer: memoryview  # one receive buffer for every plain socket: no allocation per read

    def forget(self, connection: Connection) -> None:
        """The connection's socket is closed: drop it from the server's table."""
        ...


# How a server makes the connection of a route: a Connection subclass is one.
ConnectionFactory = Callable[[Host, socket.socket, Any, Request], "Connection"]


class Phase(Enum):
    OPEN = "open"  # messages flow both ways
    CLOSING = "closing"  # our close frame is queued or sent; waiting for the peer's
    DRAINING = "draining"  # close handshake done (or failed): flush, half-close, wait for EOF
    CLOSED = "closed"


class Connection:
    """One WebSocket client. Subclass it and override `handle()`; see the module docstring."""

    def __init__(self, server: Host, sock: socket.socket, address: Any, request: Request) -> None:
        self.server = server
        self.client = sock  # upstream's name for the socket
        self.address = address
        self.request = request  # .method, .path, .query, .headers (a case-insensitive mapping)
        self.data: str | bytes = ""
        self.opcode = Opcode.TEXT
        self.handshaked = True
        self.usingssl = isinstance(sock, ssl.SSLSocket)
        self.route = request.path  # the path that chose this handler, for statistics
        self.fd = sock.fileno()  # the server's key for this connection, kept after close
        self.phase = Phase.OPEN
        settings = server.settings
        self._reader = FrameReader(max_message_bytes=settings.max_message_bytes)
        self._out = SendBuffer(sock)
        self._write_limit = settings.write_limit_bytes
        self._flush_queued = False  # a flush is asked for at the end of this loop turn
        self._reading_paused = False  # too much unsent: back-pressure until half has drained
        self._backlogged = False  # frames left to parse from the last read: continued next turn
        self._interest = 0
        self._timer: Timer | None = None  # the close timeout, while one runs
        self._ping_timer: Timer | None = None
        self._pong_timer: Timer | None = None
        self._ping_payload: bytes | None = None
        self._handle_close_called = False
        # The code of the closing handshake: the first close frame sent or received (counted by
        # close code in the statistics when the socket closes; 1006 if there was none).
        self._close_code: int | None = None

    @property
    def closed(self) -> bool:
        """True once the closing handshake has started (or the socket is gone)."""
        return self.phase is not Phase.OPEN

    # Handler API: override these three.

    def connected(self) -> None:
        """Called once the handshake is complete, before any message."""

    def handle(self) -> None:
        """Called for each message, with `self.data` (`str` or `bytes`) and `self.opcode`."""

    def handle_close(self) -> None:
        """Called once the connection is closed, whichever side closed it and however."""

    # Handler API: call these.

    def send_message(self, data: str | bytes | bytearray | memoryview) -> None:
        """Send one message: text for `str`, binary for anything bytes-like.

        Once the connection has started closing (`closed` is true), this does nothing: nothing
        may follow a close frame. Upstream behaves the same from the client's point of view
        (what it queues after its close frame is never delivered).
        """
        opcode, payload = message_payload(data)
        self.send_frame(opcode, payload)

    def close(self, status: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake; the socket closes when the peer answers or time is up."""
        if self.phase is Phase.OPEN:
            self._queue(encode_close(status, reason))
            self._close_code = status
            self.phase = Phase.CLOSING
            self._start_close_timer()
            self._update_interest()

    def send_shared(self, frame: bytes) -> bool:
        """Queue a frame encoded once for many clients (see broadcast.py); False if not sent.

        A client that is too far behind (more than its write limit unsent) is closed with 1008,
        so that it cannot hold memory or delay the others.
        """
        if self.phase is not Phase.OPEN:
            return False
        if self._out.cost > self._write_limit:
            log.warning("closing %s: too slow, %d bytes unsent", self.address, self._out.size)
            self._fail(CloseCode.POLICY_VIOLATION, "too slow")
            return False
        stats = self.server.stats
        stats.messages_out += 1
        stats.bytes_out += len(frame)
        self._queue(frame)
        return True

    # Called by the server.

    def start(self, response_head: bytes, leftover: bytes) -> None:
        """Send the 101 response, tell the handler, then parse bytes that came with the request."""
        self._queue(response_head)
        self._schedule_ping()
        self._guard(self._start, leftover)

    def _start(self, leftover: bytes) -> None:
        self._call_handler(self.connected)
        if leftover and self.phase is Phase.OPEN:
            self._receive(leftover)
        self._update_interest()

    def on_ready(self, mask: int) -> None:
        try:
            if mask & EVENT_WRITE:
                self._flush()
            if mask & EVENT_READ and self.phase is not Phase.CLOSED:
                self._read()
        except Exception:
            self._internal_error()

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake."""
        self._drop()

    # Guarding: a bug here must cost this one client, never the server and everyone else.

    def _guard(self, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:
            self._internal_error()

    def _internal_error(self) -> None:
        log.exception("internal error on connection from %s", self.address)
        try:
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")
        except Exception:
            self._drop()  # failing to fail: nothing is left to try but letting go

    def _later(self, delay_s: float, method: Callable[[], None]) -> Timer:
        """A loop timer that runs `method` under this connection's guard."""
        return self.server.loop.call_later(delay_s, lambda: self._guard(method))

    # Reading.

    def _read(self) -> None:
        sock = self.client
        buffer = self.server.recv_buffer
        data: bytes | memoryview
        try:
            if self.usingssl:
                assert isinstance(sock, ssl.SSLSocket)
                data = sock.recv(len(buffer))
                # TLS may hold decrypted bytes that select() cannot see: take them now.
                while data and sock.pending() and len(data) < len(buffer):
                    data += sock.recv(min(sock.pending(), len(buffer) - len(data)))
            else:
                # Into the server's one receive buffer: no allocation per read. The frame
                # reader copies what it keeps, so the buffer is free again when this returns.
                data = buffer[: sock.recv_into(buffer)]
        except WOULD_BLOCK:
            return
        except OSError:
            self._drop()
            return
        if not data:
            self._drop()  # EOF: after our close that is the normal end, otherwise abnormal (1006)
            return
        if self.phase is Phase.DRAINING:
            return  # after the close handshake, bytes are read only to find the EOF
        self.server.stats.bytes_in += len(data)
        self._receive(data)

    def _receive(self, data: bytes | memoryview) -> None:
        """Parse a slice of what was received (at most FRAMES_PER_TURN frames) and handle it."""
        try:
            events = self._reader.feed(data, defaults.FRAMES_PER_TURN)
        except ProtocolError as error:
            self._fail(error.code, error.reason)
            return
        for event in events:
            if self.phase is Phase.CLOSED or self.phase is Phase.DRAINING:
                return
            if type(event) is Message:
                if self.phase is Phase.OPEN:  # after our close frame, messages are dropped
                    self.server.stats.messages_in += 1
                    self.data = event.data
                    self.opcode = Opcode.TEXT if isinstance(event.data, str) else Opcode.BINARY
                    self._call_handler(self.handle)
            elif type(event) is Ping:
                if self.phase is Phase.OPEN:
                    self.send_frame(Opcode.PONG, event.payload)
            elif type(event) is Pong:
                self._on_pong(event.payload)
            elif type(event) is Close:
                self._on_close_frame(event)
        backlogged = self._reader.backlog and self.phase is not Phase.CLOSED
        if backlogged != self._backlogged:
            self._backlogged = backlogged
            self._update_interest()
        if backlogged:
            # Others get their turn first: this socket's next slice runs in the next turn,
            # and until its backlog is done, nothing more is read from it.
            self.server.loop.call_soon(self._continue)

    def _continue(self) -> None:
        self._guard(self._receive, b"")
        if not self._backlogged and self.usingssl and self.phase is Phase.OPEN:
            self._read_tls_pending()

    def _read_tls_pending(self) -> None:
        # Bytes TLS decrypted but nobody read are invisible to the poller: read them now.
        sock = self.client
        assert isinstance(sock, ssl.SSLSocket)
        if sock.pending() and self._interest & EVENT_READ:
            self._guard(self._read)

    def _on_close_frame(self, event: Close) -> None:
        if self.phase is Phase.OPEN:
            self._close_code = event.code
            # Echo the peer's code (an empty close is answered with an empty close).
            if event.code == CloseCode.NO_STATUS_RCVD:
                self._queue(frame_header(Opcode.CLOSE, 0))
            else:
                self._queue(encode_close(event.code))
        self._finish()

    def _call_handler(self, method: Callable[[], None]) -> None:
        try:
            method()
        except Exception:
            log.exception("handler %s failed for %s", type(self).__name__, self.address)
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")

    # Closing.

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: the one place a protocol violation becomes a close frame."""
        if self.phase is Phase.OPEN:
            self._queue(encode_close(code, reason))
            self._close_code = code
            log.debug("closing %s with %d: %s", self.address, code, reason)
        if self.phase is not Phase.CLOSED:
            self._finish()

    def _finish(self) -> None:
        """The closing handshake is over: flush what is queued, half-close, wait for the EOF."""
        self.phase = Phase.DRAINING
        self._reader = FrameReader()  # drop partial messages now rather than at the end
        self._backlogged = False
        self._start_close_timer()
        self._cancel_ping()
        self._flush()

    def _start_close_timer(self) -> None:
        if self._timer is None:
            self._timer = self.server.loop.call_later(
                self.server.settings.close_timeout_s, self._drop
            )

    def _drop(self) -> None:
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        loop = self.server.loop
        loop.cancel(self._timer)
        self._cancel_ping()
        loop.forget(self.client)
        self._out.clear()
        self.client.close()
        self.server.stats.closes[self._close_code or CloseCode.ABNORMAL_CLOSURE] += 1
        self.server.forget(self)
        if not self._handle_close_called:
            self._handle_close_called = True
            try:
                self.handle_close()
            except Exception:
                log.exception("handle_close of %s failed for %s", type(self).__name__, self.address)

    # Keepalive: a ping every interval; no pong within the timeout fails the connection.

    def _schedule_ping(self) -> None:
        self._ping_timer = self._later(self.server.settings.ping_interval_s, self._send_ping)

    def _send_ping(self) -> None:
        if self.phase is not Phase.OPEN:
            return
        self._schedule_ping()
        if self._ping_payload is not None:
            return  # still waiting for the last pong: its timer decides
        self._ping_payload = os.urandom(4)
        self.send_frame(Opcode.PING, self._ping_payload)
        self._pong_timer = self._later(self.server.settings.ping_timeout_s, self._pong_missing)

    def _pong_missing(self) -> None:
        if self._ping_payload is not None:
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _on_pong(self, payload: bytes) -> None:
        if payload == self._ping_payload:  # unsolicited pongs are allowed and ignored
            self._ping_payload = None
            self.server.loop.cancel(self._pong_timer)

    def _cancel_ping(self) -> None:
        self.server.loop.cancel(self._ping_timer)
        self.server.loop.cancel(self._pong_timer)
        self._ping_timer = self._pong_timer = None

    # Writing: frames are queued as they are made, and flushed once at the end of the turn.

    def send_frame(
        self, opcode: Opcode, payload: bytes | bytearray | memoryview, fin: bool = True
    ) -> None:
        """One frame (a fragment of a message, with `fin=False`); nothing once closing."""
        if self.phase is not Phase.OPEN:
            return  # nothing may follow our close frame
        stats = self.server.stats
        stats.messages_out += 1
        stats.bytes_out += len(payload)
        if not isinstance(payload, bytes):
            payload = bytes(payload)  # the caller may reuse its buffer once this returns
        self._queue(frame_header(opcode, len(payload), fin=fin), payload)

    def _queue(self, *parts: Buffer) -> None:
        if self.phase is Phase.CLOSED:
            return
        self._out.write(parts)
        if not self._flush_queued:
            self._flush_queued = True
            self.server.loop.at_turn_end(self._flush_at_turn_end)

    def _flush_at_turn_end(self) -> None:
        self._flush_queued = False
        self._guard(self._flush)

    def _flush(self) -> None:
        if self.phase is Phase.CLOSED:
            return
        try:
            self._out.flush()
        except OSError:
            self._drop()
            return
        if not self._out and self.phase is Phase.DRAINING:
            self._half_close()
        self._update_interest()

    def _half_close(self) -> None:
        # Closing with unread bytes in the kernel would send a reset that can destroy our close
        # frame in flight; shut down writing instead and read until the peer's EOF (or timeout).
        try:
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop()

    def _update_interest(self) -> None:
        if self.phase is Phase.CLOSED:
            return
        cost = self._out.cost
        was_paused = self._reading_paused
        if was_paused:
            self._reading_paused = cost > self._write_limit // 2
        else:
            self._reading_paused = cost > self._write_limit
        events = 0 if self._reading_paused or self._backlogged else EVENT_READ
        if self._out:
            events |= EVENT_WRITE
        if events != self._interest:
            self._interest = events
            self.server.loop.set_interest(self.client, events, self.on_ready)
            if was_paused and not self._reading_paused and self.usingssl:
                self.server.loop.call_soon(self._read_tls_pending)
