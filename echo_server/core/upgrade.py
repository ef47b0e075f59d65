"""A socket between accept() and the WebSocket: TLS handshake, then the HTTP upgrade request.

An `Upgrade` reads the request head within the size limits and the handshake timeout (the TLS
handshake, when there is one, counts against the same timeout and never blocks the loop). A bad
request is answered with its HTTP status and closed; a good one is handed to its host (the
server), which makes the route's `Connection`. A plain HTTP request that the host's `PlainHttp`
handler takes (the app's /notify and /stats) is read with its body and answered.

The rules live in protocol/ (http.py, handshake.py) and in whoever answers plain requests; this
module only moves bytes and keeps time. It is the one place where an `HttpError` becomes a
response on the WebSocket port.
"""

from __future__ import annotations

import logging
import socket
import ssl
from enum import Enum
from typing import Any, Protocol

from echo_server.core.connection import ConnectionFactory
from echo_server.core.loop import EVENT_READ, EVENT_WRITE, WOULD_BLOCK, Loop
from echo_server.core.sendbuffer import SendBuffer
from echo_server.core.stats import Stats
from echo_server.protocol import handshake, http
from echo_server.protocol.http import HttpError, Request
from echo_server.settings import Settings

log = logging.getLogger(__name__)

READ_BYTES = 64 * 1024  # per read: a request head is at most 8 KiB, a /notify body 1 MiB


class PlainHttp(Protocol):
    """Answers plain (not upgrade) HTTP requests on the WebSocket port, for some paths."""

    def handles(self, request: Request) -> bool:
        """Whether this request is one to answer here (its head is complete, its body not)."""
        ...

    def answer(self, request: Request, body: bytes, peer: str) -> bytes:
        """The complete response; raise HttpError to refuse."""
        ...


class UpgradeHost(Protocol):
    """What an Upgrade needs of its server."""

    loop: Loop
    settings: Settings
    stats: Stats
    http: PlainHttp | None

    @property
    def stopping(self) -> bool:
        """A graceful stop is under way: upgrades are refused with 503 (plain requests, such
        as the app's /health, are still answered)."""
        ...

    def route_for(self, path: str) -> ConnectionFactory | None: ...
    def route_list(self) -> str: ...
    def upgraded(
        self,
        pending: Upgrade,
        factory: ConnectionFactory,
        request: Request,
        accepted: handshake.Accepted,
        leftover: bytes,
    ) -> None: ...
    def forget_upgrade(self, pending: Upgrade) -> None: ...
    def refused(self, peer: str, path: str, error: HttpError) -> None: ...


class UpgradeState(Enum):
    """Where the socket is; everything that decides what a readiness event means is here."""

    TLS_HANDSHAKE = "tls handshake"  # wss: the TLS handshake is under way
    READING_HEAD = "reading head"
    READING_BODY = "reading body"  # a plain request's head is in, its body is still coming
    RESPONDING = "responding"  # an answer (or a refusal) is being sent
    LINGERING = "lingering"  # answer sent, write side shut: reading until the peer's EOF
    DONE = "done"  # closed, or handed over to a Connection


