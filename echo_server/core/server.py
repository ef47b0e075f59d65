"""The WebSocket server: listen, accept within limits, upgrade, route, publish, stop gracefully.

`Server` subclasses upstream's `WebSocketServer` so code written against simple-websocket-server
finds the same names (`connections`, `serversocket`, `websocketclass`, `serve_forever()`,
`close()`), but it replaces all of upstream's server behaviour: upstream binds with a backlog of
5, runs `select.select` (which raises past descriptor 1024 and takes every client down), and
handshakes TLS on a blocking socket. Here the listener is made by `make_listener` (backlog 1024,
dual-stack), the loop is `loop.Loop` (epoll on Linux), and each new socket goes through
`upgrade.Upgrade` before it becomes a route's `Connection`. The server also owns what the
routes share: the broadcast `Hub`, the tick and stream producers, and the statistics.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from simple_websocket_server import WebSocketServer

from echo_server import defaults
from echo_server.app.broadcast import Hub
from echo_server.app.endpoints import MachineNames
from echo_server.app.routes import CHAT, ROUTES, RandomWalk, Ticker
from echo_server.cluster.node import Cluster
from echo_server.core.connection import Connection
from echo_server.core.loop import EVENT_READ, Loop, Timer
from echo_server.core.upgrade import Upgrade
from echo_server.protocol import handshake
from echo_server.protocol.frames import CloseCode
from echo_server.protocol.handshake import HandshakeError, Request
from echo_server.settings import Settings

log = logging.getLogger(__name__)

OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
SERVICE_UNAVAILABLE = HandshakeError(503, "Too many connections: try again later.")


@dataclass
class Stats:
    started_s: float = field(default_factory=time.time)
    accepted: int = 0
    refused: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


def raise_open_files_limit() -> int:
    """Raise the soft descriptor limit to the hard one; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def bound_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to (host, port), not listening yet; `::` accepts IPv4 too (dual-stack).

    With `reuse_port` (SO_REUSEPORT, for `--workers`), other sockets of this user that set it
    too may bind the same port; the kernel spreads new connections over those that listen.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def make_listener(
    host: str, port: int, backlog: int = defaults.LISTEN_BACKLOG, *, reuse_port: bool = False
) -> socket.socket:
    """A non-blocking listening socket (see `bound_socket`)."""
    sock = bound_socket(host, port, reuse_port=reuse_port)
    try:
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def make_tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


