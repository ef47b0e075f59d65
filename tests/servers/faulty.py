"""A WebSocket server whose handler fails on purpose, for tests/test_hostile.py.

It uses echo_server as a library, the way an application would: one route that echoes every
message except "boom", on which its handle() raises, and one (/timer-bug) whose client makes a
timer in the server's loop raise. It exists to prove that a bug costs only the client that
triggered it, and that a failing timer never stops the loop; it is a test fixture, not an
example to copy.

Usage: python tests/servers/faulty.py [--port PORT]  (stop it with SIGINT or SIGTERM)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from echo_server.core.connection import Connection
from echo_server.core.server import Server
from echo_server.settings import Settings

BOOM = "boom"
BOOM_ERROR = "boom: this handler fails on purpose"
TIMER_ERROR = "timer-bug: this timer fails on purpose"


class Faulty(Connection):
    """Echoes, but raises on the message "boom"."""

    def handle(self) -> None:
        if self.data == BOOM:
            raise RuntimeError(BOOM_ERROR)
        self.send_message(self.data)


class TimerBug(Connection):
    """Echoes; on connecting, it sets a loop timer that raises (not a connection's own timer)."""

    def connected(self) -> None:
        self.server.loop.call_later(0.0, explode)

    def handle(self) -> None:
        self.send_message(self.data)


def explode() -> None:
    raise RuntimeError(TIMER_ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="echo server whose handler raises on 'boom'")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    args = parser.parse_args(argv)
    # The server logs a handler's traceback; the tests read it from this process's output.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # The selector the tests force, as `echo-server ws` would read it from the environment.
    settings = Settings(port=args.port, selector=os.environ.get("ECHO_SERVER_SELECTOR"))
    server = Server(settings, {"/": Faulty, "/timer-bug": TimerBug})

    def ready() -> None:
        # The same ready line as `python -m echo_server ws`, so tests/support.py reads the port.
        print(
            f"echo_server: WebSocket server listening on ws://127.0.0.1:{server.port}/", flush=True
        )

    return server.serve_forever_until_signalled(on_ready=ready)


if __name__ == "__main__":
    sys.exit(main())
