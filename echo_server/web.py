"""The page server: serves the browser test page (the folder www/), /config.json and /qr.svg.

It serves one folder and nothing outside it: no directory listings, no dotfiles, no symlinks that
lead out, no redirects (so no open redirect), no error page that echoes the request, no Python
version in the `Server` header. `/config.json` is generated (`page_config`), so the page learns
the WebSocket server's port, its routes and the names of its close codes instead of declaring its
own copies; with --lan it also says the page's address on the LAN (and its mDNS name once
announced), and `/qr.svg` is a QR code of that address for a phone to scan. The address is read
from this machine's interfaces at each request (a DHCP lease may change it); the browser's own
address cannot serve, since the page may have been opened as 127.0.0.1.

It runs on the project's single-threaded loop (`loop.Loop`), like the WebSocket server:
non-blocking sockets, no threads, every deadline a loop timer. Request heads are parsed by the
strict Sans-IO parser of handshake.py (with HTTP/1.0 allowed). A file goes out with `os.sendfile`
from an offset, at most `WEB_SEND_CHUNK_BYTES` per writable event, so it never sits in memory
and one download cannot starve the others. Looking a file up (realpath, open, fstat) is an
ordinary call on the local disk, as in any single-threaded static server.

What one client cannot do (the numbers are in defaults.py; `run_web` can change some):
- Hold the server. A connection's first request head must be complete within the request
  timeout of the accept; a later one must start within the keep-alive timeout of the previous
  response and be complete within the request timeout of its first byte. Trickled bytes extend
  nothing. A response the client stops reading is dropped after the request timeout passes
  without any byte taken.
- Take more than its share. One address holds at most `max_connections_per_address` of the
  `max_connections` (an IPv4 client of a dual-stack socket counts as its IPv4 address). A new
  connection over either cap first closes the longest-idle connection counted against that cap
  (idle: waiting between requests with nothing unread, or done and draining), as nginx does; so
  idle connections, however many, never lock anyone out. If nothing is idle, the new connection
  gets 503 with `Connection: close` at once, its request unread (up to `WEB_MAX_REFUSALS` such
  answers drain the client before closing; past that they are closed once sent). Out of file
  descriptors, the longest-idle connection is closed the same way; if none is idle, accepting
  pauses briefly instead of spinning. There is no cap on requests per connection: a connection
  that keeps sending requests is only ever one of its address's share.
- Stall or crash the loop. A bug while serving one connection logs its traceback and closes that
  connection, never the server.

Errors other than 404 end the connection; so does a request with a body (never read): the rest
of what the client sends is read and dropped for a bounded time ("lingering"), since closing over
unread bytes sends a reset that can destroy the response (RFC 9112 section 9.6).

Stopping (SIGINT or SIGTERM, through `Loop.on_signal`, so never an exception raised from a
signal handler): stop accepting, close idle connections and requests still arriving, let
responses under way finish within `WEB_STOP_TIMEOUT_S`, then close what is left. A second
signal closes everything at once. Once the loop has returned both signals are blocked, so that
one arriving during teardown cannot meet the default action and end the process with -15.

It is not a general web server: GET and HEAD only, no uploads, no ranges, no conditional
requests, no compression, no TLS. Run it behind a real web server if you need any of those.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import logging
import os
import re
import signal
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import Final
from urllib.parse import unquote_to_bytes

from echo_server import defaults, netinfo, qr
from echo_server.addresses import canonical_address, url_host
from echo_server.app.echo import Echo, Inspect
from echo_server.app.routes import ROUTES, Chat, StatsFeed, Stream, Tick
from echo_server.core.connection import Connection
from echo_server.core.listen import make_listener
from echo_server.core.loop import EVENT_READ, EVENT_WRITE, WOULD_BLOCK, Loop, Timer
from echo_server.core.sendbuffer import SendBuffer
from echo_server.protocol import http
from echo_server.protocol.frames import CloseCode
from echo_server.protocol.http import HttpError, Request

log = logging.getLogger(__name__)

SERVER_NAME = "echo_server"
MAX_LOGGED_PATH_CHARS = 200
# The longest file name most file systems take (NAME_MAX); a longer segment names no file.
NAME_MAX_BYTES = 255
LINGER_RECV_BYTES = 64 * 1024
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REFUSAL_LOG_INTERVAL_S = 1.0

ALLOWED_METHODS = "GET, HEAD"
INDEX_NAME = "index.html"
CONFIG_NAME = "config.json"
QR_NAME = "qr.svg"

TEXT_UTF8 = "; charset=utf-8"
CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html" + TEXT_UTF8,
    ".htm": "text/html" + TEXT_UTF8,
    ".js": "text/javascript" + TEXT_UTF8,
    ".mjs": "text/javascript" + TEXT_UTF8,
    ".css": "text/css" + TEXT_UTF8,
    ".txt": "text/plain" + TEXT_UTF8,
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# connect-src: the page opens WebSockets to the WebSocket port, and asks that port's GET
# /refusal (another origin: another port) why a connect failed; http: and https: reach no more
# than ws: and wss: already do.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss: http: https:; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)
# Sent on every response, errors included.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
)

# "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3); which versions are served is decided after matching.
HTTP_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
SERVED_VERSIONS = (b"HTTP/1.0", b"HTTP/1.1")
BAD_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Bytes that have no place in a request target (RFC 3986): controls, space, DEL, non-ASCII.
BAD_TARGET_CHAR = re.compile(r"[\x00-\x20\x7f-\uffff]")
CONTROL_CHAR = re.compile(r"[\x00-\x1f\x7f]")
LOG_ESCAPES: Final = str.maketrans(
    {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]} | {0x5C: "\\\\"}
)


# What the page calls each kind of route (in its statistics table), and the tab that uses it.
# A route missing here is still listed, under its class's name, and no tab uses it.
PAGE_ROUTES: Final[Mapping[type[Connection], tuple[str, str]]] = {
    Echo: ("echo", "echo"),
    Inspect: ("inspector", "inspect"),
    Chat: ("chat", "chat"),
    Tick: ("tick", "tick"),
    Stream: ("live chart", "live"),
    StatsFeed: ("statistics", "stats"),
}
# Words of a close code's name that are written as they are, not capitalised like a word.
CLOSE_NAME_ACRONYMS = frozenset({"TLS"})


def close_code_text(code: CloseCode) -> str:
    """A close code's name for people: POLICY_VIOLATION is "Policy Violation"."""
    words = code.name.split("_")
    return " ".join(word if word in CLOSE_NAME_ACRONYMS else word.capitalize() for word in words)


