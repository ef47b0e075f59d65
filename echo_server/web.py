"""The page server: serves the browser test page (the folder www/) and /config.json over HTTP.

It is built on `http.server`, but it is deliberately not `python -m http.server`. It serves one
folder and nothing outside it: no directory listings, no dotfiles, no symlinks that lead out, no
redirects (so no open redirect), no error page that echoes the request, no Python version in the
`Server` header, and a deadline on every request head so that a silent or trickling client cannot
hold a thread forever. `/config.json` is generated, so the page learns which port the WebSocket
server listens on.

It is not a general web server: GET and HEAD only, no uploads, no ranges, no conditional
requests, no compression, no TLS. Run it behind a real web server if you need any of those.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import re
import socket
import socketserver
import stat
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_to_bytes

from echo_server import defaults

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger("echo_server")

MAX_LOGGED_PATH_CHARS = 200

ALLOWED_METHODS = "GET, HEAD"
INDEX_NAME = "index.html"
CONFIG_NAME = "config.json"

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

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)
# Sent on every response, errors included.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
)

BAD_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Bytes that have no place in a request target (RFC 3986): controls, space, DEL, non-ASCII.
BAD_TARGET_CHAR = re.compile(r"[\x00-\x20\x7f-\uffff]")
CONTROL_CHAR = re.compile(r"[\x00-\x1f\x7f]")
LOG_ESCAPES: Final = str.maketrans(
    {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]} | {0x5C: "\\\\"}
)


class RequestError(Exception):
    """A request the server answers with an error status and nothing else."""

    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Site:
    """What one page server serves: the real path of its folder and the generated config."""

    root: Path
    config_body: bytes
    request_timeout_s: float


def make_server(
    host: str,
    port: int,
    *,
    root: Path,
    ws_port: int,
    request_timeout_s: float = defaults.WEB_REQUEST_TIMEOUT_S,
    max_connections: int = defaults.WEB_MAX_CONNECTIONS,
) -> ThreadingHTTPServer:
    """A page server bound and listening on host:port (0 = any free port), not yet serving.

    `host` is an IPv4 or IPv6 literal or a name; "::" listens on every interface, IPv4 included.
    The caller runs `serve_forever()` and, at the end, `server_close()`.
    """
    site = Site(
        root=root.resolve(strict=True),
        config_body=json.dumps({"ws_port": ws_port}).encode("ascii"),
        request_timeout_s=request_timeout_s,
    )
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    handler = functools.partial(PageHandler, site=site)
    return PageServer(address, family, handler, max_connections=max_connections)


class PageServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with the address family chosen by the caller and a connection cap."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = defaults.LISTEN_BACKLOG

    def __init__(
        self,
        address: Any,
        family: socket.AddressFamily,
        handler: functools.partial[PageHandler],
        *,
        max_connections: int,
    ) -> None:
        # The socket is made in TCPServer.__init__ from this attribute, so set it first.
        self.address_family = family
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler, bind_and_activate=False)
        try:
            if family == socket.AF_INET6:
                # "::" should take IPv4 clients too; some systems default to IPv6 only.
                with contextlib.suppress(OSError):
                    self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn, a reverse DNS lookup that can stall
        # start-up for seconds on a LAN without DNS; nothing here uses the name it finds.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread per connection: without a cap, a flood of idle connections is a flood of
        # threads. Beyond the cap a connection is closed at once; browsers retry.
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            log.warning("page server refused %s: too many connections", client_address[0])
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:
            # "can't start new thread": no thread will release the slot, so do it here. Not
            # on SystemExit from a signal handler: the thread may have started already.
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A network error (a client that goes away, a route that vanishes) is normal, not a
        # bug worth a traceback; anything else is a bug and keeps socketserver's traceback.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.info("%s connection failed: %s", client_address[0], error.strerror or error)
            return
        super().handle_error(request, client_address)


class DeadlineReader(io.RawIOBase):
    """Reads from a socket, all against one deadline.

    A socket timeout restarts on every byte received, so a client that trickles one byte every
    few seconds would never time out; a deadline for the whole request head does.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.deadline = time.monotonic()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        remaining_s = self.deadline - time.monotonic()
        if remaining_s <= 0:
            raise TimeoutError("request head not complete before the deadline")
        self._sock.settimeout(remaining_s)
        return self._sock.recv_into(buffer)


