"""`echo-server client URL`: a terminal WebSocket client, like wscat, for trying a server by hand.

It prints every message it receives on stdout, one line each, and sends every line typed on
stdin as a text message. Status lines and errors go to stderr, so stdout holds only messages
and can be piped. The WebSocket protocol is the `websockets` package's synchronous client; this
module only decides what to send, what to print, when to stop and which exit status to give.

It is not a load generator, a protocol tester (it never sends a malformed frame) or a library:
scripts that need a WebSocket connection should use `websockets` itself.

What a client developer may want to imitate is passed on to websockets: `--subprotocol` (the
offer, in order; the status line says which the server chose), `--header` (more request
headers; the ones the handshake itself is made of are refused, pointing at the option that sets
them), `--compression` (permessage-deflate offered, as websockets and browsers do by default).
`--ping S` pings every S seconds from a thread of its own and prints each round trip as a
status line. The last status line says how the connection ended, with the close code and
reason.

Threads, and why. Ctrl-C must work at any moment, also while websockets holds its locks, and
Python runs signal handlers in the main thread only, wherever it is. So the main thread never
calls into websockets: it only waits, in a `Loop`, for two kinds of event: the session is done
(a byte on a socket pair), or SIGINT/SIGTERM (`Loop.on_signal`: a signal is an event handled
between callbacks, never an exception). The session thread connects, sends --send messages,
receives and prints, and reports how the connection ended; a daemon thread reads stdin and
sends; with --ping, another pings (waiting on an event the session sets when it ends). On the
first SIGINT or SIGTERM the main thread hands `close()` to a closer thread and waits (bounded)
for the closing handshake: exit 130 for SIGINT, 143 for SIGTERM (128 + the signal, as a shell
reports a command stopped by it; the close is still a normal 1000). While connecting there is
nothing to close: it exits at once. A second signal exits at once.

Nothing is written through `sys.stdin`, `sys.stdout` or `sys.stderr` after start: the threads
use the descriptors (os.read, os.write), so a thread blocked on a pipe at exit holds no buffered
stream's lock, which would make the interpreter abort instead of exiting.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import enum
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol
from websockets.uri import parse_uri

from echo_server import defaults
from echo_server.addresses import is_loopback
from echo_server.arguments import on_off, positive_int, seconds, subprotocol_name
from echo_server.core.loop import EVENT_READ, Loop

PROG = "echo-server client"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# 128 + the signal, what a shell reports for a command stopped by it: 130 for Ctrl-C.
EXIT_SIGNALLED_BASE = 128

BINARY_PREVIEW_BYTES = 32
# The descriptors, not sys.stdin and the others: those are None when the process starts with
# the descriptor closed, and their locks must never be held by a thread at exit (see above).
STDIN_FD = 0
STDOUT_FD = 1
STDERR_FD = 2
STDIN_READ_BYTES = 64 * 1024
# What the server may put in the body of a refused upgrade that we quote in our one-line error.
REFUSAL_BODY_MAX_CHARS = 200

# Control characters (C0, DEL, C1) are shown escaped, as `\n` or `\x1b`: one message stays one
# line, and a server cannot move the cursor, recolour or retitle the user's terminal. Tab is
# harmless and kept.
_TERMINAL_ESCAPES = str.maketrans(
    {
        code: repr(chr(code))[1:-1]
        for code in (*range(0x20), *range(0x7F, 0xA0))
        if code != ord("\t")
    }
)

DESCRIPTION = """\
Connect to a WebSocket server, print every message it sends (one line each, on stdout) and
send every line typed on stdin as a text message. Status lines and errors go to stderr."""

EPILOG = """\
end of input:
  Ctrl-D, or the end of a pipe or file, closes the connection normally (1000) once the
  messages the server sent before answering the close are printed, as wscat does: so
  `printf 'a\\nb\\n' | echo-server client URL` prints both echoes and exits.
  With --count, --timeout or --keep-open, end of input only stops sending: the client runs
  until its count, its timeout, the server's close or Ctrl-C, also with stdin closed (cron, CI).

