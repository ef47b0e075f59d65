"""The plain simple-websocket-server 0.4.4 echo: the baseline echo_server is built on.

This is the library as its README shows it, its own `WebSocketServer` and a `WebSocket`
subclass that sends `self.data` back, plus a chat route for the broadcast benchmark: a client
whose request path is `/chat` joins a set kept on the server object, and every message one chat
client sends goes to all of them, the sender included (as echo_server's `/chat` does).

Nothing of the library is changed or tuned: not its select() loop (which cannot watch a
descriptor above 1023, so the process dies with ValueError past about a thousand clients), not
its listen backlog of 5. It is a benchmark peer, not an example to copy.

Usage: python bench/servers/sws_echo.py [--host H] [--port 0]
It prints "sws: listening on ws://HOST:PORT/" when ready and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from simple_websocket_server import WebSocket, WebSocketServer

CHAT_PATH = "/chat"


class BenchServer(WebSocketServer):
    """The library's server, holding the chat clients the way its handler API invites."""

    chat_clients: set[WebSocket]

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port, EchoOrChat)
        self.chat_clients = set()


class EchoOrChat(WebSocket):
    """Echo on every path but `/chat`; on `/chat`, send each message to every chat client."""

    def connected(self) -> None:
        if self.request.path == CHAT_PATH:
            self.server.chat_clients.add(self)

    def handle(self) -> None:
        if self in self.server.chat_clients:
            for client in self.server.chat_clients:
                client.send_message(self.data)
        else:
            self.send_message(self.data)

    def handle_close(self) -> None:
        self.server.chat_clients.discard(self)


def raise_open_files_limit() -> None:
    """Let the process open as many sockets as the hard limit allows (the bench opens 10,000)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def stop(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="simple-websocket-server 0.4.4 echo and chat")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (the default)")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    server = BenchServer(args.host, args.port)
    port = server.serversocket.getsockname()[1]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"sws: listening on ws://{args.host}:{port}/", flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
