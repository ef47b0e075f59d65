"""Listening sockets, the TLS context, and the descriptor limit: what a server needs at start.

`bound_socket` and `make_listener` make the listener (backlog 1024, dual-stack `::`, optionally
SO_REUSEPORT for `--workers`); `make_tls_context` loads a certificate for `wss://`;
`raise_open_files_limit` lifts the soft descriptor limit to the hard one, so that ten thousand
clients fit; `connection_ceiling` says how many connections a poller can watch at all. These are
the only calls here that may block (a name lookup for the host), and they run before the loop.

Unix-only parts (`resource`, SO_REUSEPORT) are used only where they exist.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl

from echo_server import defaults

try:  # Unix: the descriptor limit can be raised. Elsewhere there is none of this kind to raise.
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# Descriptors kept free of connections for everything else (listener, Redis, logs, wakeups).
RESERVED_DESCRIPTORS = 32


def raise_open_files_limit() -> int | None:
    """Raise the soft descriptor limit to the hard one; the limit now in force (None: no such
    limit on this platform)."""
    if resource is None:  # pragma: no cover - Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def connection_ceiling(max_connections: int, poller_limit: int | None) -> int:
    """`max_connections`, lowered to what the poller can watch (select(): descriptors below
    FD_SETSIZE) less the reserve; logged when lowered."""
    if poller_limit is None or max_connections <= poller_limit - RESERVED_DESCRIPTORS:
        return max_connections
    ceiling = max(1, poller_limit - RESERVED_DESCRIPTORS)
    log.warning(
        "select() can watch descriptors below %d only: --max-connections lowered from %d to %d "
        "(use the default poller for more)",
        poller_limit,
        max_connections,
        ceiling,
    )
    return ceiling


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
    """A server context for `wss://`: TLS 1.2 or later, this certificate and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context
