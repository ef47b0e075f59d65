"""`echo-server publish URL SERIES VALUE`: put a number on every page's Live tab, from a shell.

A small HTTP client (urllib) for `POST URL/publish/SERIES`: the value is checked here first (a
finite number, a valid series name: otherwise a usage error, exit 2), then sent as JSON with its
unit, if any. Exit status 0 when the server took it (200), 1 with one line saying why when it
did not (its status and message) or could not be reached. `URL` is the WebSocket server's
(`http://HOST:8001`, or `ws://HOST:8001/`, which means the same server).

From another machine the server wants its `--notify-token`: give it with `--token`, or in the
environment as ECHO_SERVER_NOTIFY_TOKEN (the same variable the server reads, so one environment
file serves both). It is never printed.

Not here: what the server does with the point (app/publish.py, app/series.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit, urlunsplit

from echo_server.app.series import NAME_RULE, check_unit, valid_name
from echo_server.arguments import header_token, seconds

PROG = "echo-server publish"
TOKEN_VARIABLE = "ECHO_SERVER_NOTIFY_TOKEN"
DEFAULT_TIMEOUT_S = 10.0
MAX_ERROR_CHARS = 300
SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


def server_url(text: str) -> str:
    """The server's base URL, as http(s)://HOST:PORT (a ws:// or wss:// URL is taken too)."""
    parts = urlsplit(text)
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http:// or ws:// URL: {text!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def series_name(text: str) -> str:
    if not valid_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a series name: {NAME_RULE}")
    return text


def unit_text(text: str) -> str:
    try:
        return check_unit(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def finite_value(text: str) -> float | int:
    """A number as JSON writes it: 21.7, -3, 1e3; not nan, inf or 1_000."""
    try:
        value = json.loads(text.strip())
    except ValueError:
        value = None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", type=server_url, help="the WebSocket server, http://HOST:8001")
    parser.add_argument("series", type=series_name, help="the series' name, e.g. temperature")
    parser.add_argument("value", type=finite_value, help="a number, e.g. 21.7")
    parser.add_argument(
        "--unit", type=unit_text, default="", help="the unit shown on the axis, e.g. °C"
    )
    parser.add_argument(
        "--token",
        type=header_token,
        help=f"the server's --notify-token, from another machine (or ${TOKEN_VARIABLE})",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"give up after S seconds (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.set_defaults(log_level="warning")  # cli.main configures logging for every command


def request_for(args: argparse.Namespace) -> urllib.request.Request:
    body: dict[str, object] = {"value": args.value}
    if args.unit:
        body["unit"] = args.unit
    headers = {"Content-Type": "application/json"}
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(
        f"{args.url}/publish/{quote(args.series)}",
        data=json.dumps(body, ensure_ascii=False).encode(),
        headers=headers,
        method="POST",
    )


def run(args: argparse.Namespace) -> int:
    """Publish one point; 0 when the server took it, 1 (with one line on stderr) otherwise."""
    # No proxy: the server is on this network, and a proxy set for the internet would not
    # reach it (or would see the token).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request_for(args), timeout=args.timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        message = error.read(MAX_ERROR_CHARS).decode(errors="replace").strip().splitlines()
        said = f": {message[0]}" if message else ""
        print(f"{PROG}: error: {error.code} {error.reason}{said}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        print(f"{PROG}: error: cannot reach {args.url}: {reason}", file=sys.stderr)
        return 1
    return 0
