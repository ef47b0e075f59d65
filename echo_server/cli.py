"""The command line: `echo-server ws | web | demo | client | publish`, as `python -m echo_server`.

This module turns arguments into settings, prints where to connect (with --lan, a QR code of the
page's address on a terminal, and its mDNS name once announced), and runs a server until SIGINT
or SIGTERM. It holds no protocol logic. A bad option is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib.resources
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echo_server import client, defaults, demo, mdns, netinfo, publisher, qr
from echo_server.addresses import url_host
from echo_server.app.app import App
from echo_server.arguments import (
    OneLineParser,
    Repeatable,
    apply_environment,
    byte_size,
    existing_dir,
    existing_file,
    header_token,
    on_off,
    port_number,
    positive_int,
    rate,
    seconds,
    subprotocol_name,
)
from echo_server.cluster import node, redisbus, workers
from echo_server.core.listen import make_tls_context
from echo_server.core.loop import BEST_SELECTOR, SELECTORS, Loop
from echo_server.settings import Settings
from echo_server.web import Limits, PageServer

PROG = "echo-server"
LOG_LEVELS = ("debug", "info", "warning", "error")
# The page ships inside the package (found the same way installed or in a checkout).
DEFAULT_ROOT = Path(str(importlib.resources.files("echo_server") / "www"))


@dataclass(frozen=True)
class Option:
    """One command-line option: its flag and what argparse needs to know of it."""

    flag: str
    help: str
    convert: Callable[[str], Any] | None = None  # argparse's `type`
    default: Any = None
    metavar: str | None = None
    action: str | type[argparse.Action] | None = None
    choices: Sequence[str] | None = None
    nargs: str | None = None
    const: Any = None
    dest: str | None = None

    def add_to(self, group: argparse._ActionsContainer) -> None:
        extra: dict[str, Any] = {
            key: value
            for key, value in (
                ("type", self.convert),
                ("metavar", self.metavar),
                ("action", self.action),
                ("choices", self.choices),
                ("nargs", self.nargs),
                ("const", self.const),
                ("dest", self.dest),
            )
            if value is not None
        }
        group.add_argument(self.flag, default=self.default, help=self.help, **extra)


def bind_options(port: int, what: str) -> tuple[Option, ...]:
    return (
        Option("--host", f"address to listen on (default {defaults.LOCAL_HOST})"),
        Option("--port", f"{what} port, 0 = any free (default {port})", port_number, port, "N"),
        Option(
            "--lan",
            "listen on every interface and print the URLs other machines can open",
            default=False,
            action="store_true",
        ),
        Option(
            "--log-level",
            "how much to log on stderr (default info)",
            default="info",
            choices=LOG_LEVELS,
        ),
    )


def ws_port_option(what: str) -> Option:
    return Option(
        "--ws-port", f"{what} (default {defaults.WS_PORT})", port_number, defaults.WS_PORT, "N"
    )


def redis_url(text: str) -> str:
    """A redis:// URL, checked at once so that a typo is a usage error, not a log line."""
    try:
        redisbus.parse_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


