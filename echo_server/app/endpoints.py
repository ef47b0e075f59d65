"""Plain HTTP on the WebSocket port: `/notify` (to every chat client), `/publish` (points of a
series), `/stats`, `/refusal`, `/health` and `/metrics`.

A request that is not an upgrade and names one of these paths is answered here with a short
response; everything else goes through the upgrade checks (and a plain request to any other
path keeps getting 426). `Endpoints` is the server's `PlainHttp` handler: it decides answers
only, upgrade.py reads the request and its body and sends the bytes back.

`/notify` and `/publish` are accepted from loopback; from any other address only with
`Authorization: Bearer <token>` matching `--notify-token`, so that another machine cannot make
every open page show a message or a number. Browsers are the other way in, so two browser
attacks are shut too: a page of another web site posting to them (cross-site request forgery:
refused by its Origin or Sec-Fetch-Site header), and a page that points its own DNS name at
127.0.0.1 (DNS rebinding: from loopback, the Host header must name this machine, which such a
page cannot send). `/stats`, `/refusal`, `/health` and `/metrics` only read, and answer anyone
(`/refusal` only with the caller's own refusal, and with CORS for pages of this host).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs

from echo_server.addresses import is_loopback
from echo_server.app.machinenames import MachineNames
from echo_server.app.publish import PUBLISH, is_publish_path, points_from_request
from echo_server.app.refusals import Refusals
from echo_server.app.series import DEMO, Point, SeriesStore
from echo_server.protocol.handshake import origin_allowed
from echo_server.protocol.http import Headers, HttpError, Request, http_response
from echo_server.settings import Settings

log = logging.getLogger(__name__)

JSON = "application/json"
NOTIFY = "/notify"
STATS = "/stats"
REFUSAL = "/refusal"
HEALTH = "/health"
METRICS = "/metrics"
PATHS = frozenset((NOTIFY, STATS, REFUSAL, HEALTH, METRICS, PUBLISH))
NO_STORE = [("Cache-Control", "no-store")]


class EndpointHost(Protocol):
    """What the endpoints need of the application."""

    settings: Settings
    machine_names: MachineNames
    refusals: Refusals
    series: SeriesStore

    @property
    def stopping(self) -> bool: ...

    def notify(self, message: str) -> int: ...
    def publish_points(self, points: Sequence[Point]) -> int: ...
    def statistics(self) -> dict[str, Any]: ...
    def metrics(self) -> tuple[bytes, str]:
        """The metrics as text, and its content type."""
        ...


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
            raise HttpError(400, "The message must be UTF-8 text.") from None
        # `echo text | curl --data-binary @- ...` ends the body with the line's newline.
        message = message.removesuffix("\n").removesuffix("\r")
    else:
        values = parse_qs(request.query, keep_blank_values=True).get("msg", [])
        message = values[0] if len(values) == 1 else ""
    if not message:
        raise HttpError(400, "No message: POST it as the body, or GET /notify?msg=TEXT.")
    return message


def json_response(value: Any, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    content = json.dumps(value, indent=1, ensure_ascii=False).encode() + b"\n"
    return http_response(status, content, JSON, [*NO_STORE, *headers])


def same_host_cors(request: Request, allowed_origins: frozenset[str]) -> list[tuple[str, str]]:
    """CORS headers letting a page of this host (or an allowed origin) read the answer."""
    origin = request.headers.get("Origin")
    if origin is None or not origin_allowed(origin, request.headers.get("Host"), allowed_origins):
        return [("Vary", "Origin")]
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]


class Endpoints:
    """The plain HTTP paths of the WebSocket port, for the application `app`."""

    def __init__(self, app: EndpointHost) -> None:
        self.app = app

    def handles(self, request: Request) -> bool:
        return request.path in PATHS or is_publish_path(request.path)

    def answer(self, request: Request, body: bytes, peer: str) -> bytes:
        """The complete HTTP response to a plain request for one of `PATHS`."""
        handlers: dict[str, tuple[tuple[str, ...], Callable[[], bytes]]] = {
            NOTIFY: (("GET", "POST"), lambda: self.notify(request, body, peer)),
            PUBLISH: (("GET", "POST"), lambda: self.publish(request, body, peer)),
            STATS: (("GET",), lambda: json_response(self.app.statistics())),
            REFUSAL: (("GET",), lambda: self.refusal(request, peer)),
            HEALTH: (("GET",), self.health),
            METRICS: (("GET",), self.metrics),
        }
        path = PUBLISH if is_publish_path(request.path) else request.path
        methods, handler = handlers[path]
        if request.method not in methods:
            raise HttpError(405, "Method not allowed.", [("Allow", ", ".join(methods))])
        return handler()

    def refusal(self, request: Request, peer: str) -> bytes:
        """The caller's own last refusal, if under a minute old: what its page could not see.
        Readable by pages of this host (CORS), which are the ones that could not see it."""
        cors = same_host_cors(request, self.app.settings.allowed_origins)
        refusals = self.app.refusals
        last = refusals.last(peer)
        if last is None:
            return json_response({"refused": False}, headers=cors)
        return json_response(
            {
                "refused": True,
                "status": last.status,
                "message": last.message,
                "path": last.path,
                "age_s": round(refusals.age_s(last), 1),
            },
            headers=cors,
        )

    def check_caller(self, request: Request, peer: str, path: str) -> None:
        """403 unless the caller may push to every page: see the module docstring."""
        headers = request.headers
        settings = self.app.settings
        if from_another_site(headers, settings.allowed_origins):
            raise HttpError(403, f"{path} does not take requests from pages of other sites.")
        if not notify_allowed(
            self.app.machine_names,
            peer,
            headers.get("Host"),
            headers.get("Authorization"),
            settings.notify_token,
        ):
            raise HttpError(
                403, f"{path} is for this machine, or for clients with the --notify-token."
            )

    def notify(self, request: Request, body: bytes, peer: str) -> bytes:
        self.check_caller(request, peer, NOTIFY)
        return json_response({"delivered": self.app.notify(notify_message(request, body))})

    def publish(self, request: Request, body: bytes, peer: str) -> bytes:
        """Points of one series or several: all of them are published, or none (400, 409)."""
        self.check_caller(request, peer, PUBLISH)
        points = points_from_request(request, body, round(time.time(), 3))
        if any(point.series == DEMO for point in points):
            raise HttpError(409, f"The series {DEMO!r} is the built-in one: choose another name.")
        store = self.app.series
        new = {point.series for point in points if store.get(point.series) is None}
        if len(new) > 0 and not store.has_room_for_new(len(new)):
            raise HttpError(
                409,
                f"Too many series: this server keeps {store.max_series} (--max-series); "
                "publish to one it has, or restart it to forget them.",
            )
        delivered = self.app.publish_points(points)
        return json_response(
            {"published": [point.series for point in points], "delivered": delivered}
        )

    def health(self) -> bytes:
        """200 while serving (the answer comes from the loop, so it turns); 503 while stopping."""
        if self.app.stopping:
            return json_response({"status": "stopping"}, 503)
        return json_response({"status": "ok"})

    def metrics(self) -> bytes:
        text, content_type = self.app.metrics()
        return http_response(200, text, content_type, NO_STORE)
