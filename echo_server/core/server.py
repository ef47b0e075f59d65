"""The WebSocket server: listen, accept within limits, upgrade, route, stop gracefully.

A `Server` is given what to serve: its routes (a mapping of paths to connection factories, or a
function of the path), optionally a handler for plain HTTP requests on its port, and its loop.
It knows nothing of what the routes do (echo, chat, the cluster: that is the app's, app/app.py).
Each accepted socket goes through `upgrade.Upgrade` (TLS and the HTTP upgrade, within the
handshake timeout) before it becomes a route's `Connection`. Making a server binds nothing;
`listen()` does (and `serve_forever...` calls it), so a server can be built and tested in-process
on a loop driven by hand.

Limits it keeps: `--max-connections` (lowered for select(), which can watch only descriptors
below FD_SETSIZE), accepts per wakeup, and a spare descriptor released when the process runs out
of them, so that a client is refused with 503 instead of waiting in the kernel's queue.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import ssl
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from echo_server import defaults
from echo_server.core.connection import Connection, ConnectionFactory
from echo_server.core.listen import (
    connection_ceiling,
    make_listener,
    make_tls_context,
    raise_open_files_limit,
)
from echo_server.core.logthrottle import LogThrottle
from echo_server.core.loop import EVENT_READ, SELECT_MAX_FD, WOULD_BLOCK, Callback, Loop, Timer
from echo_server.core.stats import Stats
from echo_server.core.upgrade import PlainHttp, Upgrade
from echo_server.protocol import handshake
from echo_server.protocol.frames import CloseCode
from echo_server.protocol.http import HttpError, Request
from echo_server.settings import Settings

log = logging.getLogger(__name__)

OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
SERVICE_UNAVAILABLE = HttpError(503, "Too many connections: try again later.")
Router = Callable[[str], ConnectionFactory | None]


class ServerPhase(Enum):
    NEW = "new"  # made, not listening
    LISTENING = "listening"
    # shutdown(): the open clients get 1001; new upgrades get 503 (the port stays open, so that
    # a health check can be told so: plain requests are still answered).
    STOPPING = "stopping"
    CLOSED = "closed"


class Server:
    def __init__(
        self,
        settings: Settings,
        routes: Mapping[str, ConnectionFactory] | Router,
        *,
        http: PlainHttp | None = None,
        loop: Loop | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.loop = loop or Loop(selector=settings.selector)
        self.stats = Stats()
        self.recv_buffer = memoryview(bytearray(defaults.RECV_CHUNK_BYTES))
        self.routes: dict[str, ConnectionFactory] = (
            dict(routes) if isinstance(routes, Mapping) else {}
        )
        self._router: Router = self.routes.get if isinstance(routes, Mapping) else routes
        self.http = http
        self.connections: dict[int, Connection] = {}  # open WebSockets by descriptor
        self.upgrades: set[Upgrade] = set()  # sockets still in their TLS or HTTP handshake
        if tls_context is None and settings.certfile and settings.keyfile:
            tls_context = make_tls_context(settings.certfile, settings.keyfile)
        self.tls_context = tls_context
        poller_limit = SELECT_MAX_FD if self.loop.poller.name == "select" else None
        self.max_connections = connection_ceiling(settings.max_connections, poller_limit)
        self.listener: socket.socket | None = None
        self.phase = ServerPhase.NEW
        # One descriptor held in reserve: when the process runs out, it is released to accept
        # and refuse one connection, so the kernel's queue does not fill with clients in limbo.
        self._spare_fd: int | None = None
        self._stop_timer: Timer | None = None
        self._shutdown_hooks: list[Callback] = []
        self._close_hooks: list[Callback] = []
        self._refused_hooks: list[Callable[[str, str, HttpError], None]] = []
        self._full = LogThrottle(log, defaults.LOG_THROTTLE_S, self.loop.time)

    @property
    def port(self) -> int:
        if self.listener is None:
            raise RuntimeError("the server is not listening yet: call listen()")
        port: int = self.listener.getsockname()[1]
        return port

    @property
    def stopping(self) -> bool:
        return self.phase is ServerPhase.STOPPING

    @property
    def connection_count(self) -> int:
        return len(self.connections) + len(self.upgrades)

    def listen(self) -> int:
        """Bind and listen (once); return the port. Blocking calls happen here, before the loop."""
        if self.phase is ServerPhase.NEW:
            raise_open_files_limit()
            settings = self.settings
            self.listener = make_listener(
                settings.host, settings.port, reuse_port=settings.reuse_port
            )
            self._spare_fd = os.open(os.devnull, os.O_RDONLY)
            self.loop.set_interest(self.listener, EVENT_READ, self._on_accept)
            self.phase = ServerPhase.LISTENING
        return self.port

    def on_shutdown(self, hook: Callback) -> None:
        """Run `hook` when a graceful stop begins (the cluster hands its lease on, say)."""
        self._shutdown_hooks.append(hook)

    def on_refused(self, hook: Callable[[str, str, HttpError], None]) -> None:
        """Call `hook(peer, path, error)` for each request refused with an HTTP status."""
        self._refused_hooks.append(hook)

    def on_close(self, hook: Callback) -> None:
        """Run `hook` when the server closes for good (timers and buses stop, say)."""
        self._close_hooks.append(hook)

    # Routing: what an Upgrade asks of its host.

    def route_for(self, path: str) -> ConnectionFactory | None:
        return self._router(path)

    def route_list(self) -> str:
        return ", ".join(sorted(self.routes)) or "another path"

    # Accepting.

    def _on_accept(self, mask: int) -> None:
        assert self.listener is not None
        for _ in range(defaults.ACCEPTS_PER_WAKEUP):
            try:
                sock, address = self.listener.accept()
            except WOULD_BLOCK:
                return
            except OSError as error:
                if error.errno in OUT_OF_DESCRIPTORS:
                    self._shed_one_connection()
                elif error.errno not in (errno.ECONNABORTED, errno.EPROTO):
                    log.warning("accept failed: %s", error)
                return
            if self.connection_count >= self.max_connections:
                self._full.log(
                    "%d connections, the most allowed (--max-connections): refusing new ones",
                    self.max_connections,
                )
                self._refuse_now(sock)
                continue
            try:
                self._admit(sock, address)
            except OSError as error:
                log.warning("could not set up connection from %s: %s", address, error)
                sock.close()
            except Exception:
                # A bug must cost this one client: the listener stays registered.
                log.exception("could not set up connection from %s", address)
                sock.close()

    def _admit(self, sock: socket.socket, address: Any) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls_context is not None:
            sock = self.tls_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        self.stats.accepted += 1
        self.upgrades.add(Upgrade(self, sock, address))

    def _refuse_now(self, sock: socket.socket) -> None:
        """Over a limit: answer 503 at once and close, spending no timer and no buffer on it."""
        self.stats.refused += 1
        self.stats.handshakes_refused[SERVICE_UNAVAILABLE.status] += 1
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.recv(defaults.MAX_REQUEST_HEAD_BYTES)  # what has arrived, to avoid a reset
            sock.send(SERVICE_UNAVAILABLE.response())
            sock.shutdown(socket.SHUT_WR)
        sock.close()

    def _shed_one_connection(self) -> None:
        if self._spare_fd is None or self.listener is None:
            return
        os.close(self._spare_fd)
        self._spare_fd = None
        try:
            sock, _ = self.listener.accept()
            self._refuse_now(sock)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self._spare_fd = os.open(os.devnull, os.O_RDONLY)
        log.warning("out of file descriptors: refusing new connections")

    # Handing over: what Upgrade and Connection call.

    def upgraded(
        self,
        pending: Upgrade,
        factory: ConnectionFactory,
        request: Request,
        accepted: handshake.Accepted,
        leftover: bytes,
    ) -> None:
        """An Upgrade's request is valid: its socket becomes the route's Connection.

        The factory runs first: if it fails, the Upgrade still owns the socket and answers 500.
        (No upgrade reaches this while stopping: the Upgrade refuses it with 503.)
        """
        connection = factory(self, pending.sock, pending.address, request)
        pending.release()
        self.connections[connection.fd] = connection
        connection.start(accepted, leftover)

    def forget_upgrade(self, pending: Upgrade) -> None:
        self.upgrades.discard(pending)

    def refused(self, peer: str, path: str, error: HttpError) -> None:
        """An Upgrade refused a request: tell whoever asked (`on_refused`)."""
        for hook in self._refused_hooks:
            try:
                hook(peer, path, error)
            except Exception:
                log.exception("refusal hook %r failed", hook)

    def forget(self, connection: Connection) -> None:
        """Called by a Connection once its socket is closed."""
        self.connections.pop(connection.fd, None)
        if self.phase is ServerPhase.STOPPING and not self.connections:
            self.loop.stop()

    # Running and stopping.

    def serve_forever(self) -> None:
        """Listen and run the loop until shutdown() or close() stops it."""
        self.listen()
        self.loop.run()

    def serve_forever_until_signalled(self, on_ready: Callback | None = None) -> int:
        """Listen and serve until SIGINT or SIGTERM, then stop gracefully; the exit status is 0.

        `on_ready` runs once listening with the signal handlers in (print the ready line there).
        """
        self.listen()
        try:
            self.loop.run_until_signalled(lambda signum: self.shutdown(), on_ready)
        finally:
            self.close()
            self.loop.close()
        return 0

    def shutdown(self) -> None:
        """Close every client with 1001 after what is queued for it, then stop.

        Bounded by the close timeout: clients that never answer are dropped then. Until the
        last one is gone the port stays open: a new upgrade gets 503, and a plain request (a
        health check) its answer; close() closes the port.
        """
        if self.phase in (ServerPhase.STOPPING, ServerPhase.CLOSED):
            return
        self.phase = ServerPhase.STOPPING
        log.info("stopping: closing %d connection(s)", len(self.connections))
        for hook in self._shutdown_hooks:
            self._run_hook(hook)
        for connection in list(self.connections.values()):
            connection.close(CloseCode.GOING_AWAY, "server shutting down")
        if not self.connections:
            self.loop.stop()
            return
        self._stop_timer = self.loop.call_later(self.settings.close_timeout_s, self.close)

    def close(self) -> None:
        """Close everything now (a graceful stop is shutdown()), and stop the loop."""
        if self.phase is ServerPhase.CLOSED:
            return
        self.phase = ServerPhase.CLOSED
        self.loop.cancel(self._stop_timer)
        self._close_listener()
        for pending in list(self.upgrades):
            pending.close()
        for connection in list(self.connections.values()):
            connection.abort()
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
        for hook in self._close_hooks:
            self._run_hook(hook)
        self.loop.stop()

    @staticmethod
    def _run_hook(hook: Callback) -> None:
        try:
            hook()
        except Exception:  # one owner's bug must not stop the others from closing
            log.exception("stop hook %r failed", hook)

    def _close_listener(self) -> None:
        if self.listener is not None and self.listener.fileno() >= 0:
            self.loop.forget(self.listener)
            self.listener.close()