# The WebSocket server's options (`ws`, and `demo`, which passes them on to its `ws`).
WS_OPTIONS = (
    Option(
        "--max-connections",
        f"answer 503 past N open connections (default {defaults.MAX_CONNECTIONS})",
        positive_int,
        defaults.MAX_CONNECTIONS,
        "N",
    ),
    Option(
        "--handshake-timeout",
        f"close sockets not upgraded in S s (default {defaults.HANDSHAKE_TIMEOUT_S:g})",
        seconds,
        defaults.HANDSHAKE_TIMEOUT_S,
        "S",
    ),
    Option(
        "--ping-interval",
        f"ping each client every S s (default {defaults.PING_INTERVAL_S:g})",
        seconds,
        defaults.PING_INTERVAL_S,
        "S",
    ),
    Option(
        "--ping-timeout",
        f"close with 1011 when a pong is S s late (default {defaults.PING_TIMEOUT_S:g})",
        seconds,
        defaults.PING_TIMEOUT_S,
        "S",
    ),
    Option(
        "--close-timeout",
        f"drop a client not answering our close in S s (default {defaults.CLOSE_TIMEOUT_S:g})",
        seconds,
        defaults.CLOSE_TIMEOUT_S,
        "S",
    ),
    Option(
        "--max-message-size",
        "close with 1009 past this message size, fragments added up (default 1MiB)",
        byte_size,
        defaults.MAX_MESSAGE_BYTES,
        "BYTES",
    ),
    Option(
        "--write-limit",
        "stop reading a client whose unsent data passes this (default 1MiB)",
        byte_size,
        defaults.WRITE_LIMIT_BYTES,
        "BYTES",
    ),
    Option(
        "--rate-limit",
        "close a /chat client sending over N messages/s with 1008; 0 = no limit "
        f"(default {defaults.RATE_LIMIT_PER_S:g})",
        rate,
        defaults.RATE_LIMIT_PER_S,
        "N",
    ),
    Option(
        "--max-series",
        "keep at most N series published to /publish, besides the demo; more is 409 "
        f"(default {defaults.MAX_SERIES})",
        positive_int,
        defaults.MAX_SERIES,
        "N",
    ),
    Option(
        "--allow-origin",
        "also accept browser pages from ORIGIN (repeatable; * accepts any, null a file)",
        default=[],
        metavar="ORIGIN",
        action=Repeatable,
    ),
    Option(
        "--subprotocol",
        "speak subprotocol NAME: the first the client offers that is listed is chosen "
        "(repeatable; * accepts whatever the client offers first)",
        subprotocol_name,
        [],
        "NAME",
        Repeatable,
    ),
    Option(
        "--compression",
        "permessage-deflate when a client offers it (default on)",
        on_off,
        defaults.COMPRESSION,
        "on|off",
    ),
    Option(
        "--notify-token",
        "let other machines POST /notify with 'Authorization: Bearer TOKEN'",
        header_token,
        metavar="TOKEN",
    ),
    Option("--certfile", "TLS certificate, for wss://", existing_file, metavar="PEM"),
    Option("--keyfile", "TLS private key", existing_file, metavar="PEM"),
    Option(
        "--redis",
        "share chat, tick and stream with other servers through redis://HOST:PORT/DB",
        redis_url,
        metavar="URL",
    ),
    Option(
        "--workers",
        "run N server processes sharing the port, one core each; Linux (default 1)",
        workers.worker_count,
        1,
        "N",
    ),
    Option(
        "--selector",
        f"the readiness API: {', '.join(SELECTORS)} (default {BEST_SELECTOR}, the best here)",
        choices=tuple(SELECTORS),
    ),
)

# The page server's limits (`web`).
WEB_OPTIONS = (
    Option(
        "--max-connections-per-address",
        "connections one client address may hold, of "
        f"{defaults.WEB_MAX_CONNECTIONS}; raise it when many share one address (NAT) "
        f"(default {defaults.WEB_MAX_CONNECTIONS_PER_ADDRESS})",
        positive_int,
        defaults.WEB_MAX_CONNECTIONS_PER_ADDRESS,
        "N",
    ),
    Option(
        "--request-timeout",
        "close a connection whose request head is not complete in S s, or that "
        f"takes no byte of a response for S s (default {defaults.WEB_REQUEST_TIMEOUT_S:g})",
        seconds,
        defaults.WEB_REQUEST_TIMEOUT_S,
        "S",
    ),
    Option(
        "--keep-alive-timeout",
        "close a connection idle for S s between requests "
        f"(default {defaults.WEB_KEEP_ALIVE_TIMEOUT_S:g})",
        seconds,
        defaults.WEB_KEEP_ALIVE_TIMEOUT_S,
        "S",
    ),
)

# The page server's name on the LAN (`web`, and `demo`, which passes it on to its `web`).
MDNS_OPTIONS = (
    Option(
        "--mdns",
        "announce the page as NAME.local (on by default with --lan; "
        f"NAME defaults to {defaults.MDNS_NAME}; a taken name gets a number)",
        mdns.mdns_name,
        None,
        "NAME",
        nargs="?",
        const=defaults.MDNS_NAME,
    ),
    # False, not "": argparse would run a text default through the check of --mdns.
    Option(
        "--no-mdns", "do not announce a .local name", dest="mdns", const=False, action="store_const"
    ),
)

ENVIRONMENT_EPILOG = (
    "Every option can also be set in the environment, as ECHO_SERVER_<OPTION> "
    "(ECHO_SERVER_MAX_CONNECTIONS=500, ECHO_SERVER_LAN=1); the command line wins."
)


def add_options(
    parser: argparse.ArgumentParser, options: Sequence[Option], title: str | None = None
) -> None:
    group = parser.add_argument_group(title) if title else parser
    for option in options:
        option.add_to(group)