class PageHandler(BaseHTTPRequestHandler):
    """One connection: reads request heads, answers GET and HEAD from the site's folder."""

    server_version = "echo_server"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Until a request line says otherwise. http.server's default, HTTP/0.9, means "send no
    # status line", so an early error would reach the client as a bare body.
    default_request_version = "HTTP/1.0"

    def __init__(self, request: Any, client_address: Any, server: Any, *, site: Site) -> None:
        # BaseRequestHandler.__init__ handles the whole connection, so set this first.
        self.site = site
        self.target = ""
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.linger_on_close = False
        self.rfile.close()
        self.reader = DeadlineReader(self.connection)
        self.buffered_reader = io.BufferedReader(self.reader)
        self.rfile = self.buffered_reader

    def handle_one_request(self) -> None:
        self.reader.deadline = time.monotonic() + self.site.request_timeout_s
        self.command = ""
        self.requestline = ""
        self.request_version = self.default_request_version
        self.target = ""
        started = False
        try:
            # Waiting for a request to begin: an idle keep-alive connection ends here, quietly.
            started = bool(self.buffered_reader.peek(1))
            if not started or not self.read_request():
                self.close_connection = True
                return
            self.connection.settimeout(self.site.request_timeout_s)
            self.respond()
            self.wfile.flush()
        except RequestError as request_error:
            self.connection.settimeout(self.site.request_timeout_s)
            self.send_error(request_error.status)
        except TimeoutError:
            self.close_connection = True
            if started:
                self.log_message("request timed out")
        except ConnectionError:
            self.close_connection = True
            self.log_message("client disconnected")

    def read_request(self) -> bool:
        """Read and parse one request head; False if the client closed before it was complete."""
        lines = self.read_head_lines()
        if lines is None:
            return False
        self.raw_requestline = lines[0]
        # parse_request reads the header lines from self.rfile: give it the head already read.
        socket_rfile = self.rfile
        self.rfile = io.BufferedReader(io.BytesIO(b"".join(lines[1:]) + b"\r\n"))
        try:
            parsed = self.parse_request()
        finally:
            self.rfile = socket_rfile
        if parsed:
            # The raw target: parse_request rewrites a leading "//" in self.path.
            self.target = self.requestline.split()[1]
        return parsed

    def read_head_lines(self) -> list[bytes] | None:
        """The request line and header lines, within the size limits; None on end of stream."""
        budget = defaults.MAX_REQUEST_HEAD_BYTES
        lines: list[bytes] = []
        while True:
            line = self.rfile.readline(budget + 1)
            if len(line) > budget:
                raise RequestError(
                    HTTPStatus.REQUEST_URI_TOO_LONG
                    if not lines
                    else HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
                )
            if not line.endswith(b"\n"):
                return None
            budget -= len(line)
            if line in (b"\r\n", b"\n"):
                if lines:
                    return lines
                continue  # RFC 9112 2.2: an empty line before the request line is ignored
            lines.append(line)
            if len(lines) == 1 and len(line.split()) != 3:
                # Not "METHOD TARGET HTTP/x.y": HTTP/0.9 or garbage, neither is served.
                raise RequestError(HTTPStatus.BAD_REQUEST)
            if len(lines) > defaults.MAX_HEADER_LINES + 1:
                raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)

    def handle_expect_100(self) -> bool:
        # No request body is ever read, so never invite one; the final answer comes instead.
        return True

    def respond(self) -> None:
        if self.command not in ("GET", "HEAD"):
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED)
        if self.headers.get("Content-Length", "0").strip() != "0" or self.headers.get(
            "Transfer-Encoding"
        ):
            # A GET with a body: the body is not read, so the connection cannot be reused.
            self.close_connection = True
            self.linger_on_close = True
        segments, trailing_slash = split_target(self.target)
        if segments == [CONFIG_NAME] and not trailing_slash:
            self.send_body(self.site.config_body, CONTENT_TYPES[".json"], "no-store")
            return
        path = find_file(self.site.root, segments, trailing_slash)
        self.send_file(path)

    def send_body(self, body: bytes, content_type: str, cache_control: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache_control)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_file(self, path: Path) -> None:
        with open_regular_file(path) as file:
            size = os.fstat(file.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type_for(path))
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if self.command == "HEAD":
                return
            # sendfile copies in the kernel, in chunks: a large file never sits in memory. It
            # stops at `size`, so a file that grows meanwhile cannot break the framing.
            sent = self.connection.sendfile(file, 0, size)
            if sent != size:
                # The file shrank: the client is owed bytes it will never get.
                self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's message and explain can quote the request (a bad version, a method);
        # the body here is only the status, so nothing from the request or the disk is echoed.
        status = HTTPStatus(code)
        body = f"{status.value} {status.phrase}\n".encode("ascii")
        self.send_response(status)
        if status != HTTPStatus.NOT_FOUND:
            # After a malformed or refused request the stream cannot be trusted to resync, and
            # the client may still be sending what was refused: drain it before closing.
            self.close_connection = True
            self.linger_on_close = True
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ALLOWED_METHODS)
        self.send_header("Content-Type", CONTENT_TYPES[".txt"])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def end_headers(self) -> None:
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")  # an HTTP/1.0 client asked for it
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def finish(self) -> None:
        super().finish()
        if self.linger_on_close:
            linger(self.connection)

    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        target = self.target or "-"
        if len(target) > MAX_LOGGED_PATH_CHARS:
            target = target[:MAX_LOGGED_PATH_CHARS] + "..."
        self.log_message("%s %s %s", self.command or "-", target, code)

    def log_message(self, format: str, *args: Any) -> None:
        # What is logged can hold request bytes: escape controls so no one can forge log lines.
        # address_string() is the bare IP address: no reverse DNS lookup per request.
        message = (format % args).translate(LOG_ESCAPES)
        log.info("%s %s", self.address_string(), message)


