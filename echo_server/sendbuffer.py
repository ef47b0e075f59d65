"""A socket's outgoing bytes: sent at once when the kernel takes them, queued when it does not.

The owner asks `write()` to send; what the kernel does not take waits here until the socket is
writable again and `flush()` is called. `size` is what the back-pressure and slow-consumer limits
look at. It never blocks and never loops on a full socket.
"""

from __future__ import annotations

import socket
import ssl
from collections import deque

# What a non-blocking send raises when the kernel (or TLS) cannot take more right now.
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError)


class SendBuffer:
    __slots__ = ("_chunks", "_sock", "size")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._chunks: deque[memoryview] = deque()
        self.size = 0

    def __bool__(self) -> bool:
        return self.size > 0

    def write(self, data: bytes) -> None:
        """Send `data` now if nothing is queued before it; queue what the kernel did not take.

        Raises OSError when the socket is dead (the caller drops the connection).
        """
        view = memoryview(data)
        if not self._chunks:
            try:
                sent = self._sock.send(view)
            except WOULD_BLOCK:
                sent = 0
            if sent == len(view):
                return
            view = view[sent:]
        self._chunks.append(view)
        self.size += len(view)

    def flush(self) -> None:
        """Send queued bytes until the queue is empty or the kernel is full.

        A chunk TLS refused is retried unchanged, as OpenSSL requires after a want-write.
        Raises OSError when the socket is dead.
        """
        chunks = self._chunks
        while chunks:
            head = chunks[0]
            try:
                sent = self._sock.send(head)
            except WOULD_BLOCK:
                return
            self.size -= sent
            if sent == len(head):
                chunks.popleft()
            else:
                chunks[0] = head[sent:]
                return

    def clear(self) -> None:
        self._chunks.clear()
        self.size = 0
