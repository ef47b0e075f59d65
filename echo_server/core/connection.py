"""An open WebSocket connection: bytes from the socket, frames to the handler, frames back out.

`Connection` has the handler API of simple-websocket-server, the package this project builds on:
subclass it, override `connected()`, `handle()` (the message is in `self.data`: `str` for text,
`bytes` for binary) and `handle_close()`; call `send_message()` and `close()`. Under that API it
is hardened where upstream's `WebSocket` breaks under load or hostile peers:

- bytes go to the Sans-IO `frames.FrameReader` (strict RFC 6455: masks, message limits, close
  codes, UTF-8), whose `ProtocolError` becomes a close frame in `_fail`, and nowhere else; a
  client's bytes are parsed at most FRAMES_PER_TURN frames per loop turn;
- frames go to a `SendBuffer`, flushed once per loop turn (the echoes of one read, when
  nothing is queued before them, are sent at once instead), with a write limit: above it the
  connection stops reading (back-pressure), and a broadcast subscriber that far behind is closed;
- `close` starts a real closing handshake bounded by a close timeout, and the server pings;
- with permessage-deflate negotiated (protocol/deflate.py), `send_message` compresses (messages
  of 32 bytes or more; zlib state made on first use), the reader inflates within the message
  limit, and `send_shared` frames go out uncompressed (see there); `self.subprotocol` is the
  subprotocol the handshake chose (None for none), set before `connected()`;
- a handler exception, or a bug in this code for one connection, is logged with its traceback
  and the client is closed with 1011; no exception leaves a connection's callbacks.

What a connection needs of its server is `Host`: the loop, the settings, the statistics, the
shared receive buffer and a way to say "forget me". Handler classes written for upstream's own
`simple_websocket_server.WebSocket` run on this class through compat.py. The handshake happens
before a Connection exists (see upgrade.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import struct
from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar, Protocol

from echo_server import defaults
from echo_server.core.loop import EVENT_READ, EVENT_WRITE, WOULD_BLOCK, Loop, Timer
from echo_server.core.sendbuffer import Buffer, SendBuffer
from echo_server.core.stats import Stats
from echo_server.protocol.deflate import Deflater
from echo_server.protocol.frames import (
    Close,
    CloseCode,
    FrameReader,
    FrameSeen,
    Message,
    Opcode,
    Ping,
    Pong,
    ProtocolError,
    encode_close,
    frame_header,
    message_payload,
)
from echo_server.protocol.handshake import Accepted
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


LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
OWNED_TIMERS_SWEEP = 64  # a handler's timers kept for cancelling; fired ones swept past this
MAX_PINGS_IN_FLIGHT = 16  # pings awaiting their pong, kept to time them; the oldest goes first

# How a server makes the connection of a route: a Connection subclass is one.
ConnectionFactory = Callable[[Host, socket.socket, Any, Request], "Connection"]


class Phase(Enum):
    OPEN = "open"  # messages flow both ways
    CLOSING = "closing"  # our close frame is queued or sent; waiting for the peer's
    DRAINING = "draining"  # close handshake done (or failed): flush, half-close, wait for EOF
    CLOSED = "closed"


class Connection:
    """One WebSocket client. Subclass it and override `handle()`; see the module docstring."""

    # An inspecting route sets this: every frame received is then reported to
    # `frame_received` as it arrives (a flag checked per frame; nothing else costs).
    report_frames: ClassVar[bool] = False

    # A handler that sends every message back unchanged, and does nothing else with it, sets
    # this (Echo, without fault knobs): messages that arrive whole in one short frame are then
    # echoed by the frame reader into one buffer, queued once per read, and `handle()` is not
    # called for them (see FrameReader.feed). Never with compression agreed or frames reported.
    echoes = False

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
        self.subprotocol: str | None = None  # as negotiated; set before connected()
        self.extensions: list[str] = []  # as agreed, in the 101's words; set before connected()
        self.fd = sock.fileno()  # the server's key for this connection, kept after close
        self.phase = Phase.OPEN
        settings = server.settings
        self._reader = FrameReader(
            max_message_bytes=settings.max_message_bytes, report_frames=self.report_frames
        )
        self._out = SendBuffer(sock)
        self._deflater: Deflater | None = None  # permessage-deflate was negotiated
        self._write_limit = settings.write_limit_bytes
        self._flush_queued = False  # a flush is asked for at the end of this loop turn
        self._reading_paused = False  # too much unsent: back-pressure until half has drained
        self._backlogged = False  # frames left to parse from the last read: continued next turn
        self._interest = 0
        self._timer: Timer | None = None  # the close timeout, while one runs
        self._ping_timer: Timer | None = None
        self._pong_timer: Timer | None = None
        self._ping_payload: bytes | None = None  # the keepalive ping awaiting its pong
        self._pings: dict[bytes, float] | None = None  # pings in flight: payload -> sent at
        self._owned_timers: list[Timer] | None = None  # the handler's, cancelled at the close
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

    # Hooks for inspecting the wire (an inspector overrides them; they do nothing here).

    def frame_received(self, frame: FrameSeen) -> None:
        """A frame arrived (only with `report_frames`), before what it completes is handled."""

    def pong_received(self, payload: bytes, rtt_s: float) -> None:
        """A pong answered one of our pings (`ping()`, or the keepalive's), `rtt_s` later."""

    def close_received(self, code: int, reason: str) -> None:
        """The peer's close frame arrived; our answer is sent right after this returns."""

    # Handler API: call these.

    def send_message(self, data: str | bytes | bytearray | memoryview) -> None:
        """Send one message: text for `str`, binary for anything bytes-like.

        Once the connection has started closing (`closed` is true), this does nothing: nothing
        may follow a close frame. Upstream behaves the same from the client's point of view
        (what it queues after its close frame is never delivered). With permessage-deflate
        negotiated, the message is compressed unless the deflater says to send it as it is.
        """
        opcode, payload = message_payload(data)
        deflater = self._deflater
        if deflater is not None and self.phase is Phase.OPEN:
            compressed = deflater.compress(payload)
            if compressed is not None:
                stats = self.server.stats
                stats.messages_out += 1
                stats.bytes_out += len(compressed)
                self._queue(frame_header(opcode, len(compressed), compressed=True), compressed)
                return
        self.send_frame(opcode, payload)

    def soon(self, method: Callable[[], None]) -> None:
        """Run `method` in the next loop turn, once what this turn queued has been sent, under
        this connection's guard; not at all if the connection has closed by then."""

        def run() -> None:
            if self.phase is not Phase.CLOSED:
                self._guard(method)

        self.server.loop.call_soon(run)

    def later(self, delay_s: float, method: Callable[[], None]) -> Timer:
        """Run `method` in `delay_s`, under this connection's guard (a failure closes it
        with 1011); cancelled by itself when the connection closes."""
        return self._own(self._later(delay_s, method))

    def every(self, interval_s: float, method: Callable[[], None]) -> Timer:
        """Run `method` every `interval_s` (no drift), as `later` does."""
        timer = self.server.loop.call_every(interval_s, lambda: self._guard(method))
        return self._own(timer)

    def _own(self, timer: Timer) -> Timer:
        if self._owned_timers is None:
            self._owned_timers = []
        elif len(self._owned_timers) > OWNED_TIMERS_SWEEP:
            self._owned_timers = [t for t in self._owned_timers if not t.cancelled]
        self._owned_timers.append(timer)
        return timer

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping (payload up to 125 bytes); its pong calls `pong_received`."""
        if self.phase is not Phase.OPEN:
            return
        pings = self._pings
        if pings is None:
            pings = self._pings = {}
        elif len(pings) >= MAX_PINGS_IN_FLIGHT:
            del pings[next(iter(pings))]  # the oldest: its pong, if it ever comes, is ignored
        pings[bytes(payload)] = self.server.loop.time()
        self.send_frame(Opcode.PING, payload)

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

        With permessage-deflate negotiated the frame still goes out as it is, uncompressed
        (RFC 7692 lets each message choose): compressing it would cost a compression per
        subscriber (each has its own compression context), where the point of a shared frame is
        to be encoded once for all; the broadcasts here (ticks, chat lines, statistics) are
        short anyway.
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

    def start(self, accepted: Accepted, leftover: bytes) -> None:
        """Send the 101 response, tell the handler, then parse bytes that came with the request."""
        self._queue(accepted.response())
        self.subprotocol = accepted.subprotocol
        agreement = accepted.deflate
        if agreement is not None:
            self.extensions = [agreement.response]
            self._reader = FrameReader(
                max_message_bytes=self.server.settings.max_message_bytes,
                report_frames=self.report_frames,
                decompressor=agreement.inflater(),
            )
            self._deflater = agreement.deflater()
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

    def reset(self) -> None:
        """Drop the connection with a TCP reset (RST): no close frame, no orderly end."""
        with contextlib.suppress(OSError):
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
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
        reader = self._reader
        echo = (
            bytearray()
            if self.echoes and self._deflater is None and self.phase is Phase.OPEN
            else None
        )
        try:
            events = reader.feed(data, defaults.FRAMES_PER_TURN, echo)
        except ProtocolError as error:
            self._fail(error.code, error.reason)
            return
        if echo:
            # Each echo is a 2-byte header and the payload: count what send_frame counts.
            echoed = reader.echoed
            stats = self.server.stats
            stats.messages_in += echoed
            stats.messages_out += echoed
            stats.bytes_out += len(echo) - 2 * echoed
            if self._out.size or self.usingssl:  # .size: no __bool__ call
                self._queue(echo)
            else:
                # Nothing is queued before these echoes, so waiting for the turn's end would
                # only delay them: they go now, in one send (this read's only one, as the turn's
                # end would give them). What the kernel does not take is queued as usual.
                try:
                    sent = self.client.send(echo)
                except OSError:
                    sent = 0  # would block, or the socket is dead: the queued flush finds out
                if sent < len(echo):
                    self._queue(echo[sent:] if sent else echo)
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
            elif type(event) is FrameSeen:
                self._call_handler(self.frame_received, event)
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
            self._call_handler(self.close_received, event.code, event.reason)
        if self.phase is Phase.OPEN:
            # Echo the peer's code (an empty close is answered with an empty close).
            if event.code == CloseCode.NO_STATUS_RCVD:
                self._queue(frame_header(Opcode.CLOSE, 0))
            else:
                self._queue(encode_close(event.code))
        self._finish()

    def _call_handler(self, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
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
        self._deflater = None  # and zlib state: nothing more is sent or read
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
        for timer in self._owned_timers or ():
            loop.cancel(timer)
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
        if self._deflater is not None:
            self._deflater.release_if_idle()  # ~38 KiB, once a ping interval passes unused
        if self._ping_payload is not None:
            return  # still waiting for the last pong: its timer decides
        self._ping_payload = os.urandom(4)
        self.ping(self._ping_payload)
        self._pong_timer = self._later(self.server.settings.ping_timeout_s, self._pong_missing)

    def _pong_missing(self) -> None:
        if self._ping_payload is not None:
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _on_pong(self, payload: bytes) -> None:
        sent_s = self._pings.pop(payload, None) if self._pings else None
        if sent_s is None:
            return  # unsolicited pongs are allowed and ignored
        if payload == self._ping_payload:
            self._ping_payload = None
            self.server.loop.cancel(self._pong_timer)
        self._call_handler(self.pong_received, payload, self.server.loop.time() - sent_s)

    def _cancel_ping(self) -> None:
        self.server.loop.cancel(self._ping_timer)
        self.server.loop.cancel(self._pong_timer)
        self._ping_timer = self._pong_timer = None

    # Writing: frames are queued as they are made, and flushed once at the end of the turn.

    def send_frame(
        self, opcode: Opcode, payload: bytes | bytearray | memoryview, fin: bool = True
    ) -> None:
        """One frame (a fragment of a message, with `fin=False`), never compressed; nothing once
        closing."""
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
        if not self._out.size and self.phase is Phase.DRAINING:
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
        if self._out.size:
            events |= EVENT_WRITE
        if events != self._interest:
            self._interest = events
            self.server.loop.set_interest(self.client, events, self.on_ready)
            if was_paused and not self._reading_paused and self.usingssl:
                self.server.loop.call_soon(self._read_tls_pending)
