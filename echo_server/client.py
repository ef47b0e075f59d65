"""`echo-server client URL`: a terminal WebSocket client, like wscat, for trying a server by hand.

It prints every message it receives on stdout, one line each, and sends every line typed on
stdin as a text message. Status lines and errors go to stderr, so stdout holds only messages
and can be piped. The WebSocket protocol is the `websockets` package's synchronous client; this
module only decides what to send, what to print, when to stop and which exit status to give.

It is not a load generator, a protocol tester (it never sends a malformed frame) or a library:
scripts that need a WebSocket connection should use `websockets` itself.

Two threads: the main thread receives and prints, and owns every decision to stop (count,
timeout, Ctrl-C); a daemon thread reads stdin and sends. The stdin thread reads the file
descriptor with os.read, never through `sys.stdin`, so that exiting while it waits for a line
cannot deadlock on the buffered reader's lock at interpreter shutdown.
"""

from __future__ import annotations

import argparse
import codecs
import io
import ipaddress
import json
import os
import ssl
import sys
import threading
import time
from dataclasses import dataclass

from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin
from websockets.uri import parse_uri

from echo_server import defaults
from echo_server.arguments import positive_int, seconds

PROG = "echo-server client"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C

BINARY_PREVIEW_BYTES = 32
# The descriptor, not sys.stdin: sys.stdin is None when the process starts with fd 0 closed.
STDIN_FD = 0
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
  130  Ctrl-C (the connection is closed normally first)

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
    option("--origin", metavar="ORIGIN", help="send this Origin header, as a browser page would")
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
            value = json.loads(text)
        except ValueError:
            pass
        else:
            pretty = json.dumps(value, indent=2, ensure_ascii=False)
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


def is_loopback(url: str) -> bool:
    host = parse_uri(url).host
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_connection(args: argparse.Namespace, open_timeout_s: float) -> ClientConnection:
    return connect(
        args.url,
        ssl=tls_context(args),
        # A proxy from the environment (https_proxy...) is used as websockets does, except for
        # this machine's own addresses: no proxy can reach those.
        proxy=None if is_loopback(args.url) else True,
        origin=None if args.origin is None else Origin(args.origin),
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


def ensure_stdin_fd() -> None:
    """Put /dev/null on fd 0 if the process was started with it closed (`<&-`).

    Otherwise the connection's socket would be given fd 0, and the stdin thread would read the
    server's bytes as if they were typed.
    """
    try:
        os.fstat(STDIN_FD)
    except OSError:
        devnull = os.open(os.devnull, os.O_RDONLY)
        if devnull != STDIN_FD:
            os.dup2(devnull, STDIN_FD)
            os.close(devnull)


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


class Output:
    """Messages on stdout, status lines and errors on stderr, each flushed at once."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def message(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def status(self, line: str) -> None:
        if not self.quiet:
            print(f"{PROG}: {line}", file=sys.stderr, flush=True)

    def error(self, line: str) -> None:
        print(f"{PROG}: error: {line}", file=sys.stderr, flush=True)


def final_state(ws: ClientConnection) -> ConnectionClosed | None:
    """Wait for the closing handshake to end and return its outcome (None: it never ended).

    Messages still queued are read and dropped: we stopped on purpose (count, timeout, Ctrl-C).
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


def receive_until_done(
    ws: ClientConnection, args: argparse.Namespace, deadline: float | None, out: Output
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
            out.message(format_message(message, args))
            received += 1
    except ConnectionClosed as closed:
        return closed
    ws.close()
    return final_state(ws)


def converse(
    ws: ClientConnection, args: argparse.Namespace, deadline: float | None, out: Output
) -> ConnectionClosed | None:
    """Send --send messages, start the stdin thread, receive; return how the connection ended."""
    try:
        for text in args.send:
            ws.send(text)
    except ConnectionClosed as closed:
        return closed
    has_end_condition = args.count is not None or args.timeout is not None
    start_stdin_thread(ws, close_at_eof=not (has_end_condition or args.keep_open))
    return receive_until_done(ws, args, deadline, out)


def report_end(closed: ConnectionClosed | None, out: Output) -> int:
    if closed is None:
        out.error("the closing handshake did not finish in time")
        return EXIT_FAILED
    if isinstance(closed, ConnectionClosedOK):
        out.status(describe_close(closed))
        return EXIT_OK
    out.error(describe_close(closed))
    return EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    """Connect to args.url and converse until done; return the exit status (see EPILOG)."""
    out = Output(args.quiet)
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A message in a script the terminal's encoding lacks shows escaped instead of failing.
        sys.stdout.reconfigure(errors="backslashreplace")
    ensure_stdin_fd()
    started = time.monotonic()
    deadline = None if args.timeout is None else started + args.timeout
    open_timeout_s = defaults.HANDSHAKE_TIMEOUT_S
    if args.timeout is not None:
        open_timeout_s = min(open_timeout_s, args.timeout)

    try:
        try:
            ws = open_connection(args, open_timeout_s)
        except Exception as error:  # every way to fail is one line, never a traceback
            failure = describe_open_error(error, args.url, open_timeout_s)
            out.error(f"cannot connect to {args.url}: {failure.reason}")
            return failure.status
        hint = "; type lines to send, Ctrl-D to close" if os.isatty(STDIN_FD) else ""
        out.status(f"connected to {args.url}{hint}")
        with ws:
            try:
                closed = converse(ws, args, deadline, out)
            except KeyboardInterrupt:
                out.status("interrupted")
                ws.close()
                report_end(final_state(ws), out)
                return EXIT_INTERRUPTED
            except BrokenPipeError:
                # Whoever read stdout is gone (`| head -1`): nobody left to print for.
                silence_stdout()
                ws.close()
                return EXIT_OK
        return report_end(closed, out)
    except KeyboardInterrupt:  # while connecting, or a second Ctrl-C while closing
        return EXIT_INTERRUPTED


def silence_stdout() -> None:
    # Python flushes stdout at exit; into a closed pipe that would print an error of its own.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
