"""The WebSocket frame codec of RFC 6455, server side, with no I/O (Sans-IO).

`FrameReader` turns the bytes a client sent into events (whole messages, pings, pongs, a close)
and raises `ProtocolError`, carrying the close code to answer with, at the first rule the client
breaks. `encode_frame`, `frame_header` and `encode_close` build the bytes a server sends back.

This module is not a connection: it knows nothing of sockets, the opening handshake, timeouts,
answering pings or the closing handshake; the connection layer does all that with these events.
The one extension is permessage-deflate (RFC 7692): when it was negotiated, the reader is given
a `Decompressor` (deflate.py's `Inflater`) and accepts RSV1 on the first frame of a data
message, inflating the message as it arrives; any other RSV bit, and RSV1 on a control frame, a
continuation or without the extension, is an error (1002). The message size limit applies to
the inflated message, and to its compressed bytes too.

Speed matters because every byte a client sends passes through `FrameReader.feed`: headers are
read with `struct.unpack_from` at an offset into the received bytes, the read buffer is compacted
once per `feed`, and payloads are unmasked and decoded a whole frame (or a whole received part of
one) at a time, never byte by byte in Python. Unmasking uses the C `apply_mask` of the
`websockets` package (a dependency already, for the terminal client) when it is importable:
0.04 ms per MiB, against 3 ms for the best pure-Python way (`unmask_python`, the fallback).
"""

from __future__ import annotations

import codecs
import enum
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, cast

from echo_server import defaults

try:  # C speed for the one byte-wise operation of the protocol; see the module docstring.
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets ships it compiled for common platforms
    apply_mask = None  # type: ignore[assignment]

# Its C code takes any buffer for the mask too (its stub says bytes), so a mask is never copied.
_AnyBuffer = bytes | bytearray | memoryview
_apply_mask_c = cast(Callable[[_AnyBuffer, _AnyBuffer], bytes] | None, apply_mask)

__all__ = [
    "MAX_CLOSE_REASON_BYTES",
    "MAX_CONTROL_PAYLOAD_BYTES",
    "Close",
    "CloseCode",
    "Decompressor",
    "Event",
    "FrameReader",
    "FrameSeen",
    "Message",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolError",
    "encode_close",
    "encode_frame",
    "encode_message",
    "frame_header",
    "is_valid_close_code",
    "message_payload",
    "unmask",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 section 5.2); the others are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 section 7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


MAX_CONTROL_PAYLOAD_BYTES: Final = 125
MAX_CLOSE_REASON_BYTES: Final = MAX_CONTROL_PAYLOAD_BYTES - 2  # after the 2-byte code
FRAME_HEAD_BYTES: Final = 64  # of a frame's payload, reported with it (see FrameSeen)

# Payloads up to this size are unmasked as one big integer; longer ones lane by lane with
# bytes.translate, which measured faster from about 1 KiB up (see `unmask`).
_SHORT_PAYLOAD_BYTES: Final = 1024
# Long payloads are unmasked in blocks of this size (a multiple of 4, so every block starts at
# mask byte 0) to stay in the CPU cache; measured 2x faster than one pass on 4 MiB.
_UNMASK_BLOCK_BYTES: Final = 64 * 1024
# _XOR_TABLES[k] maps every byte b to b ^ k, for bytes.translate.
_XOR_TABLES: Final = tuple(bytes(b ^ k for b in range(256)) for k in range(256))

_UINT16: Final = struct.Struct("!H")
_UINT64: Final = struct.Struct("!Q")
_HEADER_7: Final = struct.Struct("!BB")
_HEADER_16: Final = struct.Struct("!BBH")
_HEADER_64: Final = struct.Struct("!BBQ")

