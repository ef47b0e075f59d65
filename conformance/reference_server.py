"""A known-good echo server, for checking the conformance harness rather than echo_server.

It is the `websockets` library's asyncio echo server, set up the way websockets runs Autobahn on
itself: no compression, and a message size limit above the 16 MiB that the 9.* cases send. If the
harness reports failures against this server, suspect the harness (or the suite's install), not
echo_server. It is not part of echo_server and is never shipped or imported by it.

    .venv/bin/python conformance/run.py --server-cmd \\
        ".venv/bin/python conformance/reference_server.py --port 0"

Like echo_server, it prints a ready line "listening on ws://127.0.0.1:PORT/" (PORT is the real
port when started with --port 0) and stops on SIGTERM or SIGINT.

websockets itself fails one case, 7.1.5 (a close frame in the middle of a fragmented message: it
answers 1002 where the suite wants 1000); so expect that one red line from this server.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

# The 9.* cases send messages of up to 16 MiB; leave headroom so none of them meets the limit.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


def join(fragments: list[str | bytes]) -> str | bytes:
    """One message from its fragments: all str for a text message, all bytes for binary."""
    texts = [fragment for fragment in fragments if isinstance(fragment, str)]
    if texts:
        return "".join(texts)
    return b"".join(fragment for fragment in fragments if isinstance(fragment, bytes))


async def echo(websocket: ServerConnection) -> None:
    # recv() would close with 1009 past 4096 fragments in one message (websockets' defence
    # against floods of tiny frames), but 9.3.1 and 9.4.1 send 4 MiB in 64-byte fragments.
    # recv_streaming() has no such cap, so gather the fragments here.
    try:
        while True:
            fragments = [fragment async for fragment in websocket.recv_streaming()]
            await websocket.send(join(fragments))
    except ConnectionClosed:
        # The fuzzer breaks connections on purpose; that is the end of this echo, not an error.
        pass


async def serve_until_signalled(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    async with serve(
        echo,
        host,
        port,
        compression=None,
        max_size=MAX_MESSAGE_BYTES,
        # Pings from the server would be frames the fuzzer does not expect.
        ping_interval=None,
    ) as server:
        bound_port = next(iter(server.sockets)).getsockname()[1]
        print(f"reference_server: websockets listening on ws://{host}:{bound_port}/", flush=True)
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description="websockets echo server (conformance check)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (the default)")
    args = parser.parse_args()
    asyncio.run(serve_until_signalled(args.host, args.port))


if __name__ == "__main__":
    main()