class Upgrade:
    __slots__ = (
        "_buffer",
        "_out",
        "_plain",
        "_request",
        "_timer",
        "address",
        "host",
        "sock",
        "state",
    )

    def __init__(self, host: UpgradeHost, sock: socket.socket, address: Any) -> None:
        self.host = host
        self.sock = sock
        self.address = address
        self._buffer = bytearray()
        self._out = SendBuffer(sock)
        self._request: Request | None = None  # the parsed head, while its body is awaited
        self._plain = False  # a plain request the host's PlainHttp answers, not an upgrade
        self.state = (
            UpgradeState.TLS_HANDSHAKE
            if isinstance(sock, ssl.SSLSocket)
            else UpgradeState.READING_HEAD
        )
        loop = host.loop
        self._timer = loop.call_later(host.settings.handshake_timeout_s, self.on_timeout)
        loop.set_interest(sock, EVENT_READ, self.on_ready)

    def on_ready(self, mask: int) -> None:
        try:
            if self.state is UpgradeState.LINGERING:
                self._linger()
            elif self.state is UpgradeState.RESPONDING:
                self._flush_and_close()
            elif self.state is UpgradeState.TLS_HANDSHAKE:
                self._tls_handshake()
            elif self.state is not UpgradeState.DONE:
                self._read()
        except OSError as error:
            log.debug("connection from %s lost during handshake: %s", self.address, error)
            self.close()
        except Exception:
            # A bug here (or in a route's constructor) must cost this one client, never the
            # server and everyone else: it gets a 500 if it can still be answered.
            log.exception("internal error in the handshake with %s", self.address)
            if self.state in (UpgradeState.READING_HEAD, UpgradeState.READING_BODY):
                self.refuse(HttpError(500, "Internal error."))
            else:
                self.close()

    def on_timeout(self) -> None:
        log.debug("handshake timeout for %s", self.address)
        self.close()

    def close(self) -> None:
        if self.state is UpgradeState.DONE:
            return
        self.state = UpgradeState.DONE
        self.host.loop.cancel(self._timer)
        self.host.loop.forget(self.sock)
        self.sock.close()
        self.host.forget_upgrade(self)

    def release(self) -> None:
        """The socket is a connection's now: stop timing and watching it, leave it open."""
        self.state = UpgradeState.DONE
        self.host.loop.cancel(self._timer)
        self.host.loop.forget(self.sock)
        self.host.forget_upgrade(self)

    def refuse(self, error: HttpError) -> None:
        """Answer with the error's HTTP status, then close once it is sent."""
        log.info("refused %s: %d %s", self.address, error.status, error.message)
        counts = (
            self.host.stats.plain_requests if self._plain else self.host.stats.handshakes_refused
        )
        counts[error.status] += 1
        path = self._request.path if self._request is not None else ""
        self.host.refused(str(self.address[0]), path, error)
        self.respond(error.response())

    def respond(self, response: bytes) -> None:
        """Send a complete HTTP response, then close once it is sent."""
        self.state = UpgradeState.RESPONDING
        self._out.write([response])
        self._flush_and_close()

    # Reading.

    def _tls_handshake(self) -> None:
        assert isinstance(self.sock, ssl.SSLSocket)
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.host.loop.set_interest(self.sock, EVENT_READ, self.on_ready)
            return
        except ssl.SSLWantWriteError:
            self.host.loop.set_interest(self.sock, EVENT_WRITE, self.on_ready)
            return
        except ssl.SSLError as error:
            log.info("TLS handshake with %s failed: %s", self.address, error.reason or error)
            self.close()
            return
        self.state = UpgradeState.READING_HEAD
        self.host.loop.set_interest(self.sock, EVENT_READ, self.on_ready)

    def _read(self) -> None:
        settings = self.host.settings
        try:
            data = self.sock.recv(READ_BYTES)
            if isinstance(self.sock, ssl.SSLSocket):
                # TLS may hold decrypted bytes that the poller cannot see (the rest of a record
                # larger than one read): take them now, or a body would wait forever.
                limit = settings.max_request_head_bytes + settings.max_message_bytes
                while data and self.sock.pending() and len(self._buffer) + len(data) < limit:
                    data += self.sock.recv(self.sock.pending())
        except WOULD_BLOCK:
            return
        if not data:
            self.close()
            return
        self._buffer += data
        try:
            if self._request is None:
                end = http.find_head_end(self._buffer, settings.max_request_head_bytes)
                if end is None:
                    return
                head = bytes(self._buffer[:end])
                del self._buffer[:end]
                self._request = http.parse_request(head, settings.max_header_lines)
            self._proceed(self._request)
        except HttpError as error:
            self.refuse(error)

    def _proceed(self, request: Request) -> None:
        """The head is complete: answer a plain request, or check and hand over an upgrade."""
        plain = self.host.http
        if plain is not None and not handshake.is_upgrade(request) and plain.handles(request):
            self._plain = True
            if request.body_length > self.host.settings.max_message_bytes:
                raise HttpError(413, "The message is too large.")
            if len(self._buffer) < request.body_length:
                self.state = UpgradeState.READING_BODY
                return  # the rest of the body is still to come
            body = bytes(self._buffer[: request.body_length])
            response = plain.answer(request, body, str(self.address[0]))
            self.host.stats.plain_requests[http.response_status(response)] += 1
            self.respond(response)
            return
        settings = self.host.settings
        accept = handshake.check_upgrade(request, settings.allowed_origins)
        if self.host.stopping:
            raise HttpError(503, "The server is shutting down: try again in a moment.")
        factory = self.host.route_for(request.path)
        if factory is None:
            raise HttpError(404, f"No WebSocket route here; try {self.host.route_list()}.")
        accepted = handshake.negotiate(
            request, accept, subprotocols=settings.subprotocols, compression=settings.compression
        )
        self.host.upgraded(self, factory, request, accepted, bytes(self._buffer))

    # Answering.

    def _flush_and_close(self) -> None:
        self._out.flush()
        if self._out:
            self.host.loop.set_interest(self.sock, EVENT_WRITE, self.on_ready)
            return
        # Half-close and read to the EOF (bounded by the handshake timer): closing over unread
        # bytes would send a reset that can destroy the response before the client reads it.
        self.sock.shutdown(socket.SHUT_WR)
        self.state = UpgradeState.LINGERING
        self.host.loop.set_interest(self.sock, EVENT_READ, self.on_ready)

    def _linger(self) -> None:
        try:
            data = self.sock.recv(READ_BYTES)
        except WOULD_BLOCK:
            return
        if not data:
            self.close()