display:
  text as is, control characters escaped (a newline shows as \\n, so one message is one line);
  binary as <binary N bytes: 0a1b...> with at most 32 bytes of hex (all of it with --binary-hex).

exit status:
  0  a normal close: ours (end of input, --count, --timeout) or the server's (1000, 1001)
  1  the connection could not be opened, or ended abnormally (one line on stderr says why)
  2  a bad option or URL
  130  Ctrl-C (the connection is closed normally first; a second Ctrl-C exits at once)
  143  SIGTERM (likewise)

proxies: http_proxy, https_proxy and no_proxy are honoured, except for 127.0.0.1, ::1, localhost."""


# Arguments.


def websocket_url(text: str) -> str:
    """A ws:// or wss:// URL; a bare `host:port/path` means ws://, as in wscat."""
    url = text.strip()
    if "://" not in url:
        url = "ws://" + url
    try:
        parse_uri(url)
    except (InvalidURI, ValueError):
        raise argparse.ArgumentTypeError(f"not a ws:// or wss:// URL: {text!r}") from None
    return url


def origin_header(text: str) -> str:
    """An Origin header value (`http://host:port`): visible ASCII, as an HTTP header must be."""
    if not text or not all("!" <= char <= "~" for char in text):
        raise argparse.ArgumentTypeError(
            "an origin is visible ASCII without spaces, like http://school.example:8000"
        )
    return text


