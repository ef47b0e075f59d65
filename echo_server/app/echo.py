"""The echo routes: `/` and `/echo` (every message back, and faults on demand) and `/inspect`.

`Echo` sends every message back unchanged (text as text, binary as binary, byte for byte). With
fault knobs in the URL's query (faults.py: `?delay=200`, `?close=4000:bye&after=3`, `?drop`,
`?fragment=16`, `?repeat=3`, `?ping=1`, `?push=1024&every=100`) it misbehaves on purpose, within
bounds; a bad knob is refused with 400 before the upgrade (the constructor raises `HttpError`).

`Inspect` echoes like `Echo`, and first tells the client what the server saw, one JSON text
message per event: the handshake (method, target, HTTP version, headers in order, the client's
address, TLS, offered and chosen subprotocols and extensions), every frame as it arrived (opcode,
FIN, RSV bits, mask, length, the first 64 bytes of payload), pongs with their round trip, and
the peer's close. Browsers hide all of this; a client's author needs it.

Not a proxy or a recorder: nothing is kept after the connection closes.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from echo_server import defaults
from echo_server.app.faults import NO_FAULTS, fragment_size, parse_faults
from echo_server.core.connection import Connection, Host
from echo_server.protocol.frames import CloseCode, FrameSeen, Opcode, message_payload
from echo_server.protocol.http import Request

PUSH_FILL = b"0123456789abcdef"


class Echo(Connection):
    """Every message comes back unchanged; fault knobs from the query string."""

    def __init__(self, server: Host, sock: socket.socket, address: Any, request: Request) -> None:
        # Checked first: a bad knob is a 400 before the upgrade, and nothing is set up.
        self.faults = parse_faults(request.query, server.settings.max_message_bytes)
        super().__init__(server, sock, address, request)
        # Plain echoes go the connection's fast way, unless a subclass does more with them.
        self.echoes = (
            self.faults is NO_FAULTS and type(self).handle is Echo.handle and not self.report_frames
        )
        self.received = 0
        self._delayed_bytes = 0  # echoes waiting out `delay`
        self._pushed = 0
        self._pinged = 0

    def connected(self) -> None:
        faults = self.faults
        if faults is NO_FAULTS:
            return
        if faults.ping_s:
            self.every(faults.ping_s, self._ping_counter)
        if faults.push_bytes:
            self.every(faults.push_every_s, self._push)
        if (faults.close or faults.drop) and faults.after == 0:
            self._end()

    def handle(self) -> None:
        faults = self.faults
        if faults is NO_FAULTS:
            self.send_message(self.data)
            return
        self.received += 1
        opcode, payload = message_payload(self.data)
        if len(payload) * faults.repeat > defaults.FAULT_MAX_ECHO_BYTES:
            self.close(
                CloseCode.MESSAGE_TOO_BIG,
                f"repeat={faults.repeat}: the echoes of one message may be at most "
                f"{defaults.FAULT_MAX_ECHO_BYTES} bytes",
            )
            return
        ends = (faults.close or faults.drop) and self.received == faults.after
        if faults.delay_s:
            if self._delayed_bytes + len(payload) > self.server.settings.write_limit_bytes:
                self.close(CloseCode.POLICY_VIOLATION, "too many delayed echoes waiting")
                return
            self._delayed_bytes += len(payload)
            data = bytes(payload)
            self.later(faults.delay_s, lambda: self._send_delayed(opcode, data, ends))
            return
        self._echo(opcode, payload)
        if ends:
            self._end()

    def _send_delayed(self, opcode: Opcode, payload: bytes, ends: bool) -> None:
        self._delayed_bytes -= len(payload)
        self._echo(opcode, payload)
        if ends:
            self._end()

    def _echo(self, opcode: Opcode, payload: bytes | bytearray | memoryview) -> None:
        size = fragment_size(self.faults, len(payload))
        for _ in range(self.faults.repeat):
            if not size or len(payload) <= size:
                self.send_frame(opcode, payload)
                continue
            view = memoryview(payload)
            for start in range(0, len(payload), size):
                first = start == 0
                last = start + size >= len(payload)
                kind = opcode if first else Opcode.CONTINUATION
                self.send_frame(kind, view[start : start + size], fin=last)

    def _end(self) -> None:
        if self.faults.drop:
            self.soon(self.reset)  # once what is queued (the 101, the last echo) has gone out
        elif self.faults.close is not None:
            code, reason = self.faults.close
            self.close(code, reason)

    def _ping_counter(self) -> None:
        self._pinged += 1
        self.ping(str(self._pinged).encode())

    def _push(self) -> None:
        if self._out.cost > self.server.settings.write_limit_bytes:
            return  # the client is not reading: skip, rather than queue without end
        self._pushed += 1
        size = self.faults.push_bytes
        head = f"{self._pushed:08d} ".encode()[:size]
        fill = PUSH_FILL * (size // len(PUSH_FILL) + 1)
        self.send_message((head + fill[: size - len(head)]).decode("ascii"))


class Inspect(Echo):
    """Echoes, and tells the client what the server saw, as JSON text messages."""

    report_frames = True

    def connected(self) -> None:
        self._event(handshake_event(self))
        super().connected()

    def frame_received(self, frame: FrameSeen) -> None:
        self._event(frame_event(frame))

    def pong_received(self, payload: bytes, rtt_s: float) -> None:
        self._event({"event": "pong", "payload": shown(payload), "rtt_ms": round(rtt_s * 1000, 3)})

    def close_received(self, code: int, reason: str) -> None:
        self._event({"event": "close", "code": code, "reason": reason})

    def _event(self, event: dict[str, Any]) -> None:
        self.send_message(json.dumps(event, separators=(",", ":"), ensure_ascii=False))


def handshake_event(connection: Connection) -> dict[str, Any]:
    """What the client sent to open the connection, and what it was given."""
    request = connection.request
    headers = request.headers
    host, port = connection.address[0], connection.address[1]
    return {
        "event": "handshake",
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "http_version": request.version,
        "headers": [[name, value] for name, value in headers.items()],
        "client": {"address": host, "port": port},
        "tls": connection.usingssl,
        "subprotocols_offered": headers.tokens("Sec-WebSocket-Protocol"),
        "subprotocol": connection.subprotocol,
        "extensions_offered": offered_extensions(request),
        "extensions": connection.extensions,
    }


def offered_extensions(request: Request) -> list[str]:
    """Each extension offered, with its parameters, as sent ("permessage-deflate; ...")."""
    offers = ",".join(request.headers.get_all("Sec-WebSocket-Extensions")).split(",")
    return [offer.strip() for offer in offers if offer.strip()]


def frame_event(frame: FrameSeen) -> dict[str, Any]:
    return {
        "event": "frame",
        "opcode": opcode_name(frame.opcode),
        "fin": frame.fin,
        "rsv": [bool(frame.rsv & 4), bool(frame.rsv & 2), bool(frame.rsv & 1)],
        "masked": frame.masked,
        "mask": frame.mask.hex() if frame.mask is not None else None,
        "length": frame.length,
        "payload": shown(frame.head),
        "payload_shown": len(frame.head),
    }


def opcode_name(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"0x{opcode:x}"


def shown(data: bytes) -> dict[str, str]:
    """Bytes for a person: as text when they are UTF-8 (a cut character at the end allowed),
    as hex otherwise."""
    try:
        return {"text": data.decode()}
    except UnicodeDecodeError as error:
        if error.start >= len(data) - 3 and error.reason == "unexpected end of data":
            return {"text": data[: error.start].decode()}
        return {"hex": data.hex()}
