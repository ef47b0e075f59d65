"""A server's running counts: connections accepted and refused, messages and bytes each way,
how connections ended (by close code) and which requests were refused (by HTTP status).

Plain counters, bumped by the server and its connections as things happen and read by whoever
reports them (/stats, /metrics, the cluster totals). Nothing here computes or formats.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    started_s: float = field(default_factory=time.time)  # wall clock, for uptime
    accepted: int = 0
    refused: int = 0  # over a limit at accept: answered 503 without reading the request
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    # Each connection once, when its socket closes: the code of its closing handshake (the
    # first close frame sent or received), 1006 when none was exchanged.
    closes: Counter[int] = field(default_factory=Counter)
    # Upgrade requests (and connections over a limit) refused, by the HTTP status sent.
    handshakes_refused: Counter[int] = field(default_factory=Counter)
    # Plain HTTP requests on the WebSocket port (/notify, /publish, /health, ...), by status.
    plain_requests: Counter[int] = field(default_factory=Counter)