# Request headers the handshake is made of: given with --header they would be sent twice (or
# break the handshake); each has its own option, or is the client's to set.
RESERVED_HEADERS = {
    "host": "it comes from the URL",
    "upgrade": "the client sets it",
    "connection": "the client sets it",
    "sec-websocket-key": "the client sets it",
    "sec-websocket-version": "the client sets it",
    "sec-websocket-protocol": "use --subprotocol",
    "sec-websocket-extensions": "use --compression",
    "origin": "use --origin",
}
_HEADER_NAME_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def request_header(text: str) -> tuple[str, str]:
    """`Name: value`, a header to add to the upgrade request: a token, then printable ASCII."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not name or not set(name) <= _HEADER_NAME_CHARS:
        raise argparse.ArgumentTypeError(f"not a header like 'Name: value': {text!r}")
    if not all(" " <= char <= "~" or char == "\t" for char in value):
        raise argparse.ArgumentTypeError(
            f"a header value is printable ASCII (no line breaks): {text!r}"
        )
    why = RESERVED_HEADERS.get(name.lower())
    if why is not None:
        raise argparse.ArgumentTypeError(f"{name} cannot be set with --header: {why}")
    return name, value


def message_text(text: str) -> str:
    # An argument that is not valid UTF-8 reaches us with surrogate escapes, which cannot be
    # sent as text: replace them, like a terminal would show them.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the client's arguments, description and help epilog to `parser`."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    # The epilog is laid out by hand (lists, an example command): keep its line breaks.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    # cli.main configures logging from --log-level for every command; the client has no such
    # option, and websockets' own warnings are all it would log.
    parser.set_defaults(log_level="warning")
    option = parser.add_argument
    option(
        "url",
        type=websocket_url,
        metavar="URL",
        help="ws://host:port/path or wss://...; without a scheme, ws:// is assumed",
    )
    option(
        "--send",
        action="append",
        type=message_text,
        default=[],
        metavar="TEXT",
        help="send TEXT first, before any line from stdin (repeatable, sent in order)",
    )
    option(
        "--count",
        type=positive_int,
        metavar="N",
        help="close normally and exit after receiving N messages",
    )
    option(
        "--timeout",
        type=seconds,
        metavar="S",
        help="close normally and exit S seconds after starting (with --count: whichever first)",
    )
    option(
        "--keep-open",
        action="store_true",
        help="at end of input, keep receiving until the server closes (or --count, --timeout)",
    )
    option(
        "--json",
        action="store_true",
        help="pretty-print text messages that are JSON (indent 2); others print as they are",
    )
    option(
        "--binary-hex",
        action="store_true",
        help=f"print binary messages in full hex, not only the first {BINARY_PREVIEW_BYTES} bytes",
    )
    option(
        "--origin",
        type=origin_header,
        metavar="ORIGIN",
        help="send this Origin header, as a browser page would",
    )
    option(
        "--subprotocol",
        action="append",
        type=subprotocol_name,
        default=[],
        metavar="NAME",
        help="offer subprotocol NAME (repeatable, in order of preference); the status line "
        "says which one the server chose",
    )
    option(
        "--header",
        action="append",
        type=request_header,
        default=[],
        metavar="'NAME: VALUE'",
        help="add this header to the upgrade request (repeatable), e.g. 'Authorization: Bearer x'",
    )
    option(
        "--compression",
        type=on_off,
        default=True,
        metavar="on|off",
        help="offer permessage-deflate, as browsers do (default on)",
    )
    option(
        "--ping",
        type=seconds,
        metavar="S",
        help="ping every S seconds and show each round trip on stderr",
    )
    option(
        "--insecure",
        action="store_true",
        help="wss://: accept any server certificate (a self-signed one); no protection at all",
    )
    option("--quiet", action="store_true", help="no status lines on stderr, only errors")


# Showing messages.


def escape_controls(text: str) -> str:
    return text.translate(_TERMINAL_ESCAPES)


def format_binary(data: bytes, full_hex: bool) -> str:
    if not data:
        return "<binary 0 bytes>"
    shown = data if full_hex else data[:BINARY_PREVIEW_BYTES]
    more = "" if len(shown) == len(data) else "..."
    return f"<binary {len(data)} bytes: {shown.hex()}{more}>"


def format_text(text: str, pretty_json: bool) -> str:
    if pretty_json:
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            # Not JSON; or JSON nested deeper than Python's recursion limit ("[[[[..."), or a
            # number too long to convert: shown as it came, like any other text.
            pass
        else:
            # json.dumps escapes C0 controls inside strings already, not DEL or C1.
            return "\n".join(escape_controls(line) for line in pretty.split("\n"))
    return escape_controls(text)


def format_message(message: str | bytes, args: argparse.Namespace) -> str:
    if isinstance(message, bytes):
        return format_binary(message, args.binary_hex)
    return format_text(message, args.json)


def describe_close(closed: ConnectionClosed) -> str:
    """How the connection ended, for the last status or error line."""
    if closed.rcvd is None:
        if closed.sent is None:
            return "connection lost without a close frame (1006)"
        return f"closed with {closed.sent}, but the server never answered (1006)"
    received = escape_controls(str(closed.rcvd))
    if closed.sent is None or closed.rcvd_then_sent:
        return f"closed by the server: {received}"
    return f"closed: {received}"


# Opening the connection.


@dataclass(frozen=True)
class OpenFailure:
    """Why the connection could not be opened, and the exit status that goes with it."""

    reason: str
    status: int = EXIT_FAILED


def refusal_reason(error: InvalidStatus) -> str:
    response = error.response
    reason = f"server refused the upgrade: HTTP {response.status_code} {response.reason_phrase}"
    body = response.body.decode("utf-8", "replace") if response.body else ""
    first_line = body.strip().split("\n", 1)[0].strip()
    if first_line:
        reason += f": {escape_controls(first_line[:REFUSAL_BODY_MAX_CHARS])}"
    return reason


def describe_open_error(error: Exception, url: str, open_timeout_s: float) -> OpenFailure:
    # Order matters: TimeoutError and ssl.SSLError are kinds of OSError.
    plain = url.startswith("ws://")
    if isinstance(error, InvalidStatus):
        return OpenFailure(refusal_reason(error))
    if isinstance(error, ssl.SSLCertVerificationError):
        hint = " (use --insecure to accept a self-signed certificate)"
        return OpenFailure(f"TLS: {error.verify_message or 'certificate rejected'}{hint}")
    if isinstance(error, ssl.SSLError):
        # The usual cause: wss:// to a server that speaks plain ws://.
        return OpenFailure(f"TLS handshake failed ({error.reason or error}); is it a ws:// server?")
    if isinstance(error, TimeoutError):
        if not plain and "handshake operation" in str(error):
            # The ssl module's wording for a TLS handshake that never got an answer: a plain
            # server still waiting for an HTTP request.
            return OpenFailure(f"no TLS answer in {open_timeout_s:g} s; is it a ws:// server?")
        return OpenFailure(f"no answer in {open_timeout_s:g} s")
    if isinstance(error, ConnectionRefusedError):
        return OpenFailure("connection refused")
    if isinstance(error, OSError):
        return OpenFailure(str(error.strerror or error).lower())
    if isinstance(error, InvalidMessage) and plain:
        # The usual cause: ws:// to a server that expects TLS first, and says nothing.
        return OpenFailure(f"{escape_controls(str(error))}; is it a wss:// server?")
    if isinstance(error, InvalidHandshake):
        return OpenFailure(f"not a WebSocket server: {escape_controls(str(error))}")
    if isinstance(error, ValueError):  # what websockets raises for an unusable URL or option
        return OpenFailure(str(error), EXIT_USAGE)
    return OpenFailure(f"{type(error).__name__}: {escape_controls(str(error))}")


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.url.startswith("wss://"):
        return None  # websockets refuses a TLS context for ws://
    context = ssl.create_default_context()
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def names_this_machine(url: str) -> bool:
    """Whether the URL's host is this machine: localhost, or a loopback address."""
    host = parse_uri(url).host
    return host.lower() == "localhost" or is_loopback(host)


