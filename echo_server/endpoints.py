"""Plain HTTP on the WebSocket port: `/notify` (to every chat client) and `/stats`.

A request that is not an upgrade and names one of these paths is answered here with a short
JSON response; everything else goes through the upgrade checks (and a plain request to any other
path keeps getting 426). This module decides answers only: upgrade.py reads the request and its
body and sends the bytes back.

`/notify` is accepted from loopback; from any other address only with
`Authorization: Bearer <token>` matching `--notify-token`, so that another machine cannot make
every open page show a message. Browsers are the other way in, so two browser attacks are shut
too: a page of another web site posting to /notify (cross-site request forgery: refused by its
Origin or Sec-Fetch-Site header), and a page that points its own DNS name at 127.0.0.1 (DNS
rebinding: from loopback, the Host header must name this machine, which such a page cannot send).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from echo_server.handshake import HandshakeError, Headers, Request, http_response, origin_allowed

if TYPE_CHECKING:
    from echo_server.server import Server

JSON = "application/json"
NOTIFY = "/notify"
STATS = "/stats"
PATHS = frozenset((NOTIFY, STATS))


def is_loopback(host: str) -> bool:
    """127.0.0.0/8 and ::1, also as an IPv4-mapped address on a dual-stack socket."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def host_name(host_header: str | None) -> str:
    """The name part of a Host header, lower-cased: "[::1]:8001" -> "::1", "Pi:80" -> "pi"."""
    if not host_header:
        return ""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")].lower()
    return host_header.rsplit(":", 1)[0].lower()


def names_this_machine(host_header: str | None) -> bool:
    """Whether a Host header names this machine: localhost, a loopback address, its host name."""
    name = host_name(host_header)
    own_names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
    return name in own_names or is_loopback(name)


def bearer_token_matches(authorization: str | None, token: str | None) -> bool:
    if not token or not authorization:
        return False
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def notify_allowed(
    peer_host: str, host_header: str | None, authorization: str | None, token: str | None
) -> bool:
    """From loopback, addressed by one of this machine's names; or with the bearer token."""
    if is_loopback(peer_host) and names_this_machine(host_header):
        return True
    return bearer_token_matches(authorization, token)


def from_another_site(headers: Headers, allowed_origins: frozenset[str]) -> bool:
    """A browser sent this for a page the upgrade rules would not let in (see handshake.py)."""
    origin = headers.get("Origin")
    if origin is not None:
        return not origin_allowed(origin, headers.get("Host"), allowed_origins)
    # Without an Origin (a GET from an <img>, say), browsers still say where it came from.
    return headers.get("Sec-Fetch-Site") == "cross-site"


def notify_message(request: Request, body: bytes) -> str:
    """The message to send: the POST body, or `msg` of a GET's query; 400 if there is none."""
    if request.method == "POST":
        try:
            message = body.decode()
        except UnicodeDecodeError:
            raise HandshakeError(400, "The message must be UTF-8 text.") from None
        # `echo text | curl --data-binary @- ...` ends the body with the line's newline.
        message = message.removesuffix("\n").removesuffix("\r")
    else:
        values = parse_qs(request.query, keep_blank_values=True).get("msg", [])
        message = values[0] if len(values) == 1 else ""
    if not message:
        raise HandshakeError(400, "No message: POST it as the body, or GET /notify?msg=TEXT.")
    return message


def answer(server: Server, request: Request, body: bytes, peer_host: str) -> bytes:
    """The complete HTTP response to a plain request for one of `PATHS`."""
    handlers: dict[str, tuple[tuple[str, ...], Callable[[], Any]]] = {
        NOTIFY: (("GET", "POST"), lambda: notify(server, request, body, peer_host)),
        STATS: (("GET",), server.statistics),
    }
    methods, handler = handlers[request.path]
    if request.method not in methods:
        raise HandshakeError(405, "Method not allowed.", [("Allow", ", ".join(methods))])
    content = json.dumps(handler(), indent=1).encode() + b"\n"
    return http_response(200, content, JSON, [("Cache-Control", "no-store")])


def notify(server: Server, request: Request, body: bytes, peer_host: str) -> dict[str, int]:
    headers = request.headers
    settings = server.settings
    if from_another_site(headers, settings.allowed_origins):
        raise HandshakeError(403, "/notify does not take requests from pages of other sites.")
    if not notify_allowed(
        peer_host, headers.get("Host"), headers.get("Authorization"), settings.notify_token
    ):
        raise HandshakeError(
            403, "/notify is for this machine, or for clients with the --notify-token."
        )
    return {"delivered": server.notify(notify_message(request, body))}