def build_parser(environ: dict[str, str] | None = None) -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="WebSocket echo server and its test page.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    ws = commands.add_parser("ws", help="run the WebSocket server", epilog=ENVIRONMENT_EPILOG)
    add_options(ws, bind_options(defaults.WS_PORT, "WebSocket"))
    add_options(ws, WS_OPTIONS, "WebSocket limits and timeouts")
    workers.add_worker_options(ws)

    web = commands.add_parser("web", help="run the page server", epilog=ENVIRONMENT_EPILOG)
    add_options(web, bind_options(defaults.WEB_PORT, "page"))
    workers.add_control_option(web)  # given by `demo`; run_web: workers.follow_parent(...)
    add_options(web, [ws_port_option("the WebSocket port the page connects to")])
    web.add_argument("--root", type=existing_dir, default=DEFAULT_ROOT, help="folder to serve")
    add_options(web, MDNS_OPTIONS, "a .local name on the LAN")
    add_options(web, WEB_OPTIONS, "page server limits and timeouts")

    demo = commands.add_parser("demo", help="run both servers", epilog=ENVIRONMENT_EPILOG)
    add_options(demo, bind_options(defaults.WEB_PORT, "page"))
    add_options(demo, [ws_port_option("WebSocket port")])
    add_options(demo, MDNS_OPTIONS, "a .local name on the LAN")
    add_options(demo, WS_OPTIONS, "WebSocket limits and timeouts")

    client.add_arguments(
        commands.add_parser("client", help="a terminal WebSocket client, like wscat")
    )
    publisher.add_arguments(
        commands.add_parser(
            "publish",
            help="put a number on every page's Live tab: publish URL SERIES VALUE",
            description="POST a point to URL/publish/SERIES (URL: the WebSocket server).",
        )
    )
    for command in (ws, web, demo):
        apply_environment(command, dict(os.environ if environ is None else environ))
    return parser


def ws_settings(args: argparse.Namespace) -> Settings:
    return Settings(
        host=bind_host(args),
        port=args.port,
        max_connections=args.max_connections,
        handshake_timeout_s=args.handshake_timeout,
        ping_interval_s=args.ping_interval,
        ping_timeout_s=args.ping_timeout,
        close_timeout_s=args.close_timeout,
        max_message_bytes=args.max_message_size,
        write_limit_bytes=args.write_limit,
        rate_limit_per_s=args.rate_limit,
        max_series=args.max_series,
        allowed_origins=frozenset(origin.rstrip("/").lower() for origin in args.allow_origin),
        subprotocols=tuple(args.subprotocol),
        compression=args.compression,
        certfile=args.certfile,
        keyfile=args.keyfile,
        notify_token=args.notify_token,
        redis_url=args.redis,
        selector=args.selector,
        reuse_port=args.worker_index is not None,
        worker_index=args.worker_index or 0,
        workers=args.workers,
    )


def bind_host(args: argparse.Namespace) -> str:
    if args.host is not None:
        return str(args.host)
    return netinfo.any_address() if args.lan else defaults.LOCAL_HOST


def announce(what: str, scheme: str, host: str, port: int, lan: bool, *, note: str = "") -> None:
    """Print the ready line (tests and people read it) and, with --lan, the LAN URLs."""
    url = f"{scheme}://{url_host(host)}:{port}/"
    print(f"echo_server: {what} listening on {url}" + (f" ({note})" if note else ""), flush=True)
    if lan:
        urls = [f"{scheme}://{url_host(a)}:{port}/" for a in netinfo.lan_addresses()]
        print("  open from other machines: " + ("  ".join(urls) or "(no LAN address found)"))
        print("  anyone on this network can connect; see docs/security.md", flush=True)


def print_qr(url: str | None) -> None:
    """The page's LAN address as a QR code, for a phone: on a terminal only (in a log or a
    journal the drawing would be noise)."""
    if url is None or not sys.stdout.isatty():
        return
    print(f"  scan to open {url} on a phone:")
    for line in qr.terminal_lines(url):
        print("  " + line)
    sys.stdout.flush()


def mdns_wanted(args: argparse.Namespace) -> str | None:
    """The name to announce: --mdns NAME, or the default with --lan; None for none."""
    if args.mdns is False or not args.lan:
        return None
    return str(args.mdns or defaults.MDNS_NAME)


def start_announcer(
    args: argparse.Namespace, loop: Loop, server: PageServer
) -> mdns.Announcer | None:
    name = mdns_wanted(args)
    if name is None:
        return None

    def announced(taken: str) -> None:
        server.mdns_url = f"http://{taken}.local:{server.port}/"
        print(f"  on this network also as {server.mdns_url} (mDNS)", flush=True)

    def failed(reason: str) -> None:
        print(f"  no .local name (mDNS): {reason}", flush=True)

    announcer = mdns.Announcer(
        loop,
        name,
        port=server.port,
        ws_port=args.ws_port,
        addresses=netinfo.lan_addresses(),
        on_announced=announced,
        on_failed=failed,
    )
    announcer.start()
    return announcer


