"""Faults on demand for the echo routes, chosen by the query string: a server that misbehaves
on purpose, so that a client's author can see what their client does when it happens.

`parse_faults(query)` reads the knobs and checks each against its bound (defaults.py), raising
`HttpError(400)` with the reason, so a bad knob is refused before the upgrade. The routes carry
them out (routes.py, `Echo`). The knobs:

| knob | what the server does |
|---|---|
| `delay=MS` | each echo is sent MS milliseconds late (a loop timer; order kept) |
| `close=CODE[:REASON]`, `after=N` | after N messages (0: at once), close with CODE and REASON |
| `drop`, `after=N` | after N messages (0: at once), reset the TCP connection: no close frame |
| `fragment=BYTES` | echoes are sent in fragments of BYTES (at most 4,096 per message) |
| `repeat=K` | each message is echoed K times (at most 16, and 4 MiB in all per message) |
| `ping=S` | the server pings every S seconds, with a counter as the payload |
| `push=BYTES`, `every=MS` | the server sends a text message of BYTES every MS milliseconds |

Other query parameters are ignored (a URL may carry its own). Not a protocol fuzzer: every
frame sent is valid; what is faulty is timing, shape and endings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import parse_qs

from echo_server import defaults
from echo_server.protocol.frames import MAX_CLOSE_REASON_BYTES, is_valid_close_code
from echo_server.protocol.http import HttpError

KNOBS = ("delay", "close", "after", "drop", "fragment", "repeat", "ping", "push", "every")


@dataclass(frozen=True, slots=True)
class Faults:
    delay_s: float = 0.0
    close: tuple[int, str] | None = None  # (code, reason)
    drop: bool = False
    after: int = 0
    fragment_bytes: int = 0  # 0: unfragmented
    repeat: int = 1
    ping_s: float = 0.0  # 0: no pings of this knob (the keepalive goes on)
    push_bytes: int = 0  # 0: nothing pushed
    push_every_s: float = 0.0

    @property
    def any(self) -> bool:
        return self != NO_FAULTS


NO_FAULTS = Faults()


def parse_faults(query: str, max_message_bytes: int = defaults.MAX_MESSAGE_BYTES) -> Faults:
    """The knobs of `query` (a URL's query string); HttpError(400) naming a bad one."""
    values = parse_qs(query, keep_blank_values=True)
    if not any(knob in values for knob in KNOBS):
        return NO_FAULTS
    for knob in KNOBS:
        if len(values.get(knob, ())) > 1:
            raise _refuse(f"{knob} is given more than once")
    one = {knob: values[knob][0] for knob in KNOBS if knob in values}
    close = _close(one["close"]) if "close" in one else None
    drop = "drop" in one
    if drop and one["drop"] not in ("", "1", "true"):
        raise _refuse("drop takes no value (?drop&after=N)")
    if close and drop:
        raise _refuse("close and drop cannot both end the connection")
    after = _integer(one, "after", 0, defaults.FAULT_MAX_AFTER, 0)
    if "after" in one and not (close or drop):
        raise _refuse("after=N goes with close=CODE or drop")
    push_bytes = _integer(one, "push", 1, defaults.FAULT_MAX_PUSH_BYTES, 0)
    every_ms = _integer(
        one, "every", defaults.FAULT_MIN_PUSH_EVERY_MS, defaults.FAULT_MAX_PUSH_EVERY_MS, 0
    )
    if bool(push_bytes) != bool(every_ms):
        raise _refuse("push=BYTES and every=MS go together")
    return Faults(
        delay_s=_integer(one, "delay", 0, defaults.FAULT_MAX_DELAY_MS, 0) / 1000,
        close=close,
        drop=drop,
        after=after,
        fragment_bytes=_integer(one, "fragment", 1, max_message_bytes, 0),
        repeat=_integer(one, "repeat", 1, defaults.FAULT_MAX_REPEAT, 1),
        ping_s=_seconds(one, "ping", defaults.FAULT_MIN_PING_S, defaults.FAULT_MAX_PING_S),
        push_bytes=push_bytes,
        push_every_s=every_ms / 1000,
    )


def fragment_size(faults: Faults, message_bytes: int) -> int:
    """The fragment size to use for a message: the knob's, raised to keep to the most
    fragments a message may become; 0 for no fragmenting."""
    if not faults.fragment_bytes:
        return 0
    least = math.ceil(message_bytes / defaults.FAULT_MAX_FRAGMENTS)
    return max(faults.fragment_bytes, least, 1)


def _refuse(reason: str) -> HttpError:
    return HttpError(400, f"Bad fault knob: {reason}. Knobs: {', '.join(KNOBS)}.")


def _integer(values: dict[str, str], knob: str, low: int, high: int, default: int) -> int:
    if knob not in values:
        return default
    text = values[knob]
    if not text.isdigit() or len(text) > len(str(high)):
        raise _refuse(f"{knob}={text!r} is not a whole number of {low} to {high}")
    number = int(text)
    if not low <= number <= high:
        raise _refuse(f"{knob}={number} is not within {low} to {high}")
    return number


def _seconds(values: dict[str, str], knob: str, low: float, high: float) -> float:
    if knob not in values:
        return 0.0
    text = values[knob]
    try:
        number = float(text)
    except ValueError:
        raise _refuse(f"{knob}={text!r} is not a number of seconds") from None
    if not low <= number <= high:  # NaN fails this too
        raise _refuse(f"{knob}={text} is not within {low:g} to {high:g} seconds")
    return number


def _close(text: str) -> tuple[int, str]:
    code_text, _, reason = text.partition(":")
    if not code_text.isdigit() or len(code_text) > 4 or not is_valid_close_code(int(code_text)):
        raise _refuse(f"close={code_text!r} is not a close code a server may send")
    if len(reason.encode()) > MAX_CLOSE_REASON_BYTES:
        raise _refuse(f"the close reason is over {MAX_CLOSE_REASON_BYTES} bytes")
    return int(code_text), reason
