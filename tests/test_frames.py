"""Specification of echo_server.frames: the RFC 6455 frame codec, with byte strings only.

Client frames are built with `encode_frame(..., mask=...)`, checked against the examples of
RFC 6455 section 5.7 and against the independent encoder of the `websockets` package.
"""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Callable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Close as WsClose
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode

from echo_server.protocol import frames
from echo_server.protocol.frames import (
    Close,
    CloseCode,
    Event,
    FrameReader,
    Message,
    Opcode,
    Ping,
    Pong,
    ProtocolError,
    ReaderState,
    encode_close,
    encode_frame,
    frame_header,
    is_valid_close_code,
    unmask,
    unmask_python,
)

MASK = b"abcd"
MIB = 1024 * 1024
# Autobahn|Testsuite case 6.4.1: valid "κόσμε", then F4 90 80 80 (above U+10FFFF), then "edited".
KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
BEYOND_UNICODE = b"\xf4\x90\x80\x80"
EDITED = b"edited"


def client_frame(
    opcode: Opcode | int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0
) -> bytes:
    """A frame as a client sends it: masked."""
    return encode_frame(opcode, payload, fin=fin, mask=MASK, rsv=rsv)


def feed_all(
    data: bytes, *, max_message_bytes: int = MIB, require_mask: bool = True
) -> list[Event]:
    """The events a fresh reader gives for `data` fed at once."""
    reader = FrameReader(max_message_bytes=max_message_bytes, require_mask=require_mask)
    return reader.feed(data)


def refusal(data: bytes, *, max_message_bytes: int = MIB) -> ProtocolError:
    """The ProtocolError a fresh reader raises on `data` (at once, or on the next call when
    events came before the violation)."""
    reader = FrameReader(max_message_bytes=max_message_bytes)
    with pytest.raises(ProtocolError) as raised:
        reader.feed(data)
        reader.feed()
    return raised.value


def feed_in_chunks(reader: FrameReader, data: bytes, cuts: list[int]) -> list[Event]:
    events: list[Event] = []
    bounds = [0, *sorted(cuts), len(data)]
    for start, stop in pairwise(bounds):
        events += reader.feed(data[start:stop])
    return events


def reference_unmask(payload: bytes, mask: bytes) -> bytes:
    """Byte by byte, as RFC 6455 section 5.3 says; slow, but obviously right."""
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def conversation(big_size: int) -> tuple[bytes, list[Event]]:
    """A stream with every kind of frame, fragmentation and length encoding, and its events."""
    emoji = "😀".encode()
    frames = [
        client_frame(Opcode.TEXT, b"hello"),
        client_frame(Opcode.BINARY, bytes(range(200))),
        client_frame(Opcode.PING, b"are you there"),
        client_frame(Opcode.TEXT, b"fragm", fin=False),
        client_frame(Opcode.PONG, b""),
        client_frame(Opcode.CONTINUATION, b"ented " + emoji[:2], fin=False),
        client_frame(Opcode.CONTINUATION, emoji[2:]),
        client_frame(Opcode.BINARY, b"", fin=False),
        client_frame(Opcode.CONTINUATION, b"x" * big_size),
        client_frame(Opcode.TEXT, b""),
        client_frame(Opcode.CLOSE, b"\x03\xe8bye"),
    ]
    events: list[Event] = [
        Message("hello"),
        Message(bytes(range(200))),
        Ping(b"are you there"),
        Pong(b""),
        Message("fragmented 😀"),
        Message(b"x" * big_size),
        Message(""),
        Close(1000, "bye"),
    ]
    return b"".join(frames), events


# Encoding: exact bytes (RFC 6455 section 5.7 examples).


def test_encode_frame_unmasked_text_matches_rfc_example() -> None:
    assert encode_frame(Opcode.TEXT, b"Hello") == bytes.fromhex("81 05 48 65 6c 6c 6f")


def test_encode_frame_masked_text_matches_rfc_example() -> None:
    frame = encode_frame(Opcode.TEXT, b"Hello", mask=bytes.fromhex("37fa213d"))
    assert frame == bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")


def test_encode_frame_fragments_match_rfc_example() -> None:
    assert encode_frame(Opcode.TEXT, b"Hel", fin=False) == bytes.fromhex("01 03 48 65 6c")
    assert encode_frame(Opcode.CONTINUATION, b"lo") == bytes.fromhex("80 02 6c 6f")


def test_encode_frame_ping_and_masked_pong_match_rfc_example() -> None:
    assert encode_frame(Opcode.PING, b"Hello") == bytes.fromhex("89 05 48 65 6c 6c 6f")
    pong = encode_frame(Opcode.PONG, b"Hello", mask=bytes.fromhex("37fa213d"))
    assert pong == bytes.fromhex("8a 85 37 fa 21 3d 7f 9f 4d 51 58")


