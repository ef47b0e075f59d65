"""The WebSocket server's settings: one frozen record, from defaults.py or the command line."""

from __future__ import annotations

from dataclasses import dataclass, field

from echo_server import defaults


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = defaults.LOCAL_HOST
    port: int = defaults.WS_PORT
    max_connections: int = defaults.MAX_CONNECTIONS
    handshake_timeout_s: float = defaults.HANDSHAKE_TIMEOUT_S
    ping_interval_s: float = defaults.PING_INTERVAL_S
    ping_timeout_s: float = defaults.PING_TIMEOUT_S
    close_timeout_s: float = defaults.CLOSE_TIMEOUT_S
    max_message_bytes: int = defaults.MAX_MESSAGE_BYTES
    write_limit_bytes: int = defaults.WRITE_LIMIT_BYTES
    max_request_head_bytes: int = defaults.MAX_REQUEST_HEAD_BYTES
    max_header_lines: int = defaults.MAX_HEADER_LINES
    rate_limit_per_s: float = defaults.RATE_LIMIT_PER_S  # /chat, per client; 0: no limit
    max_series: int = defaults.MAX_SERIES  # /publish: series kept besides the demo
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    # --subprotocol: the names this server speaks, "*" for any (see protocol/handshake.py).
    subprotocols: tuple[str, ...] = ()
    compression: bool = defaults.COMPRESSION  # permessage-deflate when offered
    certfile: str | None = None
    keyfile: str | None = None
    notify_token: str | None = None  # lets other machines use /notify (loopback needs none)
    redis_url: str | None = None  # --redis: fan out chat, tick and stream through Redis
    # --workers: this process is worker `worker_index` of `workers`, sharing the port with
    # the others (SO_REUSEPORT). A lone server is worker 0 of 1.
    # The readiness API (--selector): None for the platform's best (epoll, kqueue), or a name.
    selector: str | None = None
    reuse_port: bool = False
    worker_index: int = 0
    workers: int = 1