class Server(WebSocketServer):
    def __init__(
        self,
        settings: Settings,
        routes: dict[str, type[Connection]] | None = None,
        loop: Loop | None = None,
    ) -> None:
        # Upstream's __init__ binds and listens at once with backlog 5: not called (see above).
        self.settings = settings
        self.loop = loop or Loop()
        self.stats = Stats()
        self.recv_buffer = memoryview(bytearray(defaults.RECV_CHUNK_BYTES))
        self.routes = dict(ROUTES if routes is None else routes)
        self.websocketclass = next(iter(self.routes.values()))  # upstream's one handler class
        self.hub = Hub()
        self.connections: dict[int, Connection] = {}  # open WebSockets by descriptor (upstream)
        self.upgrades: set[Upgrade] = set()  # sockets still in their TLS or HTTP handshake
        self.tls_context = (
            make_tls_context(settings.certfile, settings.keyfile)
            if settings.certfile and settings.keyfile
            else None
        )
        self.open_files_limit = raise_open_files_limit()
        self.serversocket = make_listener(
            settings.host, settings.port, reuse_port=settings.reuse_port
        )
        self.port: int = self.serversocket.getsockname()[1]
        # One descriptor held in reserve: when the process runs out, it is released to accept
        # and refuse one connection, so the kernel's queue does not fill with clients in limbo.
        self._spare_fd: int | None = os.open(os.devnull, os.O_RDONLY)
        self._stopping = False
        self._stop_timer: Timer | None = None
        self.loop.set_interest(self.serversocket, EVENT_READ, self._on_accept)
        self.ticker = Ticker(self)
        self.random_walk = RandomWalk(self)
        # /notify's Host check: the names of this machine, looked up off the loop.
        self.machine_names = MachineNames.started(self.loop, defaults.MACHINE_NAMES_REFRESH_S)
        # --redis: chat, tick and stream shared with other servers through Redis (cluster.py).
        self.cluster = Cluster(self, settings.redis_url) if settings.redis_url else None

    @property
    def connection_count(self) -> int:
        return len(self.connections) + len(self.upgrades)

    # Accepting.

    def _on_accept(self, mask: int) -> None:
        for _ in range(defaults.ACCEPTS_PER_WAKEUP):
            try:
                sock, address = self.serversocket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in OUT_OF_DESCRIPTORS:
                    self._shed_one_connection()
                elif error.errno not in (errno.ECONNABORTED, errno.EPROTO):
                    log.warning("accept failed: %s", error)
                return
            if self.connection_count >= self.settings.max_connections:
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

    def _admit(self, sock: socket.socket, address: object) -> None:
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
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.recv(defaults.MAX_REQUEST_HEAD_BYTES)  # what has arrived, to avoid a reset
            sock.send(SERVICE_UNAVAILABLE.response())
            sock.shutdown(socket.SHUT_WR)
        sock.close()

    def _shed_one_connection(self) -> None:
        if self._spare_fd is None:
            return
        os.close(self._spare_fd)
        self._spare_fd = None
        try:
            sock, _ = self.serversocket.accept()
            self._refuse_now(sock)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self._spare_fd = os.open(os.devnull, os.O_RDONLY)
        log.warning("out of file descriptors: refusing new connections")

    # Handing over.

    def upgrade(self, pending: Upgrade, request: Request, accept: str, leftover: bytes) -> None:
        """Called by an Upgrade whose request is valid: the socket becomes a Connection.

        The route's constructor runs first: if it fails, the Upgrade still owns the socket and
        answers 500. (No upgrade reaches this while stopping: shutdown() closes them all.)
        """
        route = self.routes[request.path]
        connection = route(self, pending.sock, pending.address, request)
        pending.release()
        self.connections[connection.fd] = connection
        connection.start(handshake.response_101(accept), leftover)

    def forget_upgrade(self, pending: Upgrade) -> None:
        self.upgrades.discard(pending)

    def forget(self, connection: Connection) -> None:
        """Called by a Connection once its socket is closed."""
        self.connections.pop(connection.fd, None)
        if self._stopping and not self.connections:
            self.loop.stop()

    def route_list(self) -> str:
        return ", ".join(sorted(self.routes))

    # What the routes share.

    def publish(self, channel: str, data: str | bytes) -> int:
        """Send `data` to every subscriber of `channel`; return how many were given it.

        With --redis, and Redis up, chat, tick and stream go through Redis instead and come back
        to every server's subscribers, this one's included: the count is then this server's.
        """
        if self.cluster is not None and self.cluster.publish(channel, data):
            return self.hub.count(channel)
        return self.hub.publish(channel, data)

    @property
    def is_producer(self) -> bool:
        """Whether this server makes the tick and the stream (with --redis, one server does)."""
        return self.cluster is None or self.cluster.producing

    def notify(self, message: str) -> int:
        """A message from /notify: to every chat client."""
        delivered = self.publish(CHAT, message)
        log.info("notify: delivered to %d chat client(s)", delivered)
        return delivered

    def statistics(self) -> dict[str, object]:
        per_route = dict.fromkeys(sorted(self.routes), 0)
        for connection in self.connections.values():
            per_route[connection.route] = per_route.get(connection.route, 0) + 1
        stats = self.stats
        answer: dict[str, object] = {
            "uptime_s": round(time.time() - stats.started_s, 3),
            "connections": {
                "total": len(self.connections),
                "handshaking": len(self.upgrades),
                "per_route": per_route,
            },
            "accepted": stats.accepted,
            "refused": stats.refused,
            "messages_in": stats.messages_in,
            "messages_out": stats.messages_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
            # With --workers, each process answers for itself: say which one this is.
            "worker": {
                "index": self.settings.worker_index,
                "pid": os.getpid(),
                "workers": self.settings.workers,
            },
        }
        if self.cluster is not None:
            answer["cluster"] = self.cluster.statistics()
        return answer

    # Running and stopping.

    def serve_forever(self) -> None:
        self.loop.run()

    def serve_forever_until_signalled(self, on_ready: Callable[[], None] | None = None) -> int:
        """Serve until SIGINT or SIGTERM, then stop gracefully; the exit status is 0."""
        try:
            self.loop.run_until_signalled(lambda signum: self.shutdown(), on_ready)
        finally:
            self.close()
            self.loop.close()
        return 0

    def shutdown(self) -> None:
        """Stop accepting, close every client with 1001 after what is queued for it, then stop.

        Bounded by the close timeout: clients that never answer are dropped then.
        """
        if self._stopping:
            return
        self._stopping = True
        log.info("stopping: closing %d connection(s)", len(self.connections))
        if self.cluster is not None:
            self.cluster.shutdown()
        self._close_listener()
        for pending in list(self.upgrades):
            pending.close()
        for connection in list(self.connections.values()):
            connection.close(CloseCode.GOING_AWAY, "server shutting down")
        if not self.connections:
            self.loop.stop()
            return
        self._stop_timer = self.loop.call_later(self.settings.close_timeout_s, self.close)

    def close(self) -> None:
        """Close everything now (upstream API); graceful stopping is shutdown()."""
        self._close_listener()
        for pending in list(self.upgrades):
            pending.close()
        for connection in list(self.connections.values()):
            connection.abort()
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
        if self.cluster is not None:
            self.cluster.close()
        self.loop.stop()

    def _close_listener(self) -> None:
        if self.serversocket.fileno() >= 0:
            self.loop.forget(self.serversocket)
            self.serversocket.close()
