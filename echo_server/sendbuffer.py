"""A socket's outgoing bytes: sent at once when the kernel takes them, queued when it does not.

The owner asks `write()` to send some buffers (a frame header and its payload, or everything a
read produced); what the kernel does not take waits here until the socket is writable again and
`flush()` is called. On a plain socket the buffers go out in one `sendmsg` call without being
joined (no copy of a large payload); TLS sockets take one buffer at a time, and a buffer TLS
refused is offered again unchanged, as OpenSSL requires after a want-write. `size` is what the
back-pressure and slow-consumer limits look at. It never blocks and never loops on a full socket.
"""

from __future__ import annotations

import socket
import ssl
from collections import deque
from collections.abc import Sequence
from itertools import islice

# What a non-blocking send raises when the kernel (or TLS) cannot take more right now.
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError)
# Buffers per sendmsg call: Linux's IOV_MAX is 1024.
MAX_BUFFERS_PER_SEND = 512

Buffer = bytes | bytearray | memoryview
NOTHING_QUEUED: deque[Buffer] = deque(maxlen=0)  # shared, always empty: appending is a bug


class SendBuffer:
    __slots__ = ("_chunks", "_gather", "_sock", "size")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._gather = not isinstance(sock, ssl.SSLSocket)
        # Most writes go out at once: the queue is made the first time one does not.
        self._chunks: deque[Buffer] = NOTHING_QUEUED
        self.size = 0

    def __bool__(self) -> bool:
        return self.size > 0

    def write(self, parts: Sequence[Buffer]) -> None:
        """Send `parts` now if nothing is queued before them; queue what the kernel did not take.

        Raises OSError when the socket is dead (the caller drops the connection).
        """
        if not self._chunks and len(parts) == 1:
            # The common case, one buffer and nothing waiting: no queue work unless needed.
            try:
                sent = self._sock.send(parts[0])
            except WOULD_BLOCK:
                sent = 0
            if sent == len(parts[0]):
                return
            parts = [memoryview(parts[0])[sent:]]
        waiting = bool(self._chunks)
        if self._chunks is NOTHING_QUEUED:
            self._chunks = deque()
        for part in parts:
            if part:
                self._chunks.append(part)
                self.size += len(part)
        if not waiting:
            self.flush()

    def flush(self) -> None:
        """Send queued bytes until the queue is empty or the kernel is full.

        Raises OSError when the socket is dead.
        """
        chunks = self._chunks
        while chunks:
            try:
                if self._gather:
                    batch = list(islice(chunks, MAX_BUFFERS_PER_SEND))
                    wanted = sum(map(len, batch))
                    sent = self._sock.sendmsg(batch)
                else:
                    wanted = len(chunks[0])
                    sent = self._sock.send(chunks[0])
            except WOULD_BLOCK:
                return
            self._consume(sent)
            if sent < wanted:
                return  # the kernel is full: wait until the socket is writable

    def _consume(self, sent: int) -> None:
        self.size -= sent
        chunks = self._chunks
        while sent:
            head = chunks[0]
            if sent >= len(head):
                sent -= len(head)
                chunks.popleft()
            else:
                chunks[0] = memoryview(head)[sent:]
                sent = 0

    def clear(self) -> None:
        self._chunks.clear()
        self.size = 0
