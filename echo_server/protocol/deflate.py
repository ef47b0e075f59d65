"""The permessage-deflate extension of RFC 7692, server side, with no I/O (Sans-IO).

Three things: `negotiate` reads a client's `Sec-WebSocket-Extensions` offers and chooses the
answer (an `Agreement`, whose `response` is the header value to send back); `Inflater`
decompresses the client's compressed messages a received piece at a time, never producing more
than the caller's byte budget (so a message that inflates to gigabytes costs at most the
message limit's worth of work before it is refused); `Deflater` compresses the server's
messages. The frame reader (frames.py) drives an `Inflater` through its `Decompressor` protocol;
the connection decides which messages go through the `Deflater`.

This module is not the frame codec (RSV1, the message limit and the close codes are enforced in
frames.py) and not the handshake (handshake.py puts the answer in the 101 response).

What is negotiated, and why:

- Offers are taken in the client's order of preference; the first valid one is accepted. An
  offer with an unknown parameter, a repeated one or a bad value is declined (RFC 7692
  section 5), and the next one considered; a header that does not parse is no offer at all.
  Either way the client simply gets no compression: refusing the handshake would fail clients
  that work fine without it.
- Window bits and zlib's memory level follow websockets' server defaults (12 bits for both
  sides' windows, memLevel 5): about 38 KiB for our compressor and 11 KiB for the client's
  decompressor, instead of 260 KiB and 40 KiB at zlib's maxima, for little loss of ratio on
  the short messages a WebSocket carries. We always answer `server_max_window_bits` (the window
  we really use: the smaller of 12 and what the client asked for), and `client_max_window_bits`
  when the client said it accepts one (the smaller of 12 and its hint).
- zlib cannot compress with an 8-bit window (it refuses raw deflate with wbits 8). A client
  that asks for `server_max_window_bits=8` (a microcontroller short of memory, say) is not
  declined, as websockets declines it: we accept, answer 8, and send every message
  uncompressed, which RFC 7692 allows message by message. Its compressed messages are still
  read.
- `server_no_context_takeover` and `client_no_context_takeover` are answered when offered: the
  first makes us compress every message on its own, the second lets us drop the client's
  decompressor after each message.

Memory. zlib state is made on first use, not at the handshake: a compressed connection that
has exchanged nothing holds no zlib memory at all, and one that only ever sends messages under
`min_bytes` (32 by default: deflate cannot make them meaningfully smaller) never makes a
compressor. Without context takeover the state is freed after each message. With context
takeover the client's decompressor must live as long as the connection (its next message may
refer to this one); our compressor need not: a sender may always start afresh (the receiver's
window simply goes unused), so `Deflater.release_if_idle`, called at each keepalive ping, frees
a compressor that compressed nothing since the last ping.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from echo_server import defaults
from echo_server.protocol.frames import CloseCode, ProtocolError

__all__ = [
    "EXTENSION_NAME",
    "Agreement",
    "Deflater",
    "Inflater",
    "Offer",
    "negotiate",
    "parse_extensions",
    "parse_offer",
]

EXTENSION_NAME: Final = "permessage-deflate"
MIN_WINDOW_BITS: Final = 8
MAX_WINDOW_BITS: Final = 15
# zlib refuses to compress raw deflate with an 8-bit window (madler/zlib issue 171).
MIN_COMPRESS_WINDOW_BITS: Final = 9
# A message's compressed data ends with an empty stored block from the sync flush, which RFC
# 7692 section 7.2.1 removes on the wire and section 7.2.2 puts back before inflating.
_SYNC_FLUSH_TAIL: Final = b"\x00\x00\xff\xff"

# RFC 9110 section 5.6.2 (token) and 5.6.4 (quoted-string), for RFC 6455 section 9.1's grammar.
_TOKEN_RE = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_OWS_RE = re.compile(r"[ \t]*")
_ESCAPE_RE = re.compile(r"\\(.)")
_WINDOW_BITS_RE = re.compile(r"[1-9][0-9]?")  # a decimal integer without leading zeroes

Parameters = list[tuple[str, str | None]]


def parse_extensions(values: Sequence[str]) -> list[tuple[str, Parameters]]:
    """The extensions offered in `Sec-WebSocket-Extensions` header values, in order.

    Each is (name, [(parameter, value or None), ...]) with names lower-cased and quoted values
    unquoted. Raises ValueError when a value does not follow RFC 6455 section 9.1's grammar.
    """
    found: list[tuple[str, Parameters]] = []
    for value in values:
        pos = 0
        end = len(value)
        while True:
            pos = _skip(value, pos)
            if pos == end:
                break
            if value[pos] == ",":  # empty list elements are allowed (RFC 9110 5.6.1)
                pos += 1
                continue
            name, pos = _token(value, pos, "an extension name")
            params: Parameters = []
            pos = _skip(value, pos)
            while pos < end and value[pos] == ";":
                param, pos = _token(value, _skip(value, pos + 1), "a parameter name")
                pos = _skip(value, pos)
                param_value: str | None = None
                if pos < end and value[pos] == "=":
                    param_value, pos = _param_value(value, _skip(value, pos + 1))
                    pos = _skip(value, pos)
                params.append((param.lower(), param_value))
            found.append((name.lower(), params))
            if pos < end and value[pos] != ",":
                raise ValueError(f"unexpected {value[pos]!r} at position {pos}")
    return found


def _skip(text: str, pos: int) -> int:
    found = _OWS_RE.match(text, pos)
    assert found is not None  # matches the empty string at worst
    return found.end()


def _token(text: str, pos: int, what: str) -> tuple[str, int]:
    found = _TOKEN_RE.match(text, pos)
    if found is None:
        raise ValueError(f"expected {what} at position {pos}")
    return found.group(), found.end()


def _param_value(text: str, pos: int) -> tuple[str, int]:
    if pos < len(text) and text[pos] == '"':
        found = _QUOTED_RE.match(text, pos)
        if found is None:
            raise ValueError(f"unterminated quoted string at position {pos}")
        unquoted = _ESCAPE_RE.sub(r"\1", found.group(1))
        # RFC 6455 section 9.1: once unquoted, the value must still be a token.
        if not _TOKEN_RE.fullmatch(unquoted):
            raise ValueError(f"quoted value {unquoted!r} is not a token")
        return unquoted, found.end()
    return _token(text, pos, "a parameter value")


@dataclass(frozen=True, slots=True)
class Offer:
    """One valid permessage-deflate offer (RFC 7692 section 7.1).

    `client_max_window_bits` is True when offered without a value (the client accepts one in
    the response), a number when offered with a hint, None when not offered.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | bool | None = None