def open_connection(args: argparse.Namespace, open_timeout_s: float) -> ClientConnection:
    return connect(
        args.url,
        ssl=tls_context(args),
        # A proxy from the environment (https_proxy...) is used as websockets does, except for
        # this machine's own addresses: no proxy can reach those.
        proxy=None if names_this_machine(args.url) else True,
        origin=None if args.origin is None else Origin(args.origin),
        subprotocols=[Subprotocol(name) for name in args.subprotocol] or None,
        additional_headers=args.header or None,
        compression="deflate" if args.compression else None,
        open_timeout=open_timeout_s,
        ping_interval=defaults.PING_INTERVAL_S,
        ping_timeout=defaults.PING_TIMEOUT_S,
        close_timeout=defaults.CLOSE_TIMEOUT_S,
        max_size=defaults.MAX_MESSAGE_BYTES,
    )


# Sending what is typed.


def send_stdin_lines(ws: ClientConnection, fd: int, close_at_eof: bool) -> None:
    """Send each line read from `fd` as a text message; at end of input, maybe close (1000).

    Runs in its own thread. Lines end with LF (a CR before it is dropped, for Windows editors);
    a last line without LF is still sent. Bytes that are not UTF-8 are replaced, not sent raw.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    try:
        while True:
            try:
                chunk = os.read(fd, STDIN_READ_BYTES)
            except OSError:  # stdin closed (EBADF) or unreadable: the same as its end
                chunk = b""
            pending += decoder.decode(chunk, final=not chunk)
            *lines, pending = pending.split("\n")
            if not chunk and pending:
                lines.append(pending)
            for line in lines:
                ws.send(line.removesuffix("\r"))
            if not chunk:
                break
        if close_at_eof:
            ws.close()
    except ConnectionClosed:
        pass  # the main thread reports how the connection ended


def ensure_standard_fds() -> None:
    """Put /dev/null on fds 0, 1 and 2 where the process was started with them closed (`<&-`).

    Otherwise the connection's socket could be given one of them: the stdin thread would read
    the server's bytes as if they were typed, or messages would be written into the socket.
    """
    for fd, mode in ((STDIN_FD, os.O_RDONLY), (STDOUT_FD, os.O_WRONLY), (STDERR_FD, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, mode)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)


def ping_every(
    ws: ClientConnection, interval_s: float, out: Output, ended: threading.Event
) -> None:
    """Ping every `interval_s` and say how long each pong took; runs in its own thread until
    the session ends or the connection closes. A pong later than the interval is missing."""
    while not ended.wait(interval_s):
        sent_at = time.monotonic()
        try:
            pong = ws.ping(ack_on_close=True)
        except ConnectionClosed:
            return
        answered = pong.wait(interval_s)
        if ws.protocol.state is not State.OPEN:
            return
        if answered:
            out.status(f"pong in {(time.monotonic() - sent_at) * 1e3:.1f} ms")
        else:
            out.status(f"no pong within {interval_s:g} s")


def start_ping_thread(
    ws: ClientConnection, interval_s: float, out: Output, ended: threading.Event
) -> None:
    pinger = threading.Thread(
        target=ping_every, args=(ws, interval_s, out, ended), name="ping", daemon=True
    )
    pinger.start()


def negotiated(ws: ClientConnection, args: argparse.Namespace) -> str:
    """What the handshake agreed, for the "connected" line: the subprotocol, the compression."""
    parts = []
    if args.subprotocol:
        parts.append(f"subprotocol {ws.subprotocol or 'none (the server chose none)'}")
    if args.compression:
        compressed = any(
            extension.name == "permessage-deflate" for extension in ws.protocol.extensions
        )
        parts.append("compression on" if compressed else "compression off (the server declined)")
    return "".join(f", {part}" for part in parts)


def start_stdin_thread(ws: ClientConnection, close_at_eof: bool) -> None:
    # A daemon thread: at exit it may still be waiting for a line nobody will type.
    reader = threading.Thread(
        target=send_stdin_lines,
        args=(ws, STDIN_FD, close_at_eof),
        name="stdin",
        daemon=True,
    )
    reader.start()


# Receiving, and ending.


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Output:
    """Messages on stdout, status lines and errors on stderr, each line one unbuffered write.

    Written to the descriptors, not through sys.stdout: the receiving thread may be blocked on
    a full pipe when the main thread exits, and a buffered writer's lock held by a thread at
    exit makes the interpreter abort instead of exiting. A message in a script the output's
    encoding lacks is shown escaped rather than failing.
    """

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.stdout_encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        self.stderr_encoding = getattr(sys.stderr, "encoding", None) or "utf-8"

    def message(self, line: str) -> None:
        """Raises OSError when stdout cannot be written (BrokenPipeError: its reader is gone)."""
        write_all(STDOUT_FD, (line + "\n").encode(self.stdout_encoding, "backslashreplace"))

    def status(self, line: str) -> None:
        if not self.quiet:
            self._stderr(f"{PROG}: {line}")

    def error(self, line: str) -> None:
        self._stderr(f"{PROG}: error: {line}")

    def _stderr(self, line: str) -> None:
        with contextlib.suppress(OSError):  # stderr gone: nowhere left to say anything
            write_all(STDERR_FD, (line + "\n").encode(self.stderr_encoding, "backslashreplace"))


def final_state(ws: ClientConnection) -> ConnectionClosed | None:
    """Wait for the closing handshake to end and return its outcome (None: it never ended).

    Messages still queued are read and dropped: we stopped on purpose (count, timeout).
    recv() is what raises the outcome, once the connection is fully closed.
    """
    deadline = time.monotonic() + defaults.CLOSE_TIMEOUT_S + 1.0
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            ws.recv(timeout=remaining)
        except ConnectionClosed as closed:
            return closed
        except TimeoutError:
            break
    return None


def close_and_drain(ws: ClientConnection) -> ConnectionClosed | None:
    """Close normally (1000) and return how it ended, reading and dropping what still arrives.

    The server's answer to our close comes behind the messages it sent before it saw ours, and
    websockets stops reading the socket while 16 messages wait unread: so they are read here,
    while a thread of its own waits in close(), or a busy server's answer would only be read
    after the close timeout, and a normal close would look like a lost connection.
    """
    threading.Thread(target=ws.close, name="closer", daemon=True).start()
    return final_state(ws)


def outcome(ws: ClientConnection) -> ConnectionClosed | None:
    """How the connection ended, once close() has returned (None: it has not ended)."""
    if ws.protocol.state is State.CLOSED:
        return ws.protocol.close_exc
    return None


class OutputError(Exception):
    """stdout could not be written: `error` is why (BrokenPipeError: nobody reads it)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


