"""Plain HTTP on the WebSocket port: `/notify` (to every chat client) and `/stats`.

A request that is not an upgrade and names one of these paths is answered here with a short
JSON response; everything else goes through the upgrade checks (and a plain request to any other
path keeps getting 426). This module decides answers only: upgrade.py reads the request and its
body and sends the bytes back.

`/notify` is accepted from loopback; from any other address only with
`Authorization: Bearer <token>` matching `--notify-token`, so that a page on the LAN or another
machine cannot make every open page show a message.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from echo_server.handshake import HandshakeError, Request, http_response

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


def notify_allowed(peer_host: str, authorization: str | None, token: str | None) -> bool:
    if is_loopback(peer_host):
        return True
    if not token or not authorization:
        return False
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def notify_message(request: Request, body: bytes) -> str:
    """The message to send: the POST body, or `msg` of a GET's query; 400 if there is none."""
    if request.method == "POST":
        try:
            message = body.decode()
        except UnicodeDecodeError:
            raise HandshakeError(400, "The message must be UTF-8 text.") from None
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
    if not notify_allowed(
        peer_host, request.headers.get("Authorization"), server.settings.notify_token
    ):
        raise HandshakeError(
            403, "/notify is for this machine, or for clients with the --notify-token."
        )
    return {"delivered": server.notify(notify_message(request, body))}
