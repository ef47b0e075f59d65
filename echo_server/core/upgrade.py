"""A socket between accept() and the WebSocket: TLS handshake, then the HTTP upgrade request.

An `Upgrade` reads the request head within the size limits and the handshake timeout (the TLS
handshake, when there is one, counts against the same timeout and never blocks the loop). A bad
request is answered with its HTTP status and closed; a good one is handed to the server, which
makes the route's `Connection`. A plain HTTP request for one of the endpoints (/notify, /stats)
is read with its body and answered. The rules live in handshake.py and endpoints.py; this module
only moves bytes and keeps time.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any

from echo_server.app import endpoints
from echo_server.core.loop import EVENT_READ, EVENT_WRITE
from echo_server.core.sendbuffer import WOULD_BLOCK, SendBuffer
from echo_server.protocol import handshake
from echo_server.protocol.handshake import HandshakeError, Request

if TYPE_CHECKING:
    from echo_server.core.server import Server

log = logging.getLogger(__name__)

READ_BYTES = 64 * 1024  # per read: a request head is at most 8 KiB, a /notify body 1 MiB


class Upgrade:
    __slots__ = (
        "_buffer",
        "_lingering",
        "_out",
        "_refused",
        "_request",
        "_timer",
        "_tls_pending",
        "address",
        "server",
        "sock",
    )

    def __init__(self, server: Server, sock: socket.socket, address: Any) -> None:
        self.server = server
        self.sock = sock
        self.address = address
        self._buffer = bytearray()
        self._out = SendBuffer(sock)
        self._tls_pending = isinstance(sock, ssl.SSLSocket)
        self._request: Request | None = None  # the parsed head, while its body is awaited
        self._refused = False  # answered (an error, or a plain HTTP endpoint): sending it
        self._lingering = False  # error sent and write side shut: reading until the peer's EOF
        self._timer = server.loop.call_later(server.settings.handshake_timeout_s, self.on_timeout)
        server.loop.set_interest(sock, EVENT_READ, self.on_ready)

    def on_ready(self, mask: int) -> None:
        try:
            if self._lingering:
                self._linger()
            elif self._refused:
                self._flush_and_close()
            elif self._tls_pending:
                self._tls_handshake()
            else:
                self._read()
        except OSError as error:
            log.debug("connection from %s lost during handshake: %s", self.address, error)
            self.close()
        except Exception:
            # A bug here (or in a route's constructor) must cost this one client, never the
            # server and everyone else: it gets a 500 if it can still be answered.
            log.exception("internal error in the handshake with %s", self.address)
            if self._refused or self.sock.fileno() < 0:
                self.close()
            else:
                self.refuse(HandshakeError(500, "Internal error."))

    def on_timeout(self) -> None:
        log.debug("handshake timeout for %s", self.address)
        self.close()

    def close(self) -> None:
        self.server.loop.cancel(self._timer)
        self.server.loop.forget(self.sock)
        self.sock.close()
        self.server.forget_upgrade(self)

    def _tls_handshake(self) -> None:
        assert isinstance(self.sock, ssl.SSLSocket)
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.server.loop.set_interest(self.sock, EVENT_READ, self.on_ready)
            return
        except ssl.SSLWantWriteError:
            self.server.loop.set_interest(self.sock, EVENT_WRITE, self.on_ready)
            return
        except ssl.SSLError as error:
            log.info("TLS handshake with %s failed: %s", self.address, error.reason or error)
            self.close()
            return
        self._tls_pending = False
        self.server.loop.set_interest(self.sock, EVENT_READ, self.on_ready)

    def _read(self) -> None:
        settings = self.server.settings
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
                end = handshake.find_head_end(self._buffer, settings.max_request_head_bytes)
                if end is None:
                    return
                head = bytes(self._buffer[:end])
                del self._buffer[:end]
                self._request = handshake.parse_request(head, settings.max_header_lines)
            self._proceed(self._request)
        except HandshakeError as error:
            self.refuse(error)

    def _proceed(self, request: Request) -> None:
        """The head is complete: answer a plain endpoint, or check and hand over an upgrade."""
        if request.path in endpoints.PATHS and not handshake.is_upgrade(request):
            if request.body_length > self.server.settings.max_message_bytes:
                raise HandshakeError(413, "The message is too large.")
            if len(self._buffer) < request.body_length:
                return  # the rest of the body is still to come
            body = bytes(self._buffer[: request.body_length])
            self.respond(endpoints.answer(self.server, request, body, str(self.address[0])))
            return
        accept = handshake.check_upgrade(request, self.server.settings.allowed_origins)
        if request.path not in self.server.routes:
            raise HandshakeError(404, f"No WebSocket route here; try {self.server.route_list()}.")
        self.server.upgrade(self, request, accept, bytes(self._buffer))

    def release(self) -> None:
        """The socket is a connection's now: stop timing and watching it, leave it open."""
        self.server.loop.cancel(self._timer)
        self.server.loop.forget(self.sock)
        self.server.forget_upgrade(self)

    def refuse(self, error: HandshakeError) -> None:
        """Answer with the error's HTTP status, then close once it is sent."""
        log.info("refused %s: %d %s", self.address, error.status, error.message)
        self.respond(error.response())

    def respond(self, response: bytes) -> None:
        """Send a complete HTTP response, then close once it is sent."""
        self._refused = True
        self._out.write([response])
        self._flush_and_close()

    def _flush_and_close(self) -> None:
        self._out.flush()
        if self._out:
            self.server.loop.set_interest(self.sock, EVENT_WRITE, self.on_ready)
            return
        # Half-close and read to the EOF (bounded by the handshake timer): closing over unread
        # bytes would send a reset that can destroy the response before the client reads it.
        self.sock.shutdown(socket.SHUT_WR)
        self._lingering = True
        self.server.loop.set_interest(self.sock, EVENT_READ, self.on_ready)

    def _linger(self) -> None:
        try:
            data = self.sock.recv(READ_BYTES)
        except WOULD_BLOCK:
            return
        if not data:
            self.close()
