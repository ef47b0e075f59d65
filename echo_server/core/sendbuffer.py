"""A socket's outgoing bytes: queued by `write()`, sent by `flush()`, counted by what they cost.

The owner writes frames as they are made (a header and its payload, a frame shared by many
subscribers) and flushes once per loop turn, so that a socket gets one `send` per turn however
many messages it was given. Small writes are copied into one growing bytearray at the tail of
the queue; large ones (`COPY_BELOW_BYTES` and up) are kept by reference, never copied. On a plain
socket the queue goes out in one `sendmsg` call without being joined; a TLS socket takes one
buffer at a time.

`size` is the bytes still to send; `cost` is the memory the queue holds for them, each buffer
kept by reference counted with its object's overhead. Back-pressure and the slow-consumer limit
look at `cost`, so ten thousand one-byte frames cost what they really take, not ten thousand
bytes. It never blocks and never loops on a full socket.
"""

from __future__ import annotations

import socket
import ssl
from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import Final

from echo_server.core.loop import WOULD_BLOCK

# Buffers per sendmsg call: Linux's IOV_MAX is 1024.
MAX_BUFFERS_PER_SEND: Final = 512
# Writes below this are copied into the tail buffer; larger ones are queued by reference.
COPY_BELOW_BYTES: Final = 16 * 1024
# The tail buffer takes copies until it holds this much; then a new one starts.
TAIL_MAX_BYTES: Final = 64 * 1024
# What a queued buffer costs beyond its bytes: the object, and its slot in the queue.
BUFFER_OVERHEAD_BYTES: Final = 128

Buffer = bytes | bytearray | memoryview


class SendBuffer:
    __slots__ = ("_chunks", "_gather", "_sock", "_tail", "cost", "size")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._gather = not isinstance(sock, ssl.SSLSocket)
        # Made the first time something is queued: most sockets are idle most of the time.
        self._chunks: deque[Buffer] | None = None
        self._tail: bytearray | None = None  # the last chunk, ours, while it takes copies
        self.size = 0
        self.cost = 0

    def __bool__(self) -> bool:
        return self.size > 0

    def write(self, parts: Sequence[Buffer]) -> None:
        """Queue `parts` behind what is queued; nothing is sent before `flush()`.

        The caller may reuse a part it owns once this returns only if it was copied, so parts
        must be immutable (bytes) or not touched again.
        """
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = deque()
        for part in parts:
            size = len(part)
            if not size:
                continue
            self.size += size
            tail = self._tail
            if size < COPY_BELOW_BYTES:
                if tail is None or len(tail) + size > TAIL_MAX_BYTES:
                    tail = self._tail = bytearray()
                    chunks.append(tail)
                    self.cost += BUFFER_OVERHEAD_BYTES
                tail += part
                self.cost += size
            else:
                chunks.append(part)
                self._tail = None
                self.cost += size + BUFFER_OVERHEAD_BYTES

    def flush(self) -> None:
        """Send queued bytes until the queue is empty or the kernel is full.

        Raises OSError when the socket is dead.
        """
        chunks = self._chunks
        while chunks:
            try:
                if self._gather:
                    batch = list(islice(chunks, MAX_BUFFERS_PER_SEND)) if len(chunks) > 1 else None
                    if batch is None:
                        wanted = len(chunks[0])
                        sent = self._sock.send(chunks[0])
                    else:
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
        if chunks is not None and not chunks:
            self._chunks = None  # an idle socket keeps no queue

    def _consume(self, sent: int) -> None:
        self.size -= sent
        chunks = self._chunks
        assert chunks is not None
        while sent:
            head = chunks[0]
            length = len(head)
            if sent >= length:
                sent -= length
                chunks.popleft()
                self.cost -= length + BUFFER_OVERHEAD_BYTES
                if head is self._tail:
                    self._tail = None
            else:
                if type(head) is bytearray:
                    del head[:sent]  # in place: the tail may still grow, so no memoryview on it
                else:
                    chunks[0] = memoryview(head)[sent:]
                self.cost -= sent
                sent = 0

    def clear(self) -> None:
        self._chunks = None
        self._tail = None
        self.size = 0
        self.cost = 0