def page_config(
    ws_port: int, lan_url: str | None = None, mdns_url: str | None = None
) -> dict[str, object]:
    """What /config.json tells the page, so that it declares none of it again.

    `ws_port`: where the WebSocket server listens. `routes`: every WebSocket path and what it
    is, from the route table. `tabs`: the path each of the page's tabs connects to (the first
    path of its route). `close_codes`: each close code, as text ("1008"), and its name.
    `lan_url`: the page's address for other machines (with --lan; /qr.svg shows it), and
    `mdns_url` its .local name, once announced; null when there is none.
    """
    routes: dict[str, str] = {}
    tabs: dict[str, str] = {}
    for path, route in ROUTES.items():
        name, tab = PAGE_ROUTES.get(route, (route.__name__.lower(), ""))
        routes[path] = name
        if tab:
            tabs.setdefault(tab, path)
    close_codes = {str(code.value): close_code_text(code) for code in CloseCode}
    return {
        "ws_port": ws_port,
        "routes": routes,
        "tabs": tabs,
        "close_codes": close_codes,
        "lan_url": lan_url,
        "mdns_url": mdns_url,
    }


class RequestError(Exception):
    """A request the server answers with an error status and nothing else."""

    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Site:
    """What one page server serves: the real path of its folder, and what /config.json says."""

    root: Path
    ws_port: int
    lan: bool  # listening for the LAN (--lan): /config.json and /qr.svg give its address


@dataclass(frozen=True)
class Limits:
    """How much of the page server one client, and all of them, may hold, and for how long."""

    max_connections: int = defaults.WEB_MAX_CONNECTIONS
    max_connections_per_address: int = defaults.WEB_MAX_CONNECTIONS_PER_ADDRESS
    # A request head must be complete within this, and a response the client stops reading
    # is dropped after this long without progress: one deadline for a client too slow.
    request_timeout_s: float = defaults.WEB_REQUEST_TIMEOUT_S
    keep_alive_timeout_s: float = defaults.WEB_KEEP_ALIVE_TIMEOUT_S
    linger_s: float = defaults.WEB_LINGER_S
    linger_max_bytes: int = defaults.WEB_LINGER_MAX_BYTES
    max_refusals: int = defaults.WEB_MAX_REFUSALS
    stop_timeout_s: float = defaults.WEB_STOP_TIMEOUT_S


