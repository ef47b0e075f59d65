"""The server side of the WebSocket opening handshake (RFC 6455 section 4.2), Sans-IO.

A parsed request in (see http.py), a decision out: `check_upgrade` checks an upgrade request in
a fixed order and returns the Sec-WebSocket-Accept value or raises `HttpError` with the status
to refuse with; `origin_allowed` is the rule for which web pages may connect; `negotiate` chooses
the subprotocol (`select_subprotocol`) and the permessage-deflate answer (deflate.py); and
`Accepted.response` (`response_101`) builds the answer that completes the handshake. It never
touches a socket, a clock or a file; the server owns those, and so owns the handshake timeout.

Subprotocols (RFC 6455 section 4.2.2): the server is configured with the names it speaks; it
selects the first name in the client's `Sec-WebSocket-Protocol` offer (the client's order of
preference, as the RFC puts it) that it speaks, or, configured with "*", the client's first
name whatever it is (for testing clients that insist on getting one back). With no match the
response names none, and RFC 6455 leaves it to the client to go on or fail. Offered names that
are not HTTP tokens are skipped, never echoed. No other extension than permessage-deflate is
ever negotiated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

from echo_server.addresses import parse_authority
from echo_server.protocol import deflate
from echo_server.protocol.http import HttpError, Request

__all__ = [
    "ANY_SUBPROTOCOL",
    "WEBSOCKET_VERSION",
    "Accepted",
    "accept_key",
    "check_upgrade",
    "is_upgrade",
    "negotiate",
    "origin_allowed",
    "response_101",
    "select_subprotocol",
]

# Configured as a subprotocol, it selects whatever the client offers first.
ANY_SUBPROTOCOL = "*"

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
WEBSOCKET_VERSION = "13"
WEBSOCKET_KEY_BYTES = 16

UPGRADE_REQUIRED_MESSAGE = (
    "This is a WebSocket server: connect to it with a WebSocket client "
    "(a ws:// or wss:// URL), not by opening it as a web page."
)
# A page opened from a file (file://) or a sandboxed frame sends "Origin: null". It is refused
# unless listed (any site can make a sandboxed frame), with a message that says what to do.
NULL_ORIGIN_MESSAGE = (
    "a page opened from a file (Origin: null) may not open a WebSocket here: serve the page "
    "over http:// (for example python -m http.server), or start the server with "
    "--allow-origin null"
)

_ORIGIN_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
# Only web origins get the same-host rule; any other scheme must be listed explicitly.
_SAME_HOST_SCHEMES = frozenset({"http", "https"})
_TOKEN_RE = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    digest = hashlib.sha1((key + WEBSOCKET_GUID).encode("latin-1")).digest()
    return base64.b64encode(digest).decode("ascii")


def is_upgrade(request: Request) -> bool:
    """Whether the request asks for a WebSocket (its Upgrade header has the token "websocket")."""
    return "websocket" in request.headers.tokens("Upgrade")


def check_upgrade(request: Request, allowed_origins: frozenset[str] = frozenset()) -> str:
    """Validate an upgrade request; return the Sec-WebSocket-Accept value, or raise HttpError.

    The checks run in a fixed order, so a request with several faults always gets the same
    answer: method (405), Upgrade (426), Connection (400), version (426), key (400), body (400),
    then Origin (403).
    """
    headers = request.headers
    if request.method != "GET":
        raise HttpError(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"a WebSocket handshake uses GET, not {request.method}",
            [("Allow", "GET")],
        )
    if not is_upgrade(request):
        raise HttpError(
            HTTPStatus.UPGRADE_REQUIRED,
            UPGRADE_REQUIRED_MESSAGE,
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
            ],
        )
    if "upgrade" not in headers.tokens("Connection"):
        raise _bad_request("a WebSocket handshake needs 'Connection: Upgrade'")
    if headers.get_all("Sec-WebSocket-Version") != [WEBSOCKET_VERSION]:
        raise HttpError(
            HTTPStatus.UPGRADE_REQUIRED,
            f"only WebSocket version {WEBSOCKET_VERSION} (RFC 6455) is supported",
            [("Sec-WebSocket-Version", WEBSOCKET_VERSION)],
        )
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1 or not _is_valid_key(keys[0]):
        raise _bad_request("Sec-WebSocket-Key must be one base64-encoded 16-byte value")
    # Whatever follows the head of an upgrade request is read as WebSocket frames, so a body
    # would be misread as frames; websockets refuses it for the same reason.
    if request.body_length != 0:
        raise _bad_request("a WebSocket handshake has no request body")
    origin = headers.get("Origin")
    if not origin_allowed(origin, headers.get("Host"), allowed_origins):
        if origin is not None and origin.strip().lower() == "null":
            raise HttpError(HTTPStatus.FORBIDDEN, NULL_ORIGIN_MESSAGE)
        raise HttpError(
            HTTPStatus.FORBIDDEN,
            "pages from this origin may not open a WebSocket here "
            "(start the server with --allow-origin to allow them)",
        )
    return accept_key(keys[0])


def origin_allowed(origin: str | None, host: str | None, allowed_origins: frozenset[str]) -> bool:
    """Whether a page from `origin` may open a WebSocket on the server reached as `host`.

    No Origin (a non-browser client), "*" in the allowed set, or the origin itself in the set
    (compared lower-cased, without a trailing "/") is allowed. Otherwise an http(s) origin is
    allowed when its host name equals the Host header's, whatever the two ports: the test page
    served on one port may open a socket on another port of the same host. Names are compared
    exactly after lower-casing, never by suffix or pattern; anything that does not parse
    cleanly, including "null", userinfo and non-ASCII names, is refused unless listed.
    """
    if origin is None:
        return True
    allowed = {_normalize_origin(entry) for entry in allowed_origins}
    if "*" in allowed or _normalize_origin(origin) in allowed:
        return True
    if host is None:
        return False
    matched = _ORIGIN_RE.fullmatch(origin.removesuffix("/"))
    if matched is None or matched.group(1).lower() not in _SAME_HOST_SCHEMES:
        return False
    origin_authority = parse_authority(matched.group(2))
    host_authority = parse_authority(host)
    if origin_authority is None or host_authority is None:
        return False
    return origin_authority[0] == host_authority[0]


def select_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The subprotocol to answer with, from the client's `Sec-WebSocket-Protocol` values.

    The first offered name the server supports (names compare exactly: RFC 6455 makes them
    case-sensitive), or with "*" supported the first offered name; None when none matches or
    nothing is offered. Names that are not tokens are never selected.
    """
    if not supported:
        return None
    any_name = ANY_SUBPROTOCOL in supported
    for value in offered:
        for part in value.split(","):
            name = part.strip()
            if _TOKEN_RE.fullmatch(name) and (any_name or name in supported):
                return name
    return None