def receive_until_done(
    ws: ClientConnection,
    args: argparse.Namespace,
    deadline: float | None,
    session: Session,
) -> ConnectionClosed | None:
    """Print messages until --count, --timeout or the connection's end; close (1000) if ours."""
    received = 0
    try:
        while args.count is None or received < args.count:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                message = ws.recv(timeout=remaining)
            except TimeoutError:
                break
            if session.phase is not Phase.OPEN:
                continue  # stopped by a signal: the rest is read and dropped, not printed
            try:
                session.out.message(format_message(message, args))
            except OSError as error:
                raise OutputError(error) from None
            received += 1
    except ConnectionClosed as closed:
        return closed
    return close_and_drain(ws)


def converse(
    ws: ClientConnection, args: argparse.Namespace, deadline: float | None, session: Session
) -> ConnectionClosed | None:
    """Send --send messages, start the stdin thread, receive; return how the connection ended."""
    try:
        for text in args.send:
            ws.send(text)
    except ConnectionClosed as closed:
        return closed
    has_end_condition = args.count is not None or args.timeout is not None
    start_stdin_thread(ws, close_at_eof=not (has_end_condition or args.keep_open))
    return receive_until_done(ws, args, deadline, session)


def report_end(closed: ConnectionClosed | None, out: Output) -> int:
    if closed is None:
        out.error("the closing handshake did not finish in time")
        return EXIT_FAILED
    if isinstance(closed, ConnectionClosedOK):
        out.status(describe_close(closed))
        return EXIT_OK
    out.error(describe_close(closed))
    return EXIT_FAILED