def parse_offer(params: Parameters) -> Offer:
    """A permessage-deflate offer's parameters, checked; ValueError says why it is declined."""
    seen: set[str] = set()
    server_no_context_takeover = client_no_context_takeover = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | bool | None = None
    for name, value in params:
        if name in seen:
            raise ValueError(f"{name} appears twice")
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise ValueError(f"{name} takes no value")
            if name == "server_no_context_takeover":
                server_no_context_takeover = True
            else:
                client_no_context_takeover = True
        elif name == "server_max_window_bits":
            if value is None:
                raise ValueError("server_max_window_bits needs a value")
            server_max_window_bits = _window_bits(name, value)
        elif name == "client_max_window_bits":
            client_max_window_bits = True if value is None else _window_bits(name, value)
        else:
            raise ValueError(f"unknown parameter {name}")
    return Offer(
        server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    )


def _window_bits(name: str, value: str) -> int:
    if not _WINDOW_BITS_RE.fullmatch(value) or not (
        MIN_WINDOW_BITS <= int(value) <= MAX_WINDOW_BITS
    ):
        raise ValueError(f"{name} must be 8 to 15, got {value!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Agreement:
    """What was agreed, as the server sees it, and the header value that says so.

    `server_max_window_bits` is the window our compressor uses (8: it never compresses);
    `client_max_window_bits` the largest the client may use (15 when the response sets none).
    """

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int
    client_max_window_bits: int
    client_max_window_bits_answered: bool  # whether the response names it

    @property
    def response(self) -> str:
        """The Sec-WebSocket-Extensions value of the 101 response."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits_answered:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)

    def inflater(self) -> Inflater:
        return Inflater(self.client_max_window_bits, self.client_no_context_takeover)

    def deflater(self, min_bytes: int = defaults.DEFLATE_MIN_MESSAGE_BYTES) -> Deflater:
        bits = self.server_max_window_bits
        return Deflater(
            bits if bits >= MIN_COMPRESS_WINDOW_BITS else None,
            self.server_no_context_takeover,
            min_bytes=min_bytes,
        )


def negotiate(
    header_values: Sequence[str],
    *,
    server_max_window_bits: int = defaults.DEFLATE_SERVER_MAX_WINDOW_BITS,
    client_max_window_bits: int = defaults.DEFLATE_CLIENT_MAX_WINDOW_BITS,
) -> Agreement | None:
    """The answer to a client's `Sec-WebSocket-Extensions` values: the first acceptable
    permessage-deflate offer, or None (no compression) when there is none.

    `server_max_window_bits` (9 to 15) is the largest window our compressor will use,
    `client_max_window_bits` (8 to 15) the largest we ask the client to use when it lets us.
    """
    if not MIN_COMPRESS_WINDOW_BITS <= server_max_window_bits <= MAX_WINDOW_BITS:
        raise ValueError("server_max_window_bits must be 9 to 15")
    if not MIN_WINDOW_BITS <= client_max_window_bits <= MAX_WINDOW_BITS:
        raise ValueError("client_max_window_bits must be 8 to 15")
    try:
        extensions = parse_extensions(header_values)
    except ValueError:
        return None
    for name, params in extensions:
        if name != EXTENSION_NAME:
            continue
        try:
            offer = parse_offer(params)
        except ValueError:
            continue  # declined: the next offer may do
        server_bits = min(offer.server_max_window_bits or MAX_WINDOW_BITS, server_max_window_bits)
        hint = offer.client_max_window_bits
        client_bits = MAX_WINDOW_BITS
        if hint is not None:  # the client accepts a limit: ours, or its own hint if smaller
            client_bits = min(MAX_WINDOW_BITS if hint is True else hint, client_max_window_bits)
        return Agreement(
            server_no_context_takeover=offer.server_no_context_takeover,
            client_no_context_takeover=offer.client_no_context_takeover,
            server_max_window_bits=server_bits,
            client_max_window_bits=client_bits,
            client_max_window_bits_answered=hint is not None,
        )
    return None


class Inflater:
    """Decompresses the client's compressed messages, a received piece at a time.

    Implements frames.Decompressor. The zlib object is made at the first compressed message and
    dropped after each message without context takeover (or after a stream the client ended
    with a final block), so it holds memory only while it must.
    """

    __slots__ = ("_no_context_takeover", "_wbits", "_zlib")

    def __init__(self, window_bits: int, no_context_takeover: bool) -> None:
        # A larger window than the sender's always works, and zlib's inflate is sturdier with 9
        # or more: some deflaters asked for 8 really use 9.
        self._wbits = -max(window_bits, MIN_COMPRESS_WINDOW_BITS)
        self._no_context_takeover = no_context_takeover
        self._zlib: zlib._Decompress | None = None

    @property
    def holds_state(self) -> bool:
        """Whether zlib memory is held now (for tests and memory accounting)."""
        return self._zlib is not None

    def inflate(self, data: bytes | bytearray | memoryview, max_length: int) -> bytes:
        """The next compressed bytes of a message: their inflated bytes, at most `max_length`.

        Inflating stops after `max_length` bytes of output, so a caller that gets exactly that
        many knows the message is at least that large, and zlib did no more work than that.
        Raises ProtocolError (1007) for data that is not valid deflate.
        """
        decompressor = self._zlib
        if decompressor is None:
            decompressor = self._zlib = zlib.decompressobj(wbits=self._wbits)
        elif decompressor.eof:
            raise ProtocolError(
                CloseCode.INVALID_FRAME_PAYLOAD_DATA, "data after the final deflate block"
            )
        try:
            return decompressor.decompress(data, max_length)
        except zlib.error:
            raise ProtocolError(
                CloseCode.INVALID_FRAME_PAYLOAD_DATA, "invalid compressed data"
            ) from None

    def finish(self, max_length: int) -> bytes:
        """The message's last frame is in: the rest of its inflated bytes (at most
        `max_length`), after the sync-flush tail RFC 7692 removes on the wire is put back."""
        decompressor = self._zlib
        if decompressor is None:  # a compressed message with an empty payload
            decompressor = self._zlib = zlib.decompressobj(wbits=self._wbits)
        out = b""
        if not decompressor.eof:
            out = self.inflate(_SYNC_FLUSH_TAIL, max_length)
        self._end_message()
        return out

    def inflate_message(self, data: bytes | bytearray | memoryview, max_length: int) -> bytes:
        """A whole message's compressed bytes (one frame): `inflate` and `finish` in one call,
        the tail put back with one copy, which costs less than a second call for short ones."""
        out = self.inflate(bytes(data) + _SYNC_FLUSH_TAIL, max_length)
        self._end_message()
        return out

    def _end_message(self) -> None:
        decompressor = self._zlib
        if self._no_context_takeover or (decompressor is not None and decompressor.eof):
            self._zlib = None

    def reset(self) -> None:
        """Drop any state (the reader failed or closed)."""
        self._zlib = None


class Deflater:
    """Compresses the server's messages; `compress` returns None for "send it as it is".

    `window_bits` None means never compress (the client asked for a window zlib cannot make).
    Messages under `min_bytes` are never compressed, so their connection never makes a
    compressor. Without context takeover a message that would not shrink is sent as it is too.
    """

    __slots__ = (
        "_level",
        "_mem_level",
        "_min_bytes",
        "_no_context_takeover",
        "_used",
        "_wbits",
        "_zlib",
    )

    def __init__(
        self,
        window_bits: int | None,
        no_context_takeover: bool,
        *,
        min_bytes: int = defaults.DEFLATE_MIN_MESSAGE_BYTES,
        level: int = defaults.DEFLATE_LEVEL,
        mem_level: int = defaults.DEFLATE_MEM_LEVEL,
    ) -> None:
        if window_bits is not None and not (
            MIN_COMPRESS_WINDOW_BITS <= window_bits <= MAX_WINDOW_BITS
        ):
            raise ValueError("a compressor's window is 9 to 15 bits")
        self._wbits = None if window_bits is None else -window_bits
        self._no_context_takeover = no_context_takeover
        self._min_bytes = min_bytes
        self._level = level
        self._mem_level = mem_level
        self._zlib: zlib._Compress | None = None
        self._used = False  # compressed something since the last release_if_idle()

    @property
    def holds_state(self) -> bool:
        """Whether zlib memory is held now (for tests and memory accounting)."""
        return self._zlib is not None

    def compress(self, payload: bytes | bytearray | memoryview) -> bytes | None:
        """The message's payload as compressed on the wire (sync-flush tail removed), or None
        to send it uncompressed."""
        wbits = self._wbits
        if wbits is None or len(payload) < self._min_bytes:
            return None
        compressor = self._zlib
        if compressor is None:
            compressor = zlib.compressobj(self._level, zlib.DEFLATED, wbits, self._mem_level)
            if not self._no_context_takeover:
                self._zlib = compressor
        self._used = True
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        data = data[: -len(_SYNC_FLUSH_TAIL)]
        if self._no_context_takeover and len(data) >= len(payload):
            # Nothing refers to this message later, so it may go out as it is (RFC 7692 6.1).
            return None
        return data

    def release_if_idle(self) -> None:
        """Free the compressor if it compressed nothing since the last call (call it now and
        then: the connection does at each keepalive ping). The next message then starts a fresh
        context, which the client's decompressor reads like any other."""
        if not self._used:
            self._zlib = None
        self._used = False