class State(enum.Enum):
    """Where a connection is in its request-response cycle."""

    WAITING = enum.auto()  # no byte of the next request yet (a new or kept-alive connection)
    READING = enum.auto()  # a request head is arriving
    SENDING = enum.auto()  # a response is going out
    LINGERING = enum.auto()  # the last response is out and our side shut: draining the client
    CLOSED = enum.auto()


class PageServer:
    """A page server bound and listening on host:port (0 = any free port), served by `loop`.

    `host` is an IPv4 or IPv6 literal or a name; "::" listens on every interface, IPv4 included.
    Run `serve_until_signalled()`, or run the loop yourself and call `close()` at the end.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        root: Path,
        ws_port: int,
        loop: Loop,
        limits: Limits | None = None,
        lan: bool = False,
    ) -> None:
        self.loop = loop
        self.limits = limits or Limits()
        self.site = Site(root=root.resolve(strict=True), ws_port=ws_port, lan=lan)
        self.listener = make_listener(host, port)
        self.port: int = self.listener.getsockname()[1]
        self.mdns_url: str | None = None  # set once the mDNS name is announced (mdns.py)
        self._qr: tuple[str, bytes] | None = None  # the last /qr.svg made, and its URL
        self.stopping = False
        self._connections: set[PageConnection] = set()
        self._per_address: dict[str, int] = {}
        # Counted connections that may be closed to make room, longest idle first.
        self._idle: dict[PageConnection, None] = {}
        self._refusals: set[PageConnection] = set()  # 503s being delivered; not counted
        self._stop_timer: Timer | None = None
        self._accept_timer: Timer | None = None
        self._refusal_logged_at = -REFUSAL_LOG_INTERVAL_S
        self._out_of_descriptors = False  # logged once until an accept succeeds again
        self._refusals_not_logged = 0
        self.loop.set_interest(self.listener, EVENT_READ, self._on_accept)

    # What the page is told.

    def lan_url(self) -> str | None:
        """The page's address for other machines: its first LAN address (IPv4 first, which
        every phone can reach), read now; None without --lan or without a LAN address."""
        if not self.site.lan:
            return None
        addresses = netinfo.lan_addresses()
        return f"http://{url_host(addresses[0])}:{self.port}/" if addresses else None

    def config_body(self) -> bytes:
        config = page_config(self.site.ws_port, self.lan_url(), self.mdns_url)
        return json.dumps(config).encode("ascii")

    def qr_svg(self) -> bytes | None:
        """/qr.svg: the QR code of `lan_url()`, made once per address; None without one."""
        url = self.lan_url()
        if url is None:
            return None
        if self._qr is None or self._qr[0] != url:
            self._qr = (url, qr.svg(url))
        return self._qr[1]

    # Accepting.

    def _on_accept(self, mask: int) -> None:
        for _ in range(defaults.ACCEPTS_PER_WAKEUP):
            try:
                sock, address = self.listener.accept()
            except WOULD_BLOCK:
                return
            except OSError as error:
                if error.errno in OUT_OF_DESCRIPTORS:
                    if self._close_one_idle(None):
                        continue  # a descriptor is free again: accept the waiting client
                    self._pause_accepting()
                elif error.errno not in (errno.ECONNABORTED, errno.EPROTO):
                    log.warning("page server: accept failed: %s", error)
                return
            self._out_of_descriptors = False
            try:
                self._admit(sock, canonical_address(str(address[0])))
            except OSError as error:
                log.debug("page server: %s lost before it was served: %s", address[0], error)
                sock.close()
            except Exception:
                log.exception("page server: bug while accepting %s; connection closed", address[0])
                sock.close()

    def _admit(self, sock: socket.socket, address: str) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # The head and the file go out in separate sends: never hold one back for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        limits = self.limits
        if self._per_address.get(
            address, 0
        ) >= limits.max_connections_per_address and not self._close_one_idle(address):
            self._refuse(sock, address, "too many connections from this address")
            return
        if len(self._connections) >= limits.max_connections and not self._close_one_idle(None):
            self._refuse(sock, address, "too many connections")
            return
        connection = PageConnection(self, sock, address, counted=True)
        self._connections.add(connection)
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self._idle[connection] = None
        connection.start()

    def _close_one_idle(self, address: str | None) -> bool:
        """Close the longest-idle connection (of `address`, if given); False if none is idle."""
        for connection in list(self._idle):
            if address is not None and connection.address != address:
                continue
            if connection.has_unread_bytes():
                continue  # its next request is arriving: not idle after all
            log.debug("page server: closed an idle connection of %s for room", connection.address)
            connection.close()
            return True
        return False

    def _refuse(self, sock: socket.socket, address: str, reason: str) -> None:
        # One line per interval at most: a flood of refused connections is not a flood of logs.
        now = self.loop.time()
        if now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL_S:
            more = self._refusals_not_logged
            log.warning(
                "page server refused %s: %s%s",
                address,
                reason,
                f" (and {more} more since the last such line)" if more else "",
            )
            self._refusal_logged_at = now
            self._refusals_not_logged = 0
        else:
            self._refusals_not_logged += 1
        refusal = PageConnection(self, sock, address, counted=False)
        lingering = len(self._refusals) < self.limits.max_refusals
        if lingering:
            self._refusals.add(refusal)
        refusal.refuse(linger=lingering)

    def _pause_accepting(self) -> None:
        # The listener stays readable while the queue holds clients: without a pause the loop
        # would spin on accept() failing. The clients wait in the kernel's queue meanwhile.
        if not self._out_of_descriptors:
            log.warning("page server: out of file descriptors and none idle; accepting slowly")
            self._out_of_descriptors = True
        self.loop.set_interest(self.listener, 0, self._on_accept)
        self._accept_timer = self.loop.call_later(defaults.WEB_ACCEPT_PAUSE_S, self._resume)

    def _resume(self) -> None:
        self._accept_timer = None
        if not self.stopping:
            self.loop.set_interest(self.listener, EVENT_READ, self._on_accept)

    # What connections tell the server.

    def note_idle(self, connection: PageConnection) -> None:
        if connection.counted:
            self._idle.pop(connection, None)
            self._idle[connection] = None  # to the end: the most recently idle

    def note_busy(self, connection: PageConnection) -> None:
        self._idle.pop(connection, None)

    def forget(self, connection: PageConnection) -> None:
        """Called by a connection once its socket is closed."""
        if connection.counted:
            self._connections.discard(connection)
            self._idle.pop(connection, None)
            left = self._per_address.get(connection.address, 0) - 1
            if left > 0:
                self._per_address[connection.address] = left
            else:
                self._per_address.pop(connection.address, None)
        else:
            self._refusals.discard(connection)
        if self.stopping and not self._connections and not self._refusals:
            self.loop.stop()

    # Running and stopping.

    def serve_until_signalled(self, on_ready: Callable[[], None] | None = None) -> int:
        """Serve until SIGINT or SIGTERM, then stop gracefully; the exit status is 0.

        `on_ready` runs once the signals are the loop's to handle (print the ready line there:
        a signal sent as soon as it is seen must already find them so).
        """
        try:
            self.loop.run_until_signalled(lambda signum: self.shutdown(), on_ready)
        finally:
            self.close()
            self.loop.close()
        return 0

    def shutdown(self) -> None:
        """Stop accepting; let responses under way finish (bounded), then stop the loop.

        Called again while stopping (a second Ctrl-C), it closes everything at once.
        """
        try:
            if self.stopping:
                log.info("page server: stopping now")
                self._stop_now()
                return
            self.stopping = True
            log.info("page server stopping: %d connection(s) open", len(self._connections))
            self._close_listener()
            for connection in [*self._connections, *self._refusals]:
                connection.on_server_stopping()
            if not self._connections and not self._refusals:
                self.loop.stop()
                return
            self._stop_timer = self.loop.call_later(self.limits.stop_timeout_s, self._stop_now)
        except Exception:
            log.exception("page server: bug while stopping; stopping now")
            self.loop.stop()

    def _stop_now(self) -> None:
        self._stop_timer = None
        self.close()
        self.loop.stop()

    def close(self) -> None:
        """Close the listener and every connection now; graceful stopping is shutdown()."""
        self._close_listener()
        self.loop.cancel(self._stop_timer)
        self._stop_timer = None
        for connection in [*self._connections, *self._refusals]:
            connection.close()

    def _close_listener(self) -> None:
        self.loop.cancel(self._accept_timer)
        self._accept_timer = None
        if self.listener.fileno() >= 0:
            self.loop.forget(self.listener)
            self.listener.close()


class PageConnection:
    """One client socket: reads request heads, answers GET and HEAD from the site's folder."""

    __slots__ = (
        "_buffer",
        "_end",
        "_file",
        "_http_1_0",
        "_keep_alive",
        "_line_checked",
        "_linger_budget",
        "_method",
        "_offset",
        "_out",
        "_progress_at",
        "_resume_timer",
        "_served",
        "_target",
        "_timer",
        "address",
        "counted",
        "server",
        "sock",
        "state",
    )

    def __init__(
        self, server: PageServer, sock: socket.socket, address: str, *, counted: bool
    ) -> None:
        self.server = server
        self.sock = sock
        self.address = address
        self.counted = counted  # against the caps; refused connections are not
        self.state = State.WAITING
        self._buffer = bytearray()
        self._out = SendBuffer(sock)
        self._timer: Timer | None = None
        self._resume_timer: Timer | None = None  # pipelined bytes to parse on the next round
        self._served = 0
        self._file: int | None = None  # the descriptor of the file being sent
        self._offset = 0
        self._end = 0
        self._keep_alive = False
        self._progress_at = 0.0
        self._linger_budget = 0
        self._reset_request()

    def _reset_request(self) -> None:
        self._line_checked = False
        self._method = ""  # as sent, for the log, once the request line is split
        self._target = ""
        self._http_1_0 = False
        self._keep_alive = False

    # Driving: every entry from the loop is guarded, so a bug costs this connection only.

    def start(self) -> None:
        # The first request head is due within the request timeout of the accept.
        self._set_timer(self.server.limits.request_timeout_s)
        self._want(EVENT_READ)

    def _on_ready(self, mask: int) -> None:
        self._guard(self._advance)

    def _on_timer(self) -> None:
        self._timer = None
        self._guard(self._timed_out)

    def _on_resume(self) -> None:
        self._resume_timer = None
        self._guard(self._process)

    def _guard(self, step: Callable[[], None]) -> None:
        try:
            step()
        except OSError as error:
            self._lost(error)
        except Exception:
            log.exception("page server: bug while serving %s; its connection is closed", self)
            self.close()

    def _advance(self) -> None:
        if self.state in (State.WAITING, State.READING):
            self._read()
        elif self.state is State.SENDING:
            self._send()
        elif self.state is State.LINGERING:
            self._drain()

    def _timed_out(self) -> None:
        limits = self.server.limits
        if self.state is State.WAITING:
            log.debug("page server: %s idle too long; closed", self.address)
            self.close()
        elif self.state is State.READING:
            self._log("request timed out")
            self.close()
        elif self.state is State.SENDING:
            stalled_s = self.server.loop.time() - self._progress_at
            if stalled_s < limits.request_timeout_s:
                self._set_timer(limits.request_timeout_s - stalled_s)
                return
            self._log("client stopped reading; response dropped")
            self.close()
        elif self.state is State.LINGERING:
            self._drain_now()  # whatever arrived last: closing over it would send a reset
            self.close()

    def _lost(self, error: OSError) -> None:
        reason = (
            "client disconnected"
            if isinstance(error, ConnectionError)
            else f"connection failed: {error.strerror or error}"
        )
        if self.state is State.SENDING:
            self._log(reason)
        else:
            log.debug("page server: %s %s", self.address, reason)
        self.close()

    # Reading a request.

    def _read(self) -> None:
        try:
            data = self.sock.recv(defaults.MAX_REQUEST_HEAD_BYTES)
        except WOULD_BLOCK:
            return
        if not data:
            self.close()  # the client is done (or gave up mid-head): nothing to answer
            return
        if self.state is State.WAITING:
            self._begin_request()
        self._buffer += data
        self._process()

    def _begin_request(self) -> None:
        self.state = State.READING
        self.server.note_busy(self)
        if self._served:
            # A later request: its head is due within the request timeout of its first byte.
            self._set_timer(self.server.limits.request_timeout_s)

    def _process(self) -> None:
        """Answer the request in the buffer if its head is complete; else read on."""
        if self.state is State.WAITING and self._buffer:
            self._begin_request()
        if self.state is not State.READING:
            return
        try:
            request = self._take_request()
            if request is None:
                self._want(EVENT_READ)
                return
            self._answer(request)
        except HttpError as error:
            log.debug("page server: %s sent a bad request: %s", self.address, error)
            self._send_error(HTTPStatus(error.status))
        except RequestError as error:
            self._send_error(error.status)

    def _take_request(self) -> Request | None:
        """The parsed head once complete, None before; raise HttpError or RequestError."""
        buffer = self._buffer
        # RFC 9112 2.2: empty lines before a request line are ignored (they still count as
        # the request's first bytes, so sending only those extends no deadline).
        skipped = 0
        while buffer.startswith(b"\r\n", skipped):
            skipped += 2
        del buffer[:skipped]
        limit = defaults.MAX_REQUEST_HEAD_BYTES
        line_end = buffer.find(b"\r\n", 0, limit)
        if line_end < 0:
            if len(buffer) >= limit:
                raise RequestError(HTTPStatus.REQUEST_URI_TOO_LONG)
            return None
        if not self._line_checked:
            # As soon as the request line is in: HTTP/0.9 or garbage gets its 400 now, not at
            # the deadline, and the log can name the method and target of a bad request.
            self._check_request_line(bytes(buffer[:line_end]))
        end = http.find_head_end(buffer, limit)
        if end is None:
            return None
        head = bytes(buffer[:end])
        del buffer[:end]
        return http.parse_request(
            head,
            defaults.MAX_HEADER_LINES,
            allow_http_1_0=True,
            allow_transfer_encoding=True,
        )

    def _check_request_line(self, line: bytes) -> None:
        self._line_checked = True
        parts = line.split(b" ")
        if len(parts) != 3:
            raise RequestError(HTTPStatus.BAD_REQUEST)  # HTTP/0.9 or garbage
        self._method = parts[0].decode("latin-1")
        self._target = parts[1].decode("latin-1")
        version = parts[2]
        if HTTP_VERSION.fullmatch(version) is None:
            raise RequestError(HTTPStatus.BAD_REQUEST)
        if version not in SERVED_VERSIONS:
            raise RequestError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
        self._http_1_0 = version == b"HTTP/1.0"

    # Answering.

    def _answer(self, request: Request) -> None:
        connection = request.headers.tokens("Connection")
        if "close" in connection or self.server.stopping:
            self._keep_alive = False
        else:
            self._keep_alive = "keep-alive" in connection or not self._http_1_0
        if request.body_length or "Transfer-Encoding" in request.headers:
            # A body is never read, so the connection cannot be reused: what follows the head
            # is drained after the response instead of being read as a next request.
            self._keep_alive = False
        if request.method not in ("GET", "HEAD"):
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED)
        segments, trailing_slash = split_target(request.target)
        if segments == [CONFIG_NAME] and not trailing_slash:
            self._respond(
                HTTPStatus.OK,
                [("Content-Type", CONTENT_TYPES[".json"]), ("Cache-Control", "no-store")],
                self.server.config_body(),
            )
            return
        if segments == [QR_NAME] and not trailing_slash:
            image = self.server.qr_svg()
            if image is None:
                raise RequestError(HTTPStatus.NOT_FOUND)  # not on the LAN: nothing to scan
            self._respond(
                HTTPStatus.OK,
                [("Content-Type", CONTENT_TYPES[".svg"]), ("Cache-Control", "no-store")],
                image,
            )
            return
        path = find_file(self.server.site.root, segments, trailing_slash)
        fd = open_regular_file(path)
        try:
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        if self._method == "HEAD":
            os.close(fd)
        else:
            self._file, self._offset, self._end = fd, 0, size
        fields = [("Content-Type", content_type_for(path)), ("Cache-Control", "no-cache")]
        self._respond(HTTPStatus.OK, fields, b"", content_length=size)

    def _send_error(self, status: HTTPStatus, *, log_it: bool = True) -> None:
        # The body is only the status: nothing from the request or the disk is echoed.
        if status != HTTPStatus.NOT_FOUND:
            # After a malformed or refused request the stream cannot be trusted to resync, and
            # the client may still be sending what was refused: drain it, then close.
            self._keep_alive = False
        fields = [("Allow", ALLOWED_METHODS)] if status == HTTPStatus.METHOD_NOT_ALLOWED else []
        fields += [("Content-Type", CONTENT_TYPES[".txt"]), ("Cache-Control", "no-store")]
        body = f"{status.value} {status.phrase}\n".encode("ascii")
        self._respond(status, fields, body, log_it=log_it)

    def _respond(
        self,
        status: HTTPStatus,
        fields: list[tuple[str, str]],
        body: bytes,
        *,
        content_length: int | None = None,
        log_it: bool = True,
    ) -> None:
        """Queue the head (and a body in memory, unless HEAD) and start sending."""
        if log_it:
            self._log_access(status)
        lines = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            f"Server: {SERVER_NAME}",
            f"Date: {formatdate(usegmt=True)}",
        ]
        lines += [f"{name}: {value}" for name, value in fields]
        lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
        if not self._keep_alive:
            lines.append("Connection: close")
        elif self._http_1_0:
            lines.append("Connection: keep-alive")  # an HTTP/1.0 client asked for it
        lines += [f"{name}: {value}" for name, value in SECURITY_HEADERS]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.state = State.SENDING
        self.server.note_busy(self)
        self._progress_at = self.server.loop.time()
        self._set_timer(self.server.limits.request_timeout_s)
        self._out.write([head, body] if body and self._method != "HEAD" else [head])
        self._send()

    def _send(self) -> None:
        queued = self._out.size
        self._out.flush()
        if self._out.size < queued:
            self._progress_at = self.server.loop.time()
        if self._out:
            self._want(EVENT_WRITE)
            return
        if self._file is not None and self._offset < self._end:
            # The file is sent from an offset up to the size it had when the head was built:
            # a file that grows meanwhile cannot break the framing.
            count = min(self._end - self._offset, defaults.WEB_SEND_CHUNK_BYTES)
            try:
                sent = os.sendfile(self.sock.fileno(), self._file, self._offset, count)
            except WOULD_BLOCK:
                self._want(EVENT_WRITE)
                return
            if sent == 0:
                # The file shrank: the client is owed bytes it will never get; only closing
                # the connection tells it so.
                self._log("file shrank while being sent; connection closed")
                self._keep_alive = False
            else:
                self._offset += sent
                self._progress_at = self.server.loop.time()
                if self._offset < self._end:
                    self._want(EVENT_WRITE)  # the rest on a later round, after other clients
                    return
        self._finish_response()

    def _finish_response(self) -> None:
        self._close_file()
        self._served += 1
        keep_alive = self._keep_alive and not self.server.stopping
        self._reset_request()
        if not keep_alive:
            self._start_lingering()
            return
        self.state = State.WAITING
        self.server.note_idle(self)
        self._set_timer(self.server.limits.keep_alive_timeout_s)
        if self._buffer:
            # Pipelined bytes: parse them on the next round, not by recursing from here, and
            # read nothing more until they need it, so the buffer stays within one head's size.
            self._want(0)
            self._resume_timer = self.server.loop.call_later(0, self._on_resume)
        else:
            self._want(EVENT_READ)

    # Refusing, lingering, closing.

    def refuse(self, *, linger: bool) -> None:
        """Answer 503 at once (the request unread) and close once it is out."""
        try:
            with contextlib.suppress(*WOULD_BLOCK):
                self.sock.recv(defaults.MAX_REQUEST_HEAD_BYTES)  # what has arrived, unread
            self._send_error(HTTPStatus.SERVICE_UNAVAILABLE, log_it=False)
        except OSError:
            self.close()
            return
        if not linger:
            self.close()

    def _start_lingering(self) -> None:
        self.state = State.LINGERING
        self._buffer.clear()
        self.server.note_idle(self)
        self._linger_budget = self.server.limits.linger_max_bytes
        self._set_timer(self.server.limits.linger_s)
        self.sock.shutdown(socket.SHUT_WR)  # the client sees the end of the response now
        self._want(EVENT_READ)

    def _drain(self) -> None:
        try:
            data = self.sock.recv(LINGER_RECV_BYTES)
        except WOULD_BLOCK:
            return
        self._linger_budget -= len(data)
        if not data or self._linger_budget <= 0:
            self.close()

    def _drain_now(self) -> None:
        with contextlib.suppress(OSError):
            while self._linger_budget > 0:
                data = self.sock.recv(LINGER_RECV_BYTES)
                if not data:
                    return
                self._linger_budget -= len(data)

    def has_unread_bytes(self) -> bool:
        """Whether the client has sent bytes not read yet (a request may be arriving)."""
        if self.state is not State.WAITING:
            return False
        if self._buffer:
            return True  # pipelined, to be parsed on the next round
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except OSError:
            return False  # nothing yet (BlockingIOError), or a dead socket

    def on_server_stopping(self) -> None:
        """Close now unless a response is under way (a draining close ends on its own)."""
        if self.state in (State.WAITING, State.READING):
            self.close()

    def close(self) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        loop = self.server.loop
        loop.cancel(self._timer)
        loop.cancel(self._resume_timer)
        self._timer = self._resume_timer = None
        self._close_file()
        loop.forget(self.sock)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.server.forget(self)

    def _close_file(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None

    # Plumbing.

    def _want(self, events: int) -> None:
        self.server.loop.set_interest(self.sock, events, self._on_ready)

    def _set_timer(self, delay_s: float) -> None:
        self.server.loop.cancel(self._timer)
        self._timer = self.server.loop.call_later(delay_s, self._on_timer)

    def _log_access(self, status: HTTPStatus) -> None:
        target = self._target or "-"
        if len(target) > MAX_LOGGED_PATH_CHARS:
            target = target[:MAX_LOGGED_PATH_CHARS] + "..."
        self._log(f"{self._method or '-'} {target} {status.value}")

    def _log(self, message: str) -> None:
        # What is logged can hold request bytes: escape controls so no one can forge log lines.
        log.info("%s %s", self.address, message.translate(LOG_ESCAPES))

    def __repr__(self) -> str:
        return f"<PageConnection {self.address} {self.state.name}>"


def split_target(target: str) -> tuple[list[str], bool]:
    """Request target -> (percent-decoded path segments, ends with "/"), or raise RequestError.

    Decodes once, strictly. Refuses with 404 anything that could name a place outside the
    folder or a hidden file, or that no file system could hold; with 400 anything malformed.
    """
    if not target.startswith("/"):
        raise RequestError(HTTPStatus.BAD_REQUEST)  # absolute-form and "*" are for proxies
    path = target.split("?", 1)[0].split("#", 1)[0]
    if path.startswith("//"):
        # A browser reads "//host/" as another site: it must never round-trip anywhere.
        raise RequestError(HTTPStatus.NOT_FOUND)
    if BAD_TARGET_CHAR.search(path) or BAD_PERCENT_ESCAPE.search(path):
        raise RequestError(HTTPStatus.BAD_REQUEST)
    try:
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(HTTPStatus.BAD_REQUEST) from None
    if CONTROL_CHAR.search(decoded):
        raise RequestError(HTTPStatus.BAD_REQUEST)  # NUL and friends: never a file name
    if "\\" in decoded:
        raise RequestError(HTTPStatus.NOT_FOUND)  # a path separator somewhere, so never a name
    segments = decoded.split("/")[1:]
    trailing_slash = segments[-1] == ""
    if trailing_slash:
        segments.pop()
    # Empty segments ("a//b", an encoded "//"), ".", "..", dotfiles and dot-folders.
    if any(segment == "" or segment.startswith(".") for segment in segments):
        raise RequestError(HTTPStatus.NOT_FOUND)
    if any(len(segment.encode("utf-8")) > NAME_MAX_BYTES for segment in segments):
        raise RequestError(HTTPStatus.NOT_FOUND)
    return segments, trailing_slash


def find_file(root: Path, segments: list[str], trailing_slash: bool) -> Path:
    """The real path of the file to serve, inside the real `root`, or raise RequestError (404).

    Any error from the file system (a name too long, a loop of symlinks, no permission) is a
    404 too: the request named nothing this server serves.
    """
    try:
        path = inside(root, root.joinpath(*segments))
        if path.is_dir():
            # Never a listing, and never a redirect to "dir/": the index or nothing.
            return inside(root, path / INDEX_NAME)
    except (OSError, ValueError):
        raise RequestError(HTTPStatus.NOT_FOUND) from None
    if trailing_slash:
        raise RequestError(HTTPStatus.NOT_FOUND)
    return path


def inside(root: Path, path: Path) -> Path:
    """`path` with every symlink resolved, if that stays within `root` and shows no dotfile."""
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        raise RequestError(HTTPStatus.NOT_FOUND)
    if any(part.startswith(".") for part in real.relative_to(root).parts):
        raise RequestError(HTTPStatus.NOT_FOUND)  # a symlink inside that names a hidden file
    return real


def open_regular_file(path: Path) -> int:
    """A descriptor of `path` opened for reading if it is a regular file, or raise RequestError.

    O_NONBLOCK: opening a FIFO would otherwise wait for a writer, forever. O_NOFOLLOW: the path
    is already resolved, so a symlink here was swapped in after the check.
    """
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_CLOEXEC", 0)
    )
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError):
        raise RequestError(HTTPStatus.NOT_FOUND) from None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    if not regular:
        os.close(fd)
        raise RequestError(HTTPStatus.NOT_FOUND)
    return fd


def content_type_for(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), DEFAULT_CONTENT_TYPE)