def test_encode_frame_256_bytes_has_16_bit_length_header_of_rfc_example() -> None:
    frame = encode_frame(Opcode.BINARY, bytes(256))
    assert frame[:4] == bytes.fromhex("82 7e 01 00")
    assert len(frame) == 4 + 256


def test_encode_frame_64_kib_has_64_bit_length_header_of_rfc_example() -> None:
    frame = encode_frame(Opcode.BINARY, bytes(65536))
    assert frame[:10] == bytes.fromhex("82 7f 00 00 00 00 00 01 00 00")
    assert len(frame) == 10 + 65536


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, "82 00"),
        (125, "82 7d"),
        (126, "82 7e 00 7e"),
        (65535, "82 7e ff ff"),
        (65536, "82 7f 00 00 00 00 00 01 00 00"),
    ],
)
def test_frame_header_uses_shortest_length_encoding(length: int, header: str) -> None:
    assert frame_header(Opcode.BINARY, length) == bytes.fromhex(header)


def test_frame_header_without_fin_clears_fin_bit() -> None:
    assert frame_header(Opcode.TEXT, 3, fin=False) == bytes.fromhex("01 03")


def test_encode_frame_is_frame_header_then_payload() -> None:
    payload = bytes(range(256)) * 300
    assert encode_frame(Opcode.BINARY, payload) == frame_header(Opcode.BINARY, len(payload)) + (
        payload
    )


@pytest.mark.parametrize(("rsv", "first_byte"), [(1, 0x91), (2, 0xA1), (4, 0xC1), (7, 0xF1)])
def test_encode_frame_puts_rsv_bits_after_fin(rsv: int, first_byte: int) -> None:
    assert encode_frame(Opcode.TEXT, b"", rsv=rsv)[0] == first_byte


def test_encode_close_is_code_then_reason() -> None:
    assert encode_close(CloseCode.GOING_AWAY, "bye") == bytes.fromhex("88 05 03 e9") + b"bye"


def test_encode_close_truncates_reason_at_character_boundary_to_fit_125_bytes() -> None:
    frame = encode_close(CloseCode.NORMAL_CLOSURE, "é" * 100)  # 200 bytes of UTF-8
    assert frame[1] <= 125
    assert frame[4:].decode() == "é" * 61  # 122 bytes: a 62nd "é" would not fit in 123


def test_encode_close_keeps_reason_of_exactly_123_bytes() -> None:
    assert encode_close(CloseCode.NORMAL_CLOSURE, "x" * 123)[1] == 125


def test_encode_close_without_status_is_empty_close_frame() -> None:
    assert encode_close(CloseCode.NO_STATUS_RCVD) == bytes.fromhex("88 00")


@pytest.mark.parametrize("code", [999, 1004, 1006, 1015, 2000, 5000])
def test_encode_close_refuses_code_a_peer_may_not_receive(code: int) -> None:
    with pytest.raises(ValueError, match="may not be sent"):
        encode_close(code)


@pytest.mark.parametrize(
    "size", [0, 1, 3, 4, 5, 125, 1023, 1024, 1025, 65535, 65536, 65537, 200_003]
)
@pytest.mark.parametrize("implementation", [unmask, unmask_python])
def test_unmask_xors_each_byte_with_mask_byte_at_its_position(
    size: int, implementation: Callable[[bytes, bytes], bytes]
) -> None:
    payload = random.Random(size).randbytes(size)
    mask = b"\x01\x80\xfe\x37"
    assert implementation(payload, mask) == reference_unmask(payload, mask)


def test_the_pure_python_fallback_reads_the_same_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where websockets' C apply_mask cannot be imported, the reader unmasks in Python.
    monkeypatch.setattr(frames, "_apply_mask_c", None)
    rng = random.Random(7)
    for size in (0, 5, 125, 126, 4096, 70_000):
        payload = rng.randbytes(size)
        wire = encode_frame(Opcode.BINARY, payload, mask=b"\x9a\x01\xff\x42")
        assert FrameReader().feed(wire) == [Message(payload)]
    assert FrameReader().feed(encode_frame(Opcode.TEXT, b"short", mask=b"abcd")) == [
        Message("short")
    ]


def test_unmask_accepts_bytearray_and_memoryview() -> None:
    payload = bytes(range(256)) * 8
    expected = reference_unmask(payload, MASK)
    assert unmask(bytearray(payload), MASK) == expected
    assert unmask(memoryview(payload), MASK) == expected


