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

This machine's names are `MachineNames`: those known without asking a resolver (localhost, the
loopback addresses, the host name) at once, and the fully qualified name once a daemon thread
has looked it up. Looking it up in the loop would stall every client for as long as a slow
resolver takes (seconds), once per request.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from echo_server.core.loop import Loop
from echo_server.protocol.handshake import (
    HandshakeError,
    Headers,
    Request,
    http_response,
    origin_allowed,
)

if TYPE_CHECKING:
    from echo_server.core.server import Server

log = logging.getLogger(__name__)

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


def names_known_without_dns() -> frozenset[str]:
    """localhost and the host name: `gethostname` is a system call, it asks no resolver."""
    return frozenset({"localhost", socket.gethostname().lower()})


class MachineNames:
    """The names a Host header may use for this machine; none of them looked up in the loop.

    `lookup_fqdn` (socket.getfqdn; tests pass their own) may block for as long as the resolver
    likes: it runs in a daemon thread, one at a time, started by `refresh()`. Its answer is
    swapped in whole (one assignment, atomic), so `allows` never waits and never sees half a set.
    """

    def __init__(self, lookup_fqdn: Callable[[], str] = socket.getfqdn) -> None:
        self._lookup_fqdn = lookup_fqdn
        self.names = names_known_without_dns()
        self._lookup: threading.Thread | None = None

    @classmethod
    def started(cls, loop: Loop, refresh_s: float) -> MachineNames:
        """Made at start: looking the name up now, and again every `refresh_s`."""
        names = cls()
        names.refresh_every(loop, refresh_s)
        return names

    def allows(self, host_header: str | None) -> bool:
        """Whether a Host header names this machine: localhost, a loopback address, its names."""
        name = host_name(host_header)
        return name in self.names or is_loopback(name)

    def refresh(self) -> bool:
        """Start a lookup in a daemon thread, unless one is still running; never blocks."""
        if self._lookup is not None and self._lookup.is_alive():
            return False  # a resolver that hangs must not pile up threads
        self._lookup = threading.Thread(target=self._look_up, name="machine-names", daemon=True)
        self._lookup.start()
        return True

    def refresh_every(self, loop: Loop, interval_s: float) -> None:
        """Refresh now, and from a loop timer every `interval_s` (a DHCP lease may rename us)."""

        def again() -> None:
            self.refresh_every(loop, interval_s)

        self.refresh()
        loop.call_later(interval_s, again)

    def _look_up(self) -> None:
        """In the thread: the blocking lookup, then one assignment."""
        try:
            fqdn = self._lookup_fqdn().lower()
        except Exception as error:  # getfqdn does not raise; a lookup passed in might
            log.warning("looking up this machine's name failed: %s", error)
            return
        self.names = names_known_without_dns() | ({fqdn} if fqdn else set())


def bearer_token_matches(authorization: str | None, token: str | None) -> bool:
    if not token or not authorization:
        return False
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def notify_allowed(
    names: MachineNames,
    peer_host: str,
    host_header: str | None,
    authorization: str | None,
    token: str | None,
) -> bool:
    """From loopback, addressed by one of this machine's names; or with the bearer token."""
    if is_loopback(peer_host) and names.allows(host_header):
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
        server.machine_names,
        peer_host,
        headers.get("Host"),
        headers.get("Authorization"),
        settings.notify_token,
    ):
        raise HandshakeError(
            403, "/notify is for this machine, or for clients with the --notify-token."
        )
    return {"delivered": server.notify(notify_message(request, body))}
