"""What each WebSocket path does. Today: echo. Each route is a `Connection` subclass.

A route's handler only decides what to send; the connection does the framing, limits and
closing. Handlers must never block: timed work goes through `self.server.loop.call_later`.
"""

from __future__ import annotations

from echo_server.connection import Connection


class Echo(Connection):
    """Every message comes back unchanged: text as text, binary as binary, byte for byte."""

    def handle(self) -> None:
        self.send_message(self.data)


ROUTES: dict[str, type[Connection]] = {"/": Echo, "/echo": Echo}
DEFAULT_ROUTE: type[Connection] = Echo  # any other path echoes too, for now