def test_unmask_undoes_itself() -> None:
    payload = bytes(range(256)) * 5000
    assert unmask(unmask(payload, MASK), MASK) == payload


# Reading: messages and control frames.


def test_reads_masked_text_of_rfc_example() -> None:
    assert feed_all(bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")) == [Message("Hello")]


def test_text_message_is_str_and_binary_message_is_bytes() -> None:
    events = feed_all(client_frame(Opcode.TEXT, b"abc") + client_frame(Opcode.BINARY, b"abc"))
    assert events == [Message("abc"), Message(b"abc")]
    assert [type(event.data) for event in events if isinstance(event, Message)] == [str, bytes]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, MIB])
def test_reads_binary_message_of_any_length_encoding(size: int) -> None:
    payload = random.Random(size).randbytes(size)
    assert feed_all(client_frame(Opcode.BINARY, payload)) == [Message(payload)]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, MIB])
def test_reads_text_message_of_any_length_encoding(size: int) -> None:
    text = "€" * (size // 3) + "a" * (size % 3)  # "€" is 3 bytes of UTF-8
    assert feed_all(client_frame(Opcode.TEXT, text.encode())) == [Message(text)]


def test_reads_ping_and_pong_payloads() -> None:
    data = client_frame(Opcode.PING, b"ping!") + client_frame(Opcode.PONG, b"\x00\xff" * 62)
    assert feed_all(data) == [Ping(b"ping!"), Pong(b"\x00\xff" * 62)]


def test_reads_control_frame_of_125_bytes() -> None:
    assert feed_all(client_frame(Opcode.PING, b"p" * 125)) == [Ping(b"p" * 125)]


def test_reads_close_code_and_reason() -> None:
    frame = client_frame(Opcode.CLOSE, b"\x03\xe9going away \xe2\x82\xac")
    assert feed_all(frame) == [Close(1001, "going away €")]


def test_close_with_empty_payload_reads_as_no_status_received() -> None:
    assert feed_all(client_frame(Opcode.CLOSE)) == [Close(CloseCode.NO_STATUS_RCVD, "")]


def test_bytes_after_close_are_ignored() -> None:
    reader = FrameReader()
    events = reader.feed(client_frame(Opcode.CLOSE) + client_frame(Opcode.TEXT, b"late"))
    assert events == [Close(1005, "")]
    assert reader.feed(client_frame(Opcode.TEXT, b"later")) == []
    assert reader.feed(b"\xff\xff garbage") == []


def test_bytes_after_protocol_error_are_ignored() -> None:
    reader = FrameReader()
    with pytest.raises(ProtocolError):
        reader.feed(client_frame(Opcode.CONTINUATION, b"x"))
    assert reader.feed(client_frame(Opcode.TEXT, b"hello")) == []


def test_many_frames_in_one_feed_give_events_in_order() -> None:
    data = b"".join(client_frame(Opcode.TEXT, str(i).encode()) for i in range(10_000))
    assert feed_all(data) == [Message(str(i)) for i in range(10_000)]


def test_unmasked_frame_is_read_when_mask_not_required() -> None:
    data = encode_frame(Opcode.TEXT, b"hi", fin=False) + encode_frame(Opcode.CONTINUATION, b"!")
    assert feed_all(data, require_mask=False) == [Message("hi!")]


def test_masked_frame_is_read_when_mask_not_required() -> None:
    assert feed_all(client_frame(Opcode.BINARY, b"hi"), require_mask=False) == [Message(b"hi")]


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_non_minimal_length_encodings_are_accepted(opcode: Opcode) -> None:
    payload = b"hello"
    sixteen_bits = bytes([0x80 | opcode, 0x80 | 126, 0, 5]) + MASK + unmask(payload, MASK)
    sixty_four_bits = (
        bytes([0x80 | opcode, 0x80 | 127]) + (5).to_bytes(8, "big") + MASK + unmask(payload, MASK)
    )
    expected = payload.decode() if opcode == Opcode.TEXT else payload
    assert feed_all(sixteen_bits + sixty_four_bits) == [Message(expected), Message(expected)]


# Reading: any split of the stream gives the same events.


def test_stream_fed_one_byte_at_a_time_gives_same_events() -> None:
    stream, expected = conversation(big_size=70_000)
    reader = FrameReader()
    events: list[Event] = []
    for i in range(len(stream)):
        events += reader.feed(stream[i : i + 1])
    assert events == expected


def test_stream_split_at_every_boundary_gives_same_events() -> None:
    stream, expected = conversation(big_size=300)
    for cut in range(len(stream) + 1):
        assert feed_in_chunks(FrameReader(), stream, [cut]) == expected, cut


@pytest.mark.parametrize("seed", range(20))
def test_stream_in_random_chunks_gives_same_events(seed: int) -> None:
    stream, expected = conversation(big_size=70_000)
    rng = random.Random(seed)
    cuts = [rng.randrange(len(stream) + 1) for _ in range(rng.randrange(1, 200))]
    assert feed_in_chunks(FrameReader(), stream, cuts) == expected


def test_feeding_memoryview_and_bytearray_gives_same_events() -> None:
    stream, expected = conversation(big_size=70_000)
    reader = FrameReader()
    middle = len(stream) // 2
    events = reader.feed(memoryview(stream)[:middle])
    events += reader.feed(bytearray(stream[middle:]))
    assert events == expected


def test_feeding_nothing_gives_nothing() -> None:
    assert FrameReader().feed(b"") == []


# Reading: fragmented messages.


def test_fragmented_text_is_joined_around_interleaved_ping() -> None:
    data = (
        client_frame(Opcode.TEXT, b"Hel", fin=False)
        + client_frame(Opcode.PING, b"1")
        + client_frame(Opcode.CONTINUATION, b"lo", fin=False)
        + client_frame(Opcode.PONG, b"2")
        + client_frame(Opcode.CONTINUATION, b", world")
    )
    assert feed_all(data) == [Ping(b"1"), Pong(b"2"), Message("Hello, world")]


def test_fragmented_binary_is_joined() -> None:
    data = (
        client_frame(Opcode.BINARY, b"\x00\x01", fin=False)
        + client_frame(Opcode.CONTINUATION, b"", fin=False)
        + client_frame(Opcode.CONTINUATION, b"\x02" * 70_000)
    )
    assert feed_all(data) == [Message(b"\x00\x01" + b"\x02" * 70_000)]


def test_four_byte_character_split_across_two_frames_is_valid() -> None:
    emoji = "😀".encode()
    data = client_frame(Opcode.TEXT, b"a" + emoji[:2], fin=False) + client_frame(
        Opcode.CONTINUATION, emoji[2:] + b"b"
    )
    assert feed_all(data) == [Message("a😀b")]


def test_four_byte_character_split_across_two_reads_of_one_frame_is_valid() -> None:
    frame = client_frame(Opcode.TEXT, "a😀b".encode())
    reader = FrameReader()
    assert reader.feed(frame[:9]) == []  # 6-byte header, "a" and half the emoji
    assert reader.feed(frame[9:]) == [Message("a😀b")]


def test_close_inside_fragmented_message_is_read() -> None:
    data = client_frame(Opcode.TEXT, b"unfinished", fin=False) + client_frame(Opcode.CLOSE)
    assert feed_all(data) == [Close(1005, "")]


# Protocol errors: 1002.


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_rsv_bit_is_protocol_error(rsv: int) -> None:
    assert refusal(client_frame(Opcode.TEXT, b"x", rsv=rsv)).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_is_protocol_error(opcode: int) -> None:
    assert refusal(client_frame(opcode, b"x")).code == CloseCode.PROTOCOL_ERROR


def test_unmasked_client_frame_is_protocol_error() -> None:
    assert refusal(encode_frame(Opcode.TEXT, b"x")).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_control_frame_over_125_bytes_is_protocol_error(opcode: Opcode) -> None:
    error = refusal(client_frame(opcode, b"\x03\xe8" + b"x" * 124))
    assert error.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_fragmented_control_frame_is_protocol_error(opcode: Opcode) -> None:
    assert refusal(client_frame(opcode, b"", fin=False)).code == CloseCode.PROTOCOL_ERROR


def test_64_bit_length_with_most_significant_bit_set_is_protocol_error() -> None:
    header = bytes([0x82, 0x80 | 127]) + (1 << 63 | 5).to_bytes(8, "big")
    assert refusal(header).code == CloseCode.PROTOCOL_ERROR


def test_continuation_without_message_is_protocol_error() -> None:
    assert refusal(client_frame(Opcode.CONTINUATION, b"x")).code == CloseCode.PROTOCOL_ERROR


def test_continuation_after_finished_message_is_protocol_error() -> None:
    data = client_frame(Opcode.TEXT, b"done") + client_frame(Opcode.CONTINUATION, b"more")
    assert refusal(data).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_new_message_inside_fragmented_message_is_protocol_error(opcode: Opcode) -> None:
    data = client_frame(Opcode.TEXT, b"part", fin=False) + client_frame(opcode, b"new")
    assert refusal(data).code == CloseCode.PROTOCOL_ERROR


def test_close_payload_of_one_byte_is_protocol_error() -> None:
    assert refusal(client_frame(Opcode.CLOSE, b"\x03")).code == CloseCode.PROTOCOL_ERROR


INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
VALID_CLOSE_CODES += [3000, 3999, 4000, 4999]


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_close_with_invalid_code_is_protocol_error(code: int) -> None:
    frame = client_frame(Opcode.CLOSE, code.to_bytes(2, "big"))
    assert refusal(frame).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_close_with_valid_code_is_read(code: int) -> None:
    frame = client_frame(Opcode.CLOSE, code.to_bytes(2, "big") + b"why")
    assert feed_all(frame) == [Close(code, "why")]


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_valid_close_code_is_valid(code: int) -> None:
    assert is_valid_close_code(code)


@pytest.mark.parametrize("code", [*INVALID_CLOSE_CODES, -1, 1_000_000])
def test_invalid_close_code_is_invalid(code: int) -> None:
    assert not is_valid_close_code(code)


# Message size: 1009, decided on the header.


def test_message_over_limit_is_message_too_big() -> None:
    error = refusal(client_frame(Opcode.BINARY, bytes(101)), max_message_bytes=100)
    assert error.code == CloseCode.MESSAGE_TOO_BIG


def test_message_of_exactly_the_limit_is_read() -> None:
    frame = client_frame(Opcode.BINARY, bytes(100))
    assert feed_all(frame, max_message_bytes=100) == [Message(bytes(100))]


def test_fragments_adding_up_over_limit_are_message_too_big() -> None:
    data = b"".join(client_frame(Opcode.CONTINUATION, bytes(30), fin=False) for _ in range(3))
    data = client_frame(Opcode.TEXT, bytes(10), fin=False) + data
    assert refusal(data, max_message_bytes=99).code == CloseCode.MESSAGE_TOO_BIG


def test_fragments_adding_up_to_exactly_the_limit_are_read() -> None:
    data = client_frame(Opcode.BINARY, bytes(10), fin=False)
    data += b"".join(client_frame(Opcode.CONTINUATION, bytes(30), fin=False) for _ in range(2))
    data += client_frame(Opcode.CONTINUATION, bytes(30))
    assert feed_all(data, max_message_bytes=100) == [Message(bytes(100))]


def test_control_frames_do_not_count_toward_message_size() -> None:
    data = (
        client_frame(Opcode.TEXT, b"x" * 50, fin=False)
        + client_frame(Opcode.PING, b"p" * 125)
        + client_frame(Opcode.CONTINUATION, b"y" * 50)
    )
    assert feed_all(data, max_message_bytes=100) == [Ping(b"p" * 125), Message("x" * 50 + "y" * 50)]


def test_limit_counts_each_message_separately() -> None:
    data = client_frame(Opcode.BINARY, bytes(100)) * 3
    assert feed_all(data, max_message_bytes=100) == [Message(bytes(100))] * 3


@pytest.mark.parametrize("length", [MIB + 1, 2**32, 2**62, 2**63 - 1])
def test_huge_length_is_refused_with_only_the_header_fed(length: int) -> None:
    header = bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big")  # no mask key, no payload
    assert refusal(header).code == CloseCode.MESSAGE_TOO_BIG


def test_16_bit_length_over_limit_is_refused_with_only_the_header_fed() -> None:
    header = bytes([0x81, 0x80 | 126, 0x10, 0x00])  # 4096 bytes announced
    assert refusal(header, max_message_bytes=4095).code == CloseCode.MESSAGE_TOO_BIG


# Text: 1007, failing as soon as the bad bytes arrive (Autobahn cases 6.x).


def test_invalid_utf8_text_is_invalid_payload() -> None:
    error = refusal(client_frame(Opcode.TEXT, KOSME + BEYOND_UNICODE + EDITED))
    assert error.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


@pytest.mark.parametrize(
    "payload",
    [
        b"\xed\xa0\x80",  # a UTF-16 surrogate
        b"\xc0\xaf",  # an overlong "/"
        b"\xff",
        b"\x80",
        b"abc\xe2\x82",  # a character cut at the end of the message
    ],
)
def test_invalid_utf8_of_each_kind_is_invalid_payload(payload: bytes) -> None:
    error = refusal(client_frame(Opcode.TEXT, payload))
    assert error.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_text_cut_mid_character_at_last_fragment_is_invalid_payload() -> None:
    data = client_frame(Opcode.TEXT, b"abc", fin=False) + client_frame(
        Opcode.CONTINUATION, "€".encode()[:2]
    )
    assert refusal(data).code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_invalid_fragment_fails_before_the_rest_of_the_message_arrives() -> None:
    # Autobahn 6.4.1: the second fragment makes the text invalid; the third never comes.
    reader = FrameReader()
    assert reader.feed(client_frame(Opcode.TEXT, KOSME, fin=False)) == []
    with pytest.raises(ProtocolError) as raised:
        reader.feed(client_frame(Opcode.CONTINUATION, BEYOND_UNICODE, fin=False))
    assert raised.value.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_fragment_ending_on_first_impossible_byte_fails_at_once() -> None:
    # Autobahn 6.4.2: F4 ends the first fragment (still a valid prefix); 90 alone makes it invalid.
    payload = KOSME + BEYOND_UNICODE + EDITED
    reader = FrameReader()
    assert reader.feed(client_frame(Opcode.TEXT, payload[:12], fin=False)) == []
    with pytest.raises(ProtocolError) as raised:
        reader.feed(client_frame(Opcode.CONTINUATION, payload[12:13], fin=False))
    assert raised.value.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


@pytest.mark.parametrize(
    ("first_chop", "second_chop"),
    [(11, 15), (12, 13)],
    ids=["autobahn-6.4.3", "autobahn-6.4.4"],
)
def test_invalid_text_fails_inside_one_frame_before_its_end_arrives(
    first_chop: int, second_chop: int
) -> None:
    # One frame sent in three chops; fail on the chop with the bad bytes, not at the end.
    header_size = 6
    frame = client_frame(Opcode.TEXT, KOSME + BEYOND_UNICODE + EDITED)
    reader = FrameReader()
    assert reader.feed(frame[: header_size + first_chop]) == []
    with pytest.raises(ProtocolError) as raised:
        reader.feed(frame[header_size + first_chop : header_size + second_chop])
    assert raised.value.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_surrogate_prefix_fails_before_its_third_byte_arrives() -> None:
    reader = FrameReader()
    assert reader.feed(client_frame(Opcode.TEXT, b"ok\xed", fin=False)) == []
    with pytest.raises(ProtocolError) as raised:
        reader.feed(client_frame(Opcode.CONTINUATION, b"\xa0", fin=False))
    assert raised.value.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_close_reason_with_invalid_utf8_is_invalid_payload() -> None:
    frame = client_frame(Opcode.CLOSE, b"\x03\xe8" + KOSME + b"\xed\xa0\x80")
    assert refusal(frame).code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_protocol_error_reason_fits_a_close_frame() -> None:
    error = refusal(client_frame(Opcode.BINARY, bytes(101)), max_message_bytes=100)
    assert len(error.reason.encode()) <= 123
    assert encode_close(error.code, error.reason)


# Memory accounting.


def test_buffered_bytes_counts_partial_header() -> None:
    reader = FrameReader()
    reader.feed(client_frame(Opcode.BINARY, bytes(300))[:3])
    assert reader.buffered_bytes == 3


def test_buffered_bytes_counts_partial_message() -> None:
    reader = FrameReader()
    reader.feed(client_frame(Opcode.BINARY, bytes(1000), fin=False))
    reader.feed(client_frame(Opcode.CONTINUATION, bytes(1000))[:508])  # 8-byte header, 500
    assert reader.buffered_bytes == 1500


def test_buffered_bytes_is_zero_after_message_completes() -> None:
    reader = FrameReader()
    reader.feed(client_frame(Opcode.TEXT, b"x" * 1000, fin=False))
    reader.feed(client_frame(Opcode.CONTINUATION, b"y" * 1000))
    assert reader.buffered_bytes == 0


# Cross-check with an independent encoder: the `websockets` package.


@pytest.mark.parametrize(
    "frame",
    [
        WsFrame(WsOpcode.TEXT, "Hello, wörld".encode()),
        WsFrame(WsOpcode.BINARY, b""),
        WsFrame(WsOpcode.BINARY, bytes(range(256)) * 256),
        WsFrame(WsOpcode.BINARY, bytes(126)),
        WsFrame(WsOpcode.PING, b"ping"),
        WsFrame(WsOpcode.PONG, b""),
        WsFrame(WsOpcode.CLOSE, WsClose(1001, "bye").serialize()),
    ],
    ids=["text", "empty", "64k", "126", "ping", "pong", "close"],
)
def test_reads_frame_serialized_by_websockets_package(frame: WsFrame) -> None:
    events = feed_all(frame.serialize(mask=True))
    expected: Event
    if frame.opcode == WsOpcode.TEXT:
        expected = Message(bytes(frame.data).decode())
    elif frame.opcode == WsOpcode.BINARY:
        expected = Message(bytes(frame.data))
    elif frame.opcode == WsOpcode.PING:
        expected = Ping(bytes(frame.data))
    elif frame.opcode == WsOpcode.PONG:
        expected = Pong(bytes(frame.data))
    else:
        expected = Close(1001, "bye")
    assert events == [expected]


def test_reads_fragmented_message_serialized_by_websockets_package() -> None:
    data = b"".join(
        [
            WsFrame(WsOpcode.TEXT, b"frag", fin=False).serialize(mask=True),
            WsFrame(WsOpcode.PING, b"!").serialize(mask=True),
            WsFrame(WsOpcode.CONT, b"ment" * 100, fin=True).serialize(mask=True),
        ]
    )
    assert feed_all(data) == [Ping(b"!"), Message("frag" + "ment" * 100)]


# Property: anything a client may send round-trips, however it is split.


@st.composite
def conversations(draw: st.DrawFn) -> tuple[bytes, list[Event]]:
    """Messages (random fragmentation, random masks, pings between frames) and their events."""
    masks = st.binary(min_size=4, max_size=4)
    frames: list[bytes] = []
    events: list[Event] = []
    for _ in range(draw(st.integers(0, 6))):
        is_text = draw(st.booleans())
        data: str | bytes
        if is_text:
            data = draw(st.text(max_size=200))
            payload = data.encode()
        else:
            data = payload = draw(st.binary(max_size=300))
        # Cuts may fall inside a UTF-8 character: text is validated across fragments.
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
        bounds = [0, *cuts, len(payload)]
        pieces = [payload[a:b] for a, b in pairwise(bounds)]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            opcode = Opcode.CONTINUATION if i else Opcode.TEXT if is_text else Opcode.BINARY
            frames.append(encode_frame(opcode, piece, fin=last, mask=draw(masks)))
            if last:
                events.append(Message(data))
            if draw(st.booleans()):
                ping = draw(st.binary(max_size=125))
                frames.append(encode_frame(Opcode.PING, ping, mask=draw(masks)))
                events.append(Ping(ping))
    return b"".join(frames), events


@settings(deadline=None, max_examples=300)
@given(conversation=conversations(), data=st.data())
def test_any_conversation_in_any_chunks_round_trips(
    conversation: tuple[bytes, list[Event]], data: st.DataObject
) -> None:
    stream, expected = conversation
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    assert feed_in_chunks(FrameReader(), stream, cuts) == expected


# Work per call, and what comes before a violation.


def test_a_valid_message_before_a_bad_frame_is_delivered_then_the_error_is_raised() -> None:
    # Autobahn 3.2: a text message, then a frame with RSV bits set, in one read.
    reader = FrameReader()
    events = reader.feed(client_frame(Opcode.TEXT, b"hello") + client_frame(Opcode.TEXT, rsv=2))
    assert events == [Message("hello")]
    assert reader.backlog
    with pytest.raises(ProtocolError) as raised:
        reader.feed()
    assert raised.value.code == CloseCode.PROTOCOL_ERROR
    assert reader.state is ReaderState.FAILED


def test_pings_before_a_bad_frame_are_delivered_too() -> None:
    reader = FrameReader()
    data = client_frame(Opcode.PING, b"a") + client_frame(Opcode.TEXT, b"b") + b"\x83\x80" + MASK
    assert reader.feed(data) == [Ping(b"a"), Message("b")]
    with pytest.raises(ProtocolError):
        reader.feed(client_frame(Opcode.TEXT, b"ignored"))


def test_after_the_error_nothing_more_is_read() -> None:
    reader = FrameReader()
    reader.feed(client_frame(Opcode.TEXT, b"ok") + client_frame(0x3))
    with pytest.raises(ProtocolError):
        reader.feed()
    assert reader.feed(client_frame(Opcode.TEXT, b"late")) == []
    assert not reader.backlog


def test_max_frames_bounds_the_work_of_one_call_and_the_rest_waits() -> None:
    reader = FrameReader()
    data = b"".join(client_frame(Opcode.TEXT, str(i).encode()) for i in range(100))
    first = reader.feed(data, max_frames=30)
    assert first == [Message(str(i)) for i in range(30)]
    assert reader.backlog
    rest: list[Event] = []
    for _ in range(10):
        if not reader.backlog:
            break
        rest += reader.feed(max_frames=30)
    assert rest == [Message(str(i)) for i in range(30, 100)]
    assert not reader.backlog


def test_new_bytes_join_the_backlog_in_order() -> None:
    reader = FrameReader()
    first = reader.feed(client_frame(Opcode.TEXT, b"1") + client_frame(Opcode.TEXT, b"2"), 1)
    later = reader.feed(client_frame(Opcode.TEXT, b"3"))
    assert first + later == [Message("1"), Message("2"), Message("3")]


def test_fragments_of_a_large_frame_count_one_frame_per_part_received() -> None:
    reader = FrameReader()
    frame = client_frame(Opcode.BINARY, b"x" * 1000)
    assert reader.feed(frame[:500], max_frames=1) == []
    assert reader.feed(frame[500:], max_frames=1) == [Message(b"x" * 1000)]


def test_a_message_of_one_byte_fragments_is_held_in_about_its_own_size() -> None:
    # 64 KiB sent as 65,536 one-byte fragments: an object per fragment would be ~50x that.
    size = 64 * 1024
    stream = b"".join(
        client_frame(Opcode.BINARY if i == 0 else Opcode.CONTINUATION, b"z", fin=False)
        for i in range(size - 1)
    ) + client_frame(Opcode.CONTINUATION, b"z")
    reader = FrameReader()
    tracemalloc.start()
    try:
        events: list[Event] = []
        for start in range(0, len(stream), 4096):
            events += reader.feed(stream[start : start + 4096])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == [Message(b"z" * size)]
    assert peak < 4 * size


def test_a_fragmented_text_message_is_validated_and_decoded_whole() -> None:
    text = "κόσμε €"
    raw = text.encode()
    stream = b"".join(
        client_frame(Opcode.TEXT if i == 0 else Opcode.CONTINUATION, raw[i : i + 1], fin=False)
        for i in range(len(raw))
    ) + client_frame(Opcode.CONTINUATION)
    assert feed_all(stream) == [Message(text)]


# The echo buffer (`feed(..., echo=...)`): the echo server's hot path.


def server_frame(opcode: Opcode, payload: bytes) -> bytes:
    return encode_frame(opcode, payload)


def test_echo_buffer_gets_the_server_frame_of_each_whole_short_message() -> None:
    reader = FrameReader()
    echo = bytearray()
    data = client_frame(Opcode.TEXT, b"hi") + client_frame(Opcode.BINARY, b"\x00\xff")
    assert reader.feed(data, echo=echo) == []
    assert bytes(echo) == server_frame(Opcode.TEXT, b"hi") + server_frame(
        Opcode.BINARY, b"\x00\xff"
    )
    assert reader.echoed == 2


def test_echo_buffer_leaves_events_after_the_first_other_frame_in_order() -> None:
    reader = FrameReader()
    echo = bytearray()
    data = client_frame(Opcode.TEXT, b"a") + client_frame(Opcode.PING, b"p")
    data += client_frame(Opcode.TEXT, b"b")
    assert reader.feed(data, echo=echo) == [Ping(b"p"), Message("b")]
    assert bytes(echo) == server_frame(Opcode.TEXT, b"a")
    assert reader.echoed == 1


def test_echo_buffer_takes_no_fragmented_or_long_message() -> None:
    reader = FrameReader()
    echo = bytearray()
    long = b"x" * 200
    data = client_frame(Opcode.TEXT, b"ab", fin=False) + client_frame(Opcode.CONTINUATION, b"c")
    data += client_frame(Opcode.BINARY, long)
    assert reader.feed(data, echo=echo) == [Message("abc"), Message(long)]
    assert echo == b""
    assert reader.echoed == 0


def test_echo_buffer_refuses_invalid_utf8_text_with_1007() -> None:
    reader = FrameReader()
    with pytest.raises(ProtocolError) as caught:
        reader.feed(client_frame(Opcode.TEXT, BEYOND_UNICODE), echo=bytearray())
    assert caught.value.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_echo_before_a_violation_is_kept_and_the_error_comes_next_call() -> None:
    reader = FrameReader()
    echo = bytearray()
    data = client_frame(Opcode.TEXT, b"ok") + encode_frame(Opcode.TEXT, b"bare")  # unmasked
    assert reader.feed(data, echo=echo) == []
    assert bytes(echo) == server_frame(Opcode.TEXT, b"ok")
    with pytest.raises(ProtocolError) as caught:
        reader.feed(echo=bytearray())
    assert caught.value.code == CloseCode.PROTOCOL_ERROR


def test_echo_buffer_counts_against_the_frame_limit() -> None:
    reader = FrameReader()
    echo = bytearray()
    data = b"".join(client_frame(Opcode.TEXT, str(index).encode()) for index in range(5))
    reader.feed(data, 3, echo)
    assert reader.echoed == 3
    assert reader.backlog
    reader.feed(b"", 3, echo)
    assert reader.echoed == 2
    assert bytes(echo) == b"".join(server_frame(Opcode.TEXT, str(i).encode()) for i in range(5))


def test_a_message_split_across_reads_is_an_event_not_an_echo() -> None:
    reader = FrameReader()
    echo = bytearray()
    data = client_frame(Opcode.TEXT, b"split here")
    assert reader.feed(data[:7], echo=echo) == []
    assert reader.feed(data[7:], echo=echo) == [Message("split here")]
    assert echo == b""