def run_ws(args: argparse.Namespace, argv: Sequence[str]) -> int:
    settings = ws_settings(args)
    scheme = "wss" if settings.certfile else "ws"
    if args.workers > 1 and args.worker_index is None:
        # The supervisor serves nothing: each worker is this same command plus worker options.
        note = f"{args.workers} workers"
        if settings.certfile and settings.keyfile:
            make_tls_context(settings.certfile, settings.keyfile)  # a bad key: one error, here
        worker_argv = workers.without_control_option(argv)
        return workers.supervise(
            settings.host,
            settings.port,
            count=args.workers,
            command=[sys.executable, "-m", "echo_server", *worker_argv, "--host", settings.host],
            stop_timeout_s=settings.close_timeout_s,
            on_ready=lambda port: announce(
                "WebSocket server", scheme, settings.host, port, args.lan, note=note
            ),
            control_fd=args.control_fd,
        )
    app = App(settings)
    if settings.redis_url:
        node.join(app, settings.redis_url)
    server = app.server
    server.listen()  # a port in use is one error line, here, before anyone is told it is ready
    if args.worker_index is not None:
        return workers.run_worker(server, args.worker_index, args.control_fd)
    workers.follow_parent(server.loop, args.control_fd, server.shutdown)  # under `demo`
    return server.serve_forever_until_signalled(
        on_ready=lambda: announce("WebSocket server", scheme, settings.host, server.port, args.lan)
    )


def run_web(args: argparse.Namespace) -> int:
    limits = Limits(
        max_connections_per_address=args.max_connections_per_address,
        request_timeout_s=args.request_timeout,
        keep_alive_timeout_s=args.keep_alive_timeout,
    )
    loop = Loop()
    try:
        server = PageServer(
            bind_host(args),
            args.port,
            root=args.root,
            ws_port=args.ws_port,
            loop=loop,
            limits=limits,
            lan=args.lan,
        )
    except BaseException:
        loop.close()
        raise
    server.qr_svg()  # made now, before the loop runs, rather than at the first request
    workers.follow_parent(loop, args.control_fd, server.shutdown)  # under `demo`
    announcer: mdns.Announcer | None = None

    def ready() -> None:
        nonlocal announcer
        announce("page server", "http", bind_host(args), server.port, args.lan)
        print_qr(server.lan_url())
        announcer = start_announcer(args, loop, server)

    try:
        return server.serve_until_signalled(on_ready=ready)
    finally:
        if announcer is not None:
            announcer.close()  # the loop is done: the goodbye may take its few hundred ms


def run_demo(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run `ws` and `web` as two child processes, started and stopped together (see demo.py)."""
    ws_argv = ["ws", "--port", str(args.ws_port), *ws_passthrough(argv)]
    web_argv = ["web", "--port", str(args.port), "--ws-port", str(args.ws_port)]
    if args.mdns is not None:  # as given (the default is the web child's own: on with --lan)
        web_argv += ["--no-mdns"] if args.mdns is False else ["--mdns", args.mdns]
    shared = ["--log-level", args.log_level]
    shared += ["--lan"] if args.lan else []
    shared += ["--host", args.host] if args.host else []
    python = [sys.executable, "-m", "echo_server"]
    children = [
        ("WebSocket server", [*python, *ws_argv, *shared]),
        ("page server", [*python, *web_argv, *shared]),
    ]
    # The ws child's own stop (with --workers, its supervisor's margin too) must run out first.
    stop_timeout_s = args.close_timeout + 2 * defaults.WORKER_STOP_MARGIN_S
    return demo.Demo(children, stop_timeout_s=stop_timeout_s).run()


WS_PASSTHROUGH = frozenset(option.flag for option in WS_OPTIONS)


def ws_passthrough(argv: Sequence[str]) -> list[str]:
    """The ws options given to `demo`, as they were typed, for its `ws` child."""
    passed: list[str] = []
    items = list(argv)
    for index, item in enumerate(items):
        name = item.split("=", 1)[0]
        if name in WS_PASSTHROUGH:
            passed.append(item)
            if "=" not in item and index + 1 < len(items):
                passed.append(items[index + 1])
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("ws", "demo") and bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    if args.command == "ws" and args.worker_index is not None and args.control_fd is None:
        parser.error("--worker-index is for the --workers supervisor only")
    if args.command == "demo" and args.ws_port == 0:
        parser.error("demo needs a fixed --ws-port to tell the page (0 is not one)")
    if args.command in ("web", "demo") and args.mdns and not args.lan:
        parser.error("--mdns announces the page to the LAN: add --lan")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    commands: dict[str, Callable[[], int]] = {
        "ws": lambda: run_ws(args, argv),
        "web": lambda: run_web(args),
        "demo": lambda: run_demo(args, argv),
        "client": lambda: client.run(args),
        "publish": lambda: publisher.run(args),
    }
    try:
        return commands[args.command]()
    except OSError as error:
        # A port in use or an address we cannot bind: a clear line, not a traceback.
        print(f"{PROG} {args.command}: error: {error.strerror or error}", file=sys.stderr)
        return 1
    # No `except KeyboardInterrupt`: there is none. `python -m echo_server` records SIGINT
    # from its first line on, and each command's loop turns it into a callback.
