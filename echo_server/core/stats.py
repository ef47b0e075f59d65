"""A server's running counts: connections accepted and refused, messages and bytes each way.

Plain counters, bumped by the server and its connections as things happen and read by whoever
reports them (/stats, the cluster totals). Nothing here computes or formats.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    started_s: float = field(default_factory=time.time)  # wall clock, for uptime
    accepted: int = 0
    refused: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    refused_by_status: dict[int, int] = field(default_factory=dict)  # handshakes, by HTTP status