@dataclass(frozen=True, slots=True)
class Accepted:
    """An upgrade request accepted: the Sec-WebSocket-Accept value and what was negotiated."""

    accept: str
    subprotocol: str | None = None
    deflate: deflate.Agreement | None = None

    def response(self) -> bytes:
        """The 101 response to send."""
        return response_101(
            self.accept,
            subprotocol=self.subprotocol,
            extensions=None if self.deflate is None else self.deflate.response,
        )


def negotiate(
    request: Request, accept: str, *, subprotocols: Sequence[str] = (), compression: bool = True
) -> Accepted:
    """What to answer a valid upgrade request (see `check_upgrade`) with: the subprotocol
    (`select_subprotocol`), and permessage-deflate when `compression` is on and offered."""
    headers = request.headers
    agreement = None
    if compression:
        agreement = deflate.negotiate(headers.get_all("Sec-WebSocket-Extensions"))
    return Accepted(
        accept,
        select_subprotocol(headers.get_all("Sec-WebSocket-Protocol"), subprotocols),
        agreement,
    )


def response_101(
    accept: str, *, subprotocol: str | None = None, extensions: str | None = None
) -> bytes:
    """The 101 response that completes the handshake; frames may follow it at once."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept}",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _bad_request(message: str) -> HttpError:
    return HttpError(HTTPStatus.BAD_REQUEST, message)


def _is_valid_key(key: str) -> bool:
    try:
        raw = base64.b64decode(key.encode("latin-1"), validate=True)
    except binascii.Error:
        return False
    return len(raw) == WEBSOCKET_KEY_BYTES


def _normalize_origin(origin: str) -> str:
    return origin.lower().removesuffix("/")
