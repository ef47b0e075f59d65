"""An echo and chat server on the `websockets` package (asyncio): the bench's reference peer.

Every ratio in the bench's report is relative to this server. It is set up the way websockets
benchmarks itself: no compression, a message size limit well above the 1 MiB messages of the
large-message scenario. Every path but `/chat` echoes; on `/chat` each message goes to every
chat client, the sender included, with `websockets.broadcast` (as echo_server's `/chat` does).
The listen backlog is 1024, the same as echo_server's, so that the connection-storm scenario
compares accept loops rather than kernel queue sizes. With `--uvloop` it runs on uvloop's event
loop instead of asyncio's (the bench's "websockets uvloop" peer): the same code, a faster loop.

With `--compression deflate` it negotiates permessage-deflate (websockets' own default), for the
compression rows (bench/compression.py). It is a benchmark peer, not part of echo_server. Usage:
    python bench/servers/websockets_echo.py [--host H] [--port 0] [--compression deflate]
        [--uvloop]
It prints "websockets: listening on ws://HOST:PORT/" when ready; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import sys
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection, broadcast, serve

CHAT_PATH = "/chat"
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
LISTEN_BACKLOG = 1024


async def echo(websocket: ServerConnection) -> None:
    async for message in websocket:
        await websocket.send(message)


async def chat(websocket: ServerConnection, clients: set[ServerConnection]) -> None:
    clients.add(websocket)
    try:
        async for message in websocket:
            broadcast(clients, message)
    finally:
        clients.discard(websocket)


def raise_open_files_limit() -> None:
    """Let the process open as many sockets as the hard limit allows (the bench opens 10,000)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve_until_signalled(host: str, port: int, compression: str | None) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    chat_clients: set[ServerConnection] = set()

    async def route(websocket: ServerConnection) -> None:
        if websocket.request is not None and websocket.request.path == CHAT_PATH:
            await chat(websocket, chat_clients)
        else:
            await echo(websocket)

    async with serve(
        route,
        host,
        port,
        compression=compression,
        max_size=MAX_MESSAGE_BYTES,
        backlog=LISTEN_BACKLOG,
    ) as server:
        bound_port = next(iter(server.sockets)).getsockname()[1]
        print(f"websockets: listening on ws://{host}:{bound_port}/", flush=True)
        await stop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="websockets echo and chat server (bench peer)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (the default)")
    parser.add_argument(
        "--compression", choices=("none", "deflate"), default="none", help="(default none)"
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    compression = None if args.compression == "none" else args.compression
    if args.uvloop:
        # Imported only here: the asyncio peer runs without uvloop installed.
        import uvloop  # noqa: PLC0415

        uvloop.run(serve_until_signalled(args.host, args.port, compression))
    else:
        asyncio.run(serve_until_signalled(args.host, args.port, compression))
    return 0


if __name__ == "__main__":
    sys.exit(main())