class Phase(enum.Enum):
    """Where the connection is; the session thread and the main thread change it under a lock."""

    CONNECTING = enum.auto()
    OPEN = enum.auto()
    STOPPING = enum.auto()  # a stop signal came: the main thread's closer owns the end now
    FINISHED = enum.auto()  # the session ended on its own and reported how


class Session:
    """One connection, from connect to the last status line, run in the session thread.

    The main thread never calls into websockets while it waits; it only reads `phase`, and on
    a stop signal calls `stop()`, which hands the close to a thread of its own.
    """

    def __init__(
        self, args: argparse.Namespace, out: Output, deadline: float | None, open_timeout_s: float
    ) -> None:
        self.args = args
        self.out = out
        self.deadline = deadline
        self.open_timeout_s = open_timeout_s
        self.lock = threading.Lock()
        self.phase = Phase.CONNECTING
        self.ws: ClientConnection | None = None
        self.status = EXIT_FAILED
        # Readable once the session has ended and said so: what the main thread waits for.
        self.done, self._done_writer = socket.socketpair()
        self.ended = threading.Event()  # set with done: the pinger stops

    def run(self) -> None:
        """The session thread: connect, converse, report the end, then say done."""
        try:
            self._run()
        except Exception as error:
            # A bug, or a failure not foreseen: one line, and the main thread is not left
            # waiting for a done that would never come.
            message = f"{type(error).__name__}: {escape_controls(str(error))}"
            self._finish(lambda: self._report_unexpected(message))

    def _report_unexpected(self, message: str) -> int:
        self.out.error(message)
        return EXIT_FAILED

    def _run(self) -> None:
        args = self.args
        try:
            ws = open_connection(args, self.open_timeout_s)
        except Exception as error:  # every way to fail is one line, never a traceback
            failure = describe_open_error(error, args.url, self.open_timeout_s)

            def report_failure() -> int:
                self.out.error(f"cannot connect to {args.url}: {failure.reason}")
                return failure.status

            self._finish(report_failure)
            return
        with self.lock:
            stopped_while_connecting = self.phase is Phase.STOPPING
            if not stopped_while_connecting:
                self.ws = ws
                self.phase = Phase.OPEN
        if stopped_while_connecting:
            ws.close()  # the main thread is exiting already; be polite if there is time
            return
        hint = "; type lines to send, Ctrl-D to close" if os.isatty(STDIN_FD) else ""
        self.out.status(f"connected to {args.url}{negotiated(ws, args)}{hint}")
        if args.ping is not None:
            start_ping_thread(ws, args.ping, self.out, self.ended)
        with ws:
            try:
                closed = converse(ws, args, self.deadline, self)
            except OutputError as failed:
                output_error = failed.error
                close_and_drain(ws)
                self._finish(lambda: self._report_output_error(output_error))
                return
        self._finish(lambda: report_end(closed, self.out))

    def _report_output_error(self, error: OSError) -> int:
        if isinstance(error, BrokenPipeError):
            return EXIT_OK  # whoever read stdout is gone (`| head -1`): nobody left to print for
        self.out.error(f"cannot write to stdout: {error.strerror or error}")
        return EXIT_FAILED

    def _finish(self, report: Callable[[], int]) -> None:
        """Report the end (`report` prints and returns the status) and say done, unless a stop
        signal took the end over."""
        with self.lock:
            if self.phase is Phase.STOPPING:
                return
            self.phase = Phase.FINISHED
            self.status = report()
        self._say_done()

    def _say_done(self) -> None:
        self.ended.set()
        with contextlib.suppress(OSError):
            self._done_writer.send(b"x")

    def stop(self) -> bool:
        """On a stop signal (main thread): close normally, in a closer thread; then say done.

        Returns whether done is still to come: False while connecting (the attempt is abandoned
        and nothing is left to close).
        """
        with self.lock:
            phase = self.phase
            if phase in (Phase.CONNECTING, Phase.OPEN):
                self.phase = Phase.STOPPING
        if phase is not Phase.OPEN:
            return phase is Phase.FINISHED
        threading.Thread(target=self._close, name="closer", daemon=True).start()
        return True

    def _close(self) -> None:
        assert self.ws is not None
        self.ws.close()
        report_end(outcome(self.ws), self.out)
        self._say_done()


