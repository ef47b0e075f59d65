"""An echo and chat server on `picows` (Cython) on uvloop: the fastest Python peer in the bench.

picows is set up as its own examples and benchmarks set it up: uvloop's event loop, a
`WSListener` per connection whose `on_ws_frame` answers each frame as it arrives, and (because
it is installed with picows) aiofastnet's Cython transport, which picows uses by default. Every
path but `/chat` echoes each frame (text as text, binary as binary); on `/chat` each message
goes to every chat client, the sender included, from a set of transports, as echo_server's
`/chat` does. Pings are answered by picows itself (auto pong); a close frame is answered and the
connection ends. The frame size limit is 32 MiB and the listen backlog 1024, as for the other
peers.

It is a benchmark peer, not part of echo_server. Usage:
    python bench/servers/picows_echo.py [--host H] [--port 0]
It prints "picows: listening on ws://HOST:PORT/" when ready; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import sys
from collections.abc import Sequence

import uvloop
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

CHAT_PATH = b"/chat"
MAX_FRAME_BYTES = 32 * 1024 * 1024
LISTEN_BACKLOG = 1024
DATA = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)


def close_back(transport: WSTransport, frame: WSFrame) -> None:
    """Answer a close frame with the same code, then end the connection."""
    transport.send_close(frame.get_close_code())
    transport.disconnect()


class Echo(WSListener):
    """Each data frame back as it came."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in DATA:
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)
        elif frame.msg_type == WSMsgType.CLOSE:
            close_back(transport, frame)


class Chat(WSListener):
    """Each data frame to every chat client, the sender included."""

    def __init__(self, clients: set[WSTransport]) -> None:
        super().__init__()
        self.clients = clients

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.clients.add(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in DATA:
            payload = frame.get_payload_as_memoryview()
            for client in self.clients:
                client.send(frame.msg_type, payload, frame.fin)
        elif frame.msg_type == WSMsgType.CLOSE:
            close_back(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.clients.discard(transport)


def raise_open_files_limit() -> None:
    """Let the process open as many sockets as the hard limit allows (the bench opens 10,000)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve_until_signalled(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    chat_clients: set[WSTransport] = set()

    def route(request: WSUpgradeRequest) -> WSListener:
        return Chat(chat_clients) if request.path == CHAT_PATH else Echo()

    server = await ws_create_server(
        route, host, port, max_frame_size=MAX_FRAME_BYTES, backlog=LISTEN_BACKLOG
    )
    bound_port = server.sockets[0].getsockname()[1]
    print(f"picows: listening on ws://{host}:{bound_port}/", flush=True)
    try:
        await stop
    finally:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="picows echo and chat server (bench peer)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (the default)")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    uvloop.run(serve_until_signalled(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
