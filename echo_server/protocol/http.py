"""HTTP/1.1 request heads and responses, strictly, with no I/O (Sans-IO).

Bytes in, a `Request` or an `HttpError` out; a status and a body in, response bytes out. Both
servers parse here: the WebSocket server (the upgrade request, and plain requests for its
endpoints such as /notify) and the page server. `HttpError` is the one exception that carries an
HTTP status, for every refusal of both; the servers turn it into a response in one place each.

It is what a hostile peer on the LAN talks to first, so it is deliberately strict, in the manner
of h11: no HTTP/1.0 (unless a caller allows it), no obsolete line folding, no control characters
in header values, no Transfer-Encoding (unless a caller that never reads a body allows it), one
Host. It is not a general HTTP implementation: no chunked bodies, no absolute-form targets, no
trailers; it never touches a socket, a clock or a file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

from echo_server import defaults
from echo_server.addresses import parse_authority

__all__ = [
    "Headers",
    "HttpError",
    "Request",
    "find_head_end",
    "http_response",
    "parse_request",
]

# Content-Length with more digits than this is refused: it cannot be a body this server would
# read, and int() on thousands of digits raises ValueError (or takes quadratic time).
MAX_CONTENT_LENGTH_DIGITS = 18

# RFC 9110 section 5.6.2 (token) and 5.5 (field-value: HTAB, SP, VCHAR, obs-text). Every other
# control character, including NUL, CR and LF, is refused rather than passed on.
_TOKEN_RE = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# RFC 9112 section 3: method SP request-target SP HTTP-version, nothing more, nothing less.
# The target is origin-form only ("/" then visible ASCII, without "#": fragments are never sent).
_REQUEST_LINE_RE = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+) (/[\x21\x22\x24-\x7e]*) (HTTP/1\.[01])"
)
_DIGITS_RE = re.compile(rb"[0-9]+")
_STR_TOKEN_RE = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_STR_FIELD_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


class Headers:
    """Case-insensitive, multi-valued, order-keeping header list.

    Immutable once built: the parser makes one per request and nothing edits it afterwards.
    """

    __slots__ = ("_by_name", "_items")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = tuple(items)
        self._by_name: dict[str, list[str]] = {}
        for name, value in self._items:
            self._by_name.setdefault(name.lower(), []).append(value)

    def get(self, name: str) -> str | None:
        """The value of `name`; repeated lines joined with ", " (RFC 9110 5.3); None if absent."""
        values = self._by_name.get(name.lower())
        return None if values is None else ", ".join(values)

    def __getitem__(self, name: str) -> str | None:
        """`headers["Origin"]`: as `get`, None if absent (as `email.message.Message` answers,
        which is what upstream's handlers, on `BaseHTTPRequestHandler`, are used to)."""
        return self.get(name)

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, one per header line, in the order received."""
        return list(self._by_name.get(name.lower(), ()))

    def tokens(self, name: str) -> list[str]:
        """Comma-separated elements across all values of `name`, stripped and lower-cased.

        Empty elements are skipped, as RFC 9110 5.6.1 asks of recipients ("a, , b").
        """
        found: list[str] = []
        for value in self._by_name.get(name.lower(), ()):
            found.extend(part.strip().lower() for part in value.split(",") if part.strip())
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair as received, names in their original case."""
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)  # immutable after construction, so Request stays hashable

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed HTTP/1.1 (or, if allowed, HTTP/1.0) request head."""

    method: str
    target: str  # as sent, e.g. "/chat?room=1"
    path: str  # the target before "?", not percent-decoded, e.g. "/chat"
    query: str  # the target after the first "?", "" if none
    headers: Headers
    body_length: int  # Content-Length, or 0 without one
    version: str = "HTTP/1.1"  # "HTTP/1.0" only when parse_request was told to allow it


class HttpError(Exception):
    """The request must be refused with an HTTP status; `response()` gives the bytes to send
    before closing."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(status, message)
        self.status = int(status)  # a plain int even when given an HTTPStatus
        self.message = message
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)

    def __str__(self) -> str:
        return f"{self.status} {_reason_phrase(self.status)}: {self.message}"

    def response(self) -> bytes:
        """The complete response: status line, headers, and the message as a text/plain body."""
        body = f"{self.message}\n".encode()
        return http_response(self.status, body, "text/plain; charset=utf-8", self.headers)


def find_head_end(
    buffer: bytes | bytearray, max_head_bytes: int = defaults.MAX_REQUEST_HEAD_BYTES
) -> int | None:
    """Offset just past the blank line ending the request head, or None while incomplete.

    Raises HttpError(431) once the buffer holds max_head_bytes without the end. Only CRLF
    line endings count: a bare-LF request never completes and runs into the limit or the
    handshake timeout, like any other malformed request.
    """
    # Searching only the first max_head_bytes keeps each call bounded however much a peer sends.
    end = buffer.find(b"\r\n\r\n", 0, max_head_bytes)
    if end >= 0:
        return end + 4
    if len(buffer) >= max_head_bytes:
        raise HttpError(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"the request head is larger than {max_head_bytes} bytes",
        )
    return None


