"""TEMPORARY stand-in so the page and tests can be worked on; replaced by the selector loop."""

from __future__ import annotations

import signal
from types import FrameType
from typing import NoReturn

from simple_websocket_server import WebSocket, WebSocketServer

from echo_server.settings import Settings


class Echo(WebSocket):
    def handle(self) -> None:
        self.send_message(self.data)


class Server:
    def __init__(self, settings: Settings) -> None:
        WebSocketServer.request_queue_size = 1024
        self.inner = WebSocketServer(settings.host, settings.port, Echo)
        self.port: int = self.inner.serversocket.getsockname()[1]

    def serve_forever_until_signalled(self) -> int:
        def stop(signum: int, frame: FrameType | None) -> NoReturn:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            self.inner.serve_forever()
        finally:
            self.inner.close()
        return 0