_FIN: Final = 0x80
_RSV_MASK: Final = 0x70
_RSV1: Final = 0x40  # "compressed", on the first frame of a message, with permessage-deflate
_OPCODE_MASK: Final = 0x0F
_MASK_BIT: Final = 0x80
_LENGTH_MASK: Final = 0x7F
_LENGTH_16: Final = 126
_LENGTH_64: Final = 127
_CONTROL_BIT: Final = 0x08  # opcodes 0x8-0xF are control frames
_KNOWN_OPCODES: Final = frozenset(int(opcode) for opcode in Opcode)
# Plain ints for the parsing loop: reading an enum member costs ten times an int comparison.
_CONTINUATION: Final = int(Opcode.CONTINUATION)
_TEXT: Final = int(Opcode.TEXT)
_BINARY: Final = int(Opcode.BINARY)
_PING: Final = int(Opcode.PING)
_PONG: Final = int(Opcode.PONG)
_FIN_TEXT: Final = _FIN | _TEXT
_FIN_DATA: Final = frozenset((_FIN | _TEXT, _FIN | _BINARY))

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class ProtocolError(Exception):
    """The peer broke the protocol; `code` is the close code to send, `reason` a short text
    (<= 123 bytes UTF-8)."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(f"{reason} ({int(code)} {code.name})")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message:
    """A whole data message, fragments joined: `str` for a text message, `bytes` for binary."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame; `code` is 1005 (NO_STATUS_RCVD) when the frame had an empty payload."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class FrameSeen:
    """A frame as it arrived, for an inspector: reported only by a reader made with
    `report_frames=True`, before the events the frame completes. `head` is the first
    FRAME_HEAD_BYTES of the payload (unmasked) that had arrived with the header."""

    opcode: int
    fin: bool
    rsv: int  # the three RSV bits, RSV1 the highest
    masked: bool
    mask: bytes | None
    length: int
    head: bytes


Event = Message | Ping | Pong | Close | FrameSeen