class Waiter:
    """The main thread: wait for the session's end or a signal, in a Loop; never inside a lock.

    SIGINT and SIGTERM are events (Loop.on_signal), handled here between callbacks. The first
    closes the connection normally and exits 130 (SIGINT) or 143 (SIGTERM) once the close is
    done, or CLOSE_TIMEOUT_S + 1 s later; a second one exits at once.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.loop = Loop()
        self.stop_signal: int | None = None
        self.status = EXIT_FAILED

    def run(self) -> int:
        self.loop.set_interest(self.session.done, EVENT_READ, self._on_done)
        session = threading.Thread(target=self.session.run, name="session", daemon=True)
        try:
            self.loop.run_until_signalled(self._on_signal, on_ready=session.start)
        finally:
            self.loop.close()
        return self.status

    def _on_done(self, mask: int) -> None:
        self.status = self.session.status if self.stop_signal is None else self._signalled()
        self.loop.stop()

    def _signalled(self) -> int:
        assert self.stop_signal is not None
        return EXIT_SIGNALLED_BASE + self.stop_signal

    def _on_signal(self, signum: int) -> None:
        if self.stop_signal is not None:  # a second Ctrl-C: the user wants out now
            self.status = self._signalled()
            self.loop.stop()
            return
        self.stop_signal = signum
        self.session.out.status("interrupted" if signum == signal.SIGINT else "terminated")
        if self.session.stop():
            self.loop.call_later(defaults.CLOSE_TIMEOUT_S + 1.0, self._close_timed_out)
        else:
            self.status = self._signalled()
            self.loop.stop()

    def _close_timed_out(self) -> None:
        self.session.out.error("the closing handshake did not finish in time")
        self.status = self._signalled()
        self.loop.stop()


def run(args: argparse.Namespace) -> int:
    """Connect to args.url and converse until done; return the exit status (see EPILOG)."""
    ensure_standard_fds()
    out = Output(args.quiet)
    started = time.monotonic()
    deadline = None if args.timeout is None else started + args.timeout
    open_timeout_s = defaults.HANDSHAKE_TIMEOUT_S
    if args.timeout is not None:
        open_timeout_s = min(open_timeout_s, args.timeout)
    return Waiter(Session(args, out, deadline, open_timeout_s)).run()