def parse_request(
    head: bytes,
    max_header_lines: int = defaults.MAX_HEADER_LINES,
    *,
    allow_http_1_0: bool = False,
    allow_transfer_encoding: bool = False,
) -> Request:
    """Parse a complete request head (request line + headers + CRLF CRLF).

    Raises HttpError: 400 on anything malformed, 431 on more than max_header_lines headers.
    `allow_http_1_0` also takes "HTTP/1.0" request lines, which may omit Host (RFC 9112 3.2).
    `allow_transfer_encoding` takes a Transfer-Encoding header instead of refusing it: only for
    a caller that never reads a request body and closes the connection after such a request.
    """
    if not head.endswith(b"\r\n\r\n"):
        raise _bad_request("the request head does not end with an empty line")
    request_line, *header_lines = head[:-4].split(b"\r\n")
    if len(header_lines) > max_header_lines:
        raise HttpError(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"the request has more than {max_header_lines} header lines",
        )

    matched = _REQUEST_LINE_RE.fullmatch(request_line)
    if matched is None or (matched.group(3) != b"HTTP/1.1" and not allow_http_1_0):
        raise _bad_request("the request line is not 'METHOD /path HTTP/1.1'")
    # The groups matched ASCII-only patterns, so these decodes cannot fail.
    method = matched.group(1).decode("ascii")
    target = matched.group(2).decode("ascii")
    version = matched.group(3).decode("ascii")
    path, _, query = target.partition("?")

    headers = Headers([_parse_header_line(line) for line in header_lines])

    # RFC 9112 section 3.2: exactly one Host, and a valid one. Refusing a bad Host here means
    # origin_allowed() only ever compares against a host this module itself has parsed.
    # An HTTP/1.0 request may have none (HTTP/1.0 predates Host), but not two or a bad one.
    hosts = headers.get_all("Host")
    if len(hosts) != 1 and not (version == "HTTP/1.0" and not hosts):
        raise _bad_request("the request needs exactly one Host header")
    if hosts and parse_authority(hosts[0]) is None:
        raise _bad_request("the Host header is not a valid host[:port]")

    # RFC 9112 section 6.1 and 6.3: Transfer-Encoding would need chunked decoding and, combined
    # with Content-Length, is the classic request-smuggling vector; nothing here needs it.
    if "Transfer-Encoding" in headers and not allow_transfer_encoding:
        raise _bad_request("Transfer-Encoding is not supported")

    return Request(method, target, path, query, headers, _content_length(headers), version)


def http_response(
    status: int, body: bytes, content_type: str, headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    """A complete HTTP/1.1 response that ends the connection.

    `headers` go first, then Content-Type, Content-Length and "Connection: close", which are
    always added here and so must not be in `headers`. A header name that is not a token, or a
    value with a control character, raises ValueError: that would be a bug in the caller, and
    letting it through would let a CR LF split the response.
    """
    fields = [*headers, ("Content-Type", content_type)]
    fields += [("Content-Length", str(len(body))), ("Connection", "close")]
    lines = [f"HTTP/1.1 {int(status)} {_reason_phrase(status)}"]
    for name, value in fields:
        if _STR_TOKEN_RE.fullmatch(name) is None:
            raise ValueError(f"invalid HTTP header name: {name!r}")
        if _STR_FIELD_VALUE_RE.fullmatch(value) is None:
            raise ValueError(f"invalid HTTP header value: {value!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def response_status(response: bytes) -> int:
    """The status code of a response made by `http_response`: b"HTTP/1.1 200 OK..." is 200."""
    return int(response[9:12])


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""  # RFC 9112 section 4 allows an empty reason phrase


def _bad_request(message: str) -> HttpError:
    return HttpError(HTTPStatus.BAD_REQUEST, message)


def _parse_header_line(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise _bad_request("obsolete line folding is not supported")
    raw_name, colon, raw_value = line.partition(b":")
    if not colon:
        raise _bad_request("a header line has no ':'")
    # RFC 9112 section 5.1: whitespace before the colon must be refused, hence fullmatch.
    if _TOKEN_RE.fullmatch(raw_name) is None:
        raise _bad_request("a header name is not a valid token")
    raw_value = raw_value.strip(b" \t")
    if _FIELD_VALUE_RE.fullmatch(raw_value) is None:
        raise _bad_request("a header value contains a control character")
    # Names are ASCII by the token pattern. Values may carry obs-text, which RFC 9110 5.5 says
    # to treat as opaque; latin-1 maps each byte to one character and cannot fail.
    return raw_name.decode("ascii"), raw_value.decode("latin-1")


def _content_length(headers: Headers) -> int:
    values = headers.get_all("Content-Length")
    if not values:
        return 0
    # RFC 9112 section 6.3 allows merging repeated identical values; refusing them is simpler
    # and no client that matters sends them.
    if len(values) > 1:
        raise _bad_request("the request has more than one Content-Length header")
    raw = values[0].encode("latin-1")
    if _DIGITS_RE.fullmatch(raw) is None or len(raw) > MAX_CONTENT_LENGTH_DIGITS:
        raise _bad_request("Content-Length is not a number of bytes")
    return int(raw)