def is_valid_close_code(code: int) -> bool:
    """Whether a peer may put `code` in a close frame.

    1004, 1005, 1006 and 1015 are reserved or only for reporting; 1016-2999 are not assigned;
    3000-4999 are for libraries and applications. 1012-1014 were registered with IANA after
    RFC 6455; the Autobahn testsuite, which once listed them as invalid, no longer tests them
    either way, and browsers and the `websockets` package accept them.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def unmask(payload: bytes | bytearray | memoryview, mask: bytes | bytearray | memoryview) -> bytes:
    """XOR `payload` with the 4-byte `mask` repeated (RFC 6455 section 5.3); also masks."""
    if _apply_mask_c is not None:
        return _apply_mask_c(payload, mask)
    return unmask_python(payload, bytes(mask))


# The hot path's unmask: the C function itself when there is one (no wrapper call per frame).
_unmask_fast: Final[Callable[[_AnyBuffer, _AnyBuffer], bytes]] = (
    _apply_mask_c if _apply_mask_c is not None else unmask
)


def unmask_python(payload: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """`unmask` in pure Python: the fallback where the C version cannot be imported."""
    n = len(payload)
    if n <= _SHORT_PAYLOAD_BYTES:
        # One C-level XOR of two big integers; the conversions dominate, fine for short payloads.
        mask_int = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
        return (int.from_bytes(payload, "little") ^ mask_int).to_bytes(n, "little")
    # Byte i is XORed with mask[i % 4]: take every fourth byte (a strided slice, a C loop),
    # translate it with the XOR table of its mask byte, and put it back. Twice as fast as the
    # big-integer way on long payloads.
    out = bytearray(payload)
    table0, table1, table2, table3 = (_XOR_TABLES[k] for k in mask)
    for start in range(0, n, _UNMASK_BLOCK_BYTES):
        stop = start + _UNMASK_BLOCK_BYTES
        block = out[start:stop]
        block[0::4] = block[0::4].translate(table0)
        block[1::4] = block[1::4].translate(table1)
        block[2::4] = block[2::4].translate(table2)
        block[3::4] = block[3::4].translate(table3)
        out[start:stop] = block
    return bytes(out)


def frame_header(opcode: Opcode, length: int, fin: bool = True, compressed: bool = False) -> bytes:
    """The header of an unmasked frame: 2, 4 or 10 bytes; send the payload after it.

    `compressed` sets RSV1, which says (with permessage-deflate) that the payload is deflated.
    """
    return _header((_FIN if fin else 0) | (_RSV1 if compressed else 0) | opcode, length, 0)


def _header(first_byte: int, length: int, mask_bit: int) -> bytes:
    if length < _LENGTH_16:
        return _HEADER_7.pack(first_byte, mask_bit | length)
    if length < 1 << 16:
        return _HEADER_16.pack(first_byte, mask_bit | _LENGTH_16, length)
    return _HEADER_64.pack(first_byte, mask_bit | _LENGTH_64, length)


def encode_frame(
    opcode: Opcode | int,
    payload: bytes | bytearray | memoryview = b"",
    *,
    fin: bool = True,
    mask: bytes | None = None,
    rsv: int = 0,
) -> bytes:
    """One frame. Servers send unmasked frames (`mask=None`); a client frame has a 4-byte mask.

    This checks nothing of what RFC 6455 forbids (control frames over 125 bytes or fragmented,
    RSV bits, reserved opcodes: `opcode` may be any 4-bit int), so that tests can build every
    kind of bad frame.
    """
    if not 0 <= rsv <= 7:
        raise ValueError(f"rsv must be 3 bits (0..7), got {rsv}")
    if not 0 <= opcode <= _OPCODE_MASK:
        raise ValueError(f"opcode must be 4 bits (0..15), got {opcode}")
    first_byte = (_FIN if fin else 0) | rsv << 4 | opcode
    if mask is None:
        return _header(first_byte, len(payload), 0) + payload
    if len(mask) != 4:
        raise ValueError(f"a mask is 4 bytes, got {len(mask)}")
    return _header(first_byte, len(payload), _MASK_BIT) + mask + unmask(payload, mask)


def message_payload(
    data: str | bytes | bytearray | memoryview,
) -> tuple[Opcode, bytes | bytearray | memoryview]:
    """A message's opcode and payload: text (UTF-8) for `str`, binary for anything bytes-like.

    The one place the choice is made, for every way a message leaves (a connection, a
    broadcast, the cluster's bus).
    """
    if isinstance(data, str):
        return Opcode.TEXT, data.encode()
    return Opcode.BINARY, data


def encode_message(data: str | bytes | bytearray | memoryview) -> bytes:
    """One unmasked, unfragmented frame holding the message `data`."""
    opcode, payload = message_payload(data)
    return frame_header(opcode, len(payload)) + payload


def encode_close(code: int, reason: str = "") -> bytes:
    """An unmasked close frame; `reason` is cut at a character boundary to fit 125 bytes.

    `CloseCode.NO_STATUS_RCVD` (1005) gives a close frame with an empty payload, which is what
    that code means; other codes a peer may not receive (see `is_valid_close_code`) are refused.
    """
    if code == CloseCode.NO_STATUS_RCVD:
        if reason:
            raise ValueError("a close frame without a code cannot carry a reason")
        return frame_header(Opcode.CLOSE, 0)
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    raw_reason = reason.encode()
    if len(raw_reason) > MAX_CLOSE_REASON_BYTES:
        # Dropping the incomplete last character keeps the reason valid UTF-8.
        raw_reason = raw_reason[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore").encode()
    payload = _UINT16.pack(code) + raw_reason
    return frame_header(Opcode.CLOSE, len(payload)) + payload


def _parse_close(payload: bytes) -> Close:
    if not payload:
        return Close(CloseCode.NO_STATUS_RCVD, "")
    if len(payload) == 1:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "close frame payload of 1 byte")
    (code,) = _UINT16.unpack_from(payload)
    if not is_valid_close_code(code):
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError(
            CloseCode.INVALID_FRAME_PAYLOAD_DATA, "close reason is not valid UTF-8"
        ) from None
    return Close(code, reason)


class Decompressor(Protocol):
    """What the reader needs to read compressed messages (deflate.Inflater is one)."""

    def inflate(self, data: bytes | bytearray | memoryview, max_length: int) -> bytes:
        """The next compressed bytes of a message, inflated: at most `max_length` bytes.
        Raises ProtocolError for data that does not inflate."""
        ...

    def finish(self, max_length: int) -> bytes:
        """The message's last frame is in: the rest of its inflated bytes."""
        ...

    def inflate_message(self, data: bytes | bytearray | memoryview, max_length: int) -> bytes:
        """A whole message's compressed bytes, inflated (`inflate` then `finish`)."""
        ...

    def reset(self) -> None:
        """Forget the message in progress, and any state."""
        ...


class ReaderState(enum.Enum):
    """Where a `FrameReader` is: reading frames, or done for good."""

    READING = "reading"
    CLOSED = "closed"  # a close frame was read: what follows it is ignored
    FAILED = "failed"  # the peer broke the protocol: nothing more is read


# Fragments smaller than this are copied into one growing buffer; larger ones are kept as they
# are and joined once at the end. One byte per fragment then costs one byte, not an object each.
_JOIN_FRAGMENT_BYTES: Final = 64 * 1024
UNLIMITED: Final = sys.maxsize


class FrameReader:
    """Reads the frames a client sends to a server.

    Feed it received bytes in any split; it returns the events completed so far, in order. With
    `max_frames`, one call parses at most that many frames (or parts of frames) and keeps the rest
    for the next call (`backlog` says there is some), so that one peer's flood is handled a slice
    per loop turn. At a protocol violation, the events before it are returned first and the
    `ProtocolError`, carrying the close code to answer with, is raised by the next call (as
    wsproto does): a valid message followed by a bad frame in one read is still delivered.

    A data frame's payload is consumed (unmasked, inflated, and for text validated) as it
    arrives, so memory held is the message so far in one buffer plus at most one partial header
    or control frame and one slice of unparsed bytes; a text message with invalid UTF-8 fails as
    soon as the bad bytes arrive, even in the middle of a frame. A compressed message is never
    inflated past `max_message_bytes` (plus one byte, to know it is over): a small message that
    would inflate to gigabytes is refused with 1009 after that much work.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = defaults.MAX_MESSAGE_BYTES,
        require_mask: bool = True,
        report_frames: bool = False,
        decompressor: Decompressor | None = None,
    ) -> None:
        self._max_message_bytes = max_message_bytes
        self._require_mask = require_mask
        self._report_frames = report_frames
        self._decompressor = decompressor  # permessage-deflate was negotiated
        self.state = ReaderState.READING
        # Bytes received but not parsed yet: a partial frame, or what a limited call left.
        self._buffer = bytearray()
        self._limited = False  # the last call stopped at its frame limit, not at the data's end
        self._error: ProtocolError | None = None  # found after some events: raised next call
        # The data frame whose payload is arriving: bytes still to come, the mask rotated to
        # the next byte's position, and its FIN bit.
        self._frame_left = 0
        self._frame_mask: bytes | None = None
        self._frame_fin = False
        # The message in progress (opcode 0 when none): its payload bytes so far (small
        # fragments joined in a bytearray, large ones as they are) and their count.
        self._message_opcode = 0
        self._message_bytes = 0  # of the payload (inflated, for a compressed message)
        self._compressed = False  # the message in progress has RSV1: its payload is deflated
        self._wire_bytes = 0  # a compressed message's bytes as received
        self._parts: list[bytes | bytearray] = []
        self._decoder = _Utf8Decoder()  # validates text as it arrives; the text is decoded once
        self.echoed = 0  # messages the last `feed` echoed into its `echo` buffer

    @property
    def buffered_bytes(self) -> int:
        """Bytes held (unparsed bytes and a partial message), for memory accounting."""
        return len(self._buffer) + self._message_bytes

    @property
    def backlog(self) -> bool:
        """Whether a call with no new data would find more to do (events, or the error)."""
        return self.state is ReaderState.READING and (self._limited or self._error is not None)

    def feed(
        self,
        data: bytes | bytearray | memoryview = b"",
        max_frames: int = UNLIMITED,
        echo: bytearray | None = None,
    ) -> list[Event]:
        """Add received bytes; return the events now complete, in order (at most `max_frames`
        frames parsed).

        Raises ProtocolError at a violation when no event precedes it in this call; otherwise the
        events come first and the next call raises. After a Close event, or after a
        ProtocolError, further bytes are ignored (return []).

        With `echo` (for a server that sends every message back unchanged), the messages that
        arrive whole in one short frame before any other event are not returned as events:
        the unmasked frame that echoes each (text checked as UTF-8 first) is appended to `echo`
        instead, and `echoed` says how many there were. Events that follow them come back as
        usual, so what the caller sends for them goes after those echoes, in order. No objects
        per message: the echo server's hot path.

        `data` is copied where needed, never kept: the caller may reuse its buffer.
        """
        self.echoed = 0
        if self.state is not ReaderState.READING:
            return []
        if self._error is not None:
            self._fail()
            raise self._error
        buffer = self._buffer
        view: bytes | bytearray | memoryview
        if buffer:
            if data:
                buffer += data
            view = buffer
        elif data:
            view = data
        else:
            self._limited = False
            return []
        events: list[Event] = []
        try:
            used = self._parse(view, events, max_frames, echo)
        except ProtocolError as error:
            if not events and not self.echoed:
                self._fail()
                raise
            self._error = error
            return events
        # Compact once per call; what is left is a partial frame or what the limit left.
        if view is buffer:
            del buffer[:used]
        elif used < len(view):
            buffer += view[used:]
        return events

    def _fail(self) -> None:
        self.state = ReaderState.FAILED
        self._buffer = bytearray()
        self._parts = []
        if self._decompressor is not None:
            self._decompressor.reset()

    def _parse(
        self,
        data: bytes | bytearray | memoryview,
        events: list[Event],
        max_frames: int,
        echo: bytearray | None,
    ) -> int:
        """Parse frames from `data` into `events` (and `echo`, see `feed`); return how many
        bytes were used.

        `events` is filled in place, so that what was parsed before a ProtocolError is kept.
        """
        pos = 0
        end = len(data)
        max_message_bytes = self._max_message_bytes
        frames = 0
        self._limited = False
        while pos < end:
            if frames == max_frames:
                self._limited = True
                break
            frames += 1
            if self._frame_left:
                size = min(self._frame_left, end - pos)
                self._consume_payload(data[pos : pos + size])
                pos += size
                if not self._frame_left and self._frame_fin:
                    events.append(self._finish_message())
                continue
            if end - pos < 2:
                break
            first = data[pos]
            second = data[pos + 1]
            length = second & _LENGTH_MASK
            if (
                first in _FIN_DATA
                and second & _MASK_BIT
                and length < _LENGTH_16
                and length <= max_message_bytes
                and not self._message_opcode
            ):
                # The common case, known valid from its first two bytes: a short, masked,
                # unfragmented message (checking it takes no call).
                opcode, fin, start = first & _OPCODE_MASK, _FIN, pos + 6
                if start > end:
                    break
                stop = start + length
                if stop <= end and not self._report_frames:
                    # All of it is here: unmasked with no copy of the mask or the payload.
                    payload = _unmask_fast(data[start:stop], data[pos + 2 : start])
                    if echo is not None and not events:
                        if first == _FIN_TEXT:
                            try:  # inlined: a call per message counts here
                                payload.decode()
                            except UnicodeDecodeError:
                                raise _invalid_utf8() from None
                        echo.append(first)
                        echo.append(length)
                        echo += payload
                        self.echoed += 1
                    else:
                        events.append(_whole_message(first == _FIN_TEXT, payload))
                    pos = stop
                    continue
                mask: bytes | None = bytes(data[pos + 2 : start])
            else:
                header = self._parse_header(data, pos, first, second)
                if header is None:
                    break  # the header is not all here yet
                opcode, fin, length, mask, start = header
            stop = start + length
            if opcode & _CONTROL_BIT and stop > end:
                break  # a control frame is at most 139 bytes: wait for all of it
            if self._report_frames:
                head_stop = min(stop, end, start + FRAME_HEAD_BYTES)
                head = _payload(data[start:head_stop], mask)
                events.append(
                    FrameSeen(
                        opcode, bool(fin), first >> 4 & 7, mask is not None, mask, length, head
                    )
                )
            if opcode & _CONTROL_BIT:
                pos = stop
                event = _control_event(opcode, _payload(data[start:stop], mask))
                events.append(event)
                if type(event) is Close:
                    self.state = ReaderState.CLOSED
                    return end
                continue
            if opcode and fin and stop <= end:
                # A whole unfragmented message in hand.
                payload = _payload(data[start:stop], mask)
                if self._compressed:
                    payload = self._inflate_whole(payload)
                events.append(_whole_message(opcode == _TEXT, payload))
                pos = stop
                continue
            if opcode:
                self._message_opcode = opcode
            self._frame_left = length
            self._frame_mask = mask
            self._frame_fin = bool(fin)
            pos = start
            if not length and fin:
                events.append(self._finish_message())
        return pos

    def _parse_header(
        self, data: bytes | bytearray | memoryview, pos: int, first: int, second: int
    ) -> tuple[int, int, int, bytes | None, int] | None:
        """Check a frame header against the rules; (opcode, fin, length, mask, payload start),
        or None while it is incomplete. Raises ProtocolError for a frame the peer may not send."""
        fin = first & _FIN
        opcode = first & _OPCODE_MASK
        rsv = first & _RSV_MASK
        if rsv:
            _check_rsv(rsv, opcode, self._decompressor is not None)
        if opcode not in _KNOWN_OPCODES:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        masked = second & _MASK_BIT
        if self._require_mask and not masked:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "client frame is not masked")
        is_control = opcode & _CONTROL_BIT
        if is_control:
            if not fin:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
        elif opcode == _CONTINUATION:
            if not self._message_opcode:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "continuation without message")
        elif self._message_opcode:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "new message inside fragmented one")

        end = len(data)
        length = second & _LENGTH_MASK
        start = pos + 2
        if length == _LENGTH_16:
            if end - start < 2:
                return None
            (length,) = _UINT16.unpack_from(data, start)
            start += 2
        elif length == _LENGTH_64:
            if end - start < 8:
                return None
            (length,) = _UINT64.unpack_from(data, start)
            start += 8
            if length >> 63:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "frame length over 63 bits")
        compressed = bool(rsv) or (opcode == _CONTINUATION and self._compressed)
        if is_control:
            if length > MAX_CONTROL_PAYLOAD_BYTES:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "control frame over 125 bytes")
        elif (self._wire_bytes if compressed else self._message_bytes) + length > (
            self._max_message_bytes
        ):
            # Refused on the header alone, before buffering any of the payload. A compressed
            # message's bytes on the wire count against the limit too, so a stream that never
            # inflates to anything cannot go on forever.
            raise self._too_big()
        mask: bytes | None = None
        if masked:
            if end - start < 4:
                return None
            mask = bytes(data[start : start + 4])
            start += 4
        if rsv:
            self._compressed = True
        return opcode, fin, length, mask, start

    def _too_big(self) -> ProtocolError:
        return ProtocolError(
            CloseCode.MESSAGE_TOO_BIG, f"message over {self._max_message_bytes} bytes"
        )

    def _consume_payload(self, chunk: bytes | bytearray | memoryview) -> None:
        """Take in the next part of the current data frame's payload."""
        size = len(chunk)
        self._frame_left -= size
        mask = self._frame_mask
        if mask is None:
            payload: bytes | bytearray | memoryview = chunk
        else:
            payload = unmask(chunk, mask)
            shift = size % 4
            if shift:
                self._frame_mask = mask[shift:] + mask[:shift]
        if self._compressed:
            self._wire_bytes += size
            payload = self._inflate(payload)
        self._take(payload)

    def _inflate(self, payload: bytes | bytearray | memoryview, last: bool = False) -> bytes:
        """Inflate the next compressed bytes (or, `last`, the message's end) within the limit."""
        assert self._decompressor is not None  # RSV1 is refused without one
        room = self._max_message_bytes - self._message_bytes
        # One byte more than the room: getting it means the message is over the limit, and
        # zlib stops there, however much more the data would inflate to.
        if last:
            inflated = self._decompressor.finish(room + 1)
        else:
            inflated = self._decompressor.inflate(payload, room + 1)
        if len(inflated) > room:
            raise self._too_big()
        return inflated

    def _inflate_whole(self, payload: bytes) -> bytes:
        """A whole compressed message in one frame, inflated within the limit."""
        assert self._decompressor is not None  # RSV1 is refused without one
        self._compressed = False
        room = self._max_message_bytes
        inflated = self._decompressor.inflate_message(payload, room + 1)
        if len(inflated) > room:
            raise self._too_big()
        return inflated

    def _take(self, payload: bytes | bytearray | memoryview) -> None:
        """Keep the next payload bytes of the message in progress, validating text."""
        size = len(payload)
        if not size:
            return
        self._message_bytes += size
        if self._message_opcode == _TEXT:
            decoder = self._decoder
            try:
                decoder.decode(payload)
            except UnicodeDecodeError:
                raise _invalid_utf8() from None
            # CPython's decoder waits for a third byte before refusing a UTF-16 surrogate
            # (ED A0..ED BF), which can never become valid: refuse it now, to fail fast.
            pending = decoder.getstate()[0]
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise _invalid_utf8()
        parts = self._parts
        if size >= _JOIN_FRAGMENT_BYTES:
            parts.append(bytes(payload) if not isinstance(payload, bytes) else payload)
        elif parts and type(parts[-1]) is bytearray and len(parts[-1]) < _JOIN_FRAGMENT_BYTES:
            parts[-1] += payload
        else:
            parts.append(bytearray(payload))

    def _finish_message(self) -> Message:
        """The message in progress is complete: join its parts and reset."""
        if self._compressed:
            self._take(self._inflate(b"", last=True))
            self._compressed = False
            self._wire_bytes = 0
        parts = self._parts
        raw = parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)
        self._parts = []
        opcode = self._message_opcode
        self._message_opcode = 0
        self._message_bytes = 0
        if opcode == _BINARY:
            return Message(bytes(raw))
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise _invalid_utf8() from None
        finally:
            self._decoder.reset()
        # Validated as it arrived, so this cannot fail.
        return Message(raw.decode())


def _check_rsv(rsv: int, opcode: int, deflate: bool) -> None:
    """Refuse reserved bits, unless it is RSV1 on a message's first frame with deflate on."""
    if rsv != _RSV1 or not deflate:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "RSV bit set without extension")
    if opcode & _CONTROL_BIT:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "RSV1 set on a control frame")
    if opcode == _CONTINUATION:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "RSV1 set on a continuation frame")


def _payload(raw: bytes | bytearray | memoryview, mask: bytes | None) -> bytes:
    """A frame's payload, unmasked (copied either way: `raw` may be a reused buffer)."""
    return unmask(raw, mask) if mask is not None else bytes(raw)


def _control_event(opcode: int, payload: bytes) -> Ping | Pong | Close:
    if opcode == _PING:
        return Ping(payload)
    if opcode == _PONG:
        return Pong(payload)
    return _parse_close(payload)


def _whole_message(is_text: bool, payload: bytes) -> Message:
    """A message that came in one frame: text is decoded, strictly."""
    if not is_text:
        return Message(payload)
    try:
        return Message(payload.decode())
    except UnicodeDecodeError:
        raise _invalid_utf8() from None


def _invalid_utf8() -> ProtocolError:
    return ProtocolError(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "text is not valid UTF-8")