def linger(sock: socket.socket) -> None:
    """Half-close, then read and drop what the client still sends, for a bounded time.

    Closing a socket with unread input makes the kernel send a reset, and a reset can destroy
    the error response before the client has read it (RFC 9112, 9.6). So: stop writing, let the
    client see the end of the response, and give it a moment to stop sending.
    """
    deadline = time.monotonic() + defaults.WEB_LINGER_S
    budget = defaults.WEB_LINGER_MAX_BYTES
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        while budget > 0 and (remaining_s := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining_s)
            chunk = sock.recv(min(budget, 64 * 1024))
            if not chunk:
                break
            budget -= len(chunk)


def split_target(target: str) -> tuple[list[str], bool]:
    """Request target -> (percent-decoded path segments, ends with "/"), or raise RequestError.

    Decodes once, strictly. Refuses with 404 anything that could name a place outside the
    folder or a hidden file; with 400 anything malformed.
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
    return segments, trailing_slash


def find_file(root: Path, segments: list[str], trailing_slash: bool) -> Path:
    """The real path of the file to serve, inside the real `root`, or raise RequestError (404)."""
    path = inside(root, root.joinpath(*segments))
    if path.is_dir():
        # Never a listing, and never a redirect to "dir/": the index or nothing.
        return inside(root, path / INDEX_NAME)
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


def open_regular_file(path: Path) -> io.BufferedReader:
    """Open `path` for reading if it is a regular file, or raise RequestError (404).

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
    except OSError:
        raise RequestError(HTTPStatus.NOT_FOUND) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RequestError(HTTPStatus.NOT_FOUND)
    return open(fd, "rb")


def content_type_for(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), DEFAULT_CONTENT_TYPE)
