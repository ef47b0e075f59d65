"""Specification of echo_server.protocol.deflate, and of the frame reader with permessage-deflate.

Byte strings only. Compressed client messages are made with zlib directly (raw deflate, the
sync-flush tail removed, as RFC 7692 section 7.2.1 says); our answers are checked with the
client side of the `websockets` package's own permessage-deflate, an independent implementation.
"""

from __future__ import annotations

import time
import tracemalloc
import zlib

import pytest
from websockets.exceptions import NegotiationError
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from echo_server.protocol.deflate import (
    Agreement,
    Deflater,
    Inflater,
    Offer,
    negotiate,
    parse_extensions,
    parse_offer,
)
from echo_server.protocol.frames import (
    CloseCode,
    FrameReader,
    Message,
    Opcode,
    Ping,
    ProtocolError,
    encode_frame,
    frame_header,
)

MASK = b"abcd"
MIB = 1024 * 1024
RSV1 = 4  # encode_frame's rsv argument: bits 4-6 of the first byte, RSV1 first
TAIL = b"\x00\x00\xff\xff"
CHROME_OFFER = "permessage-deflate; client_max_window_bits"


def deflate(data: bytes, compressor: zlib._Compress | None = None, wbits: int = 15) -> bytes:
    """`data` as a client compresses a message: raw deflate, sync-flushed, tail removed."""
    if compressor is None:
        compressor = zlib.compressobj(wbits=-wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[: -len(TAIL)]


def compressed_frame(
    opcode: Opcode | int, payload: bytes, *, fin: bool = True, rsv: int = RSV1
) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=MASK, rsv=rsv)


def client_frame(opcode: Opcode | int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=MASK)


def reader(
    *, max_message_bytes: int = MIB, window_bits: int = 15, no_context_takeover: bool = False
) -> FrameReader:
    """A reader as a connection with permessage-deflate makes it."""
    return FrameReader(
        max_message_bytes=max_message_bytes,
        decompressor=Inflater(window_bits, no_context_takeover),
    )


def refusal(feed: FrameReader, data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as raised:
        feed.feed(data)
        feed.feed()
    return raised.value


def agreed(*offers: str) -> Agreement:
    agreement = negotiate(list(offers))
    assert agreement is not None
    return agreement


def websockets_client_accepts(response: str, offer: ClientPerMessageDeflateFactory) -> None:
    """Run our response through websockets' client side, which refuses what RFC 7692 forbids."""
    ((name, params),) = parse_extensions([response])
    assert name == offer.name
    offer.process_response_params(params, [])


def zip_bomb(inflated_mib: int) -> bytes:
    """A compressed message of about 1 KiB per MiB it inflates to (zeros), made in ms: after
    its first MiB, each further MiB of zeros compresses to the same bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MIB)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
    steady = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return first + steady * (inflated_mib - 1)


# Reading the Sec-WebSocket-Extensions header (RFC 6455 section 9.1).


def test_extensions_are_read_in_order_with_their_parameters() -> None:
    assert parse_extensions(["foo, permessage-deflate; client_max_window_bits; x=1"]) == [
        ("foo", []),
        ("permessage-deflate", [("client_max_window_bits", None), ("x", "1")]),
    ]


def test_extensions_on_several_header_lines_are_read_in_order() -> None:
    assert parse_extensions(["a", "b; c"]) == [("a", []), ("b", [("c", None)])]


def test_extension_names_and_parameters_are_lower_cased_and_spaces_ignored() -> None:
    assert parse_extensions(["Permessage-Deflate ;  Server_No_Context_Takeover , ,"]) == [
        ("permessage-deflate", [("server_no_context_takeover", None)])
    ]


def test_a_quoted_parameter_value_is_unquoted() -> None:
    assert parse_extensions(['permessage-deflate; server_max_window_bits="10"']) == [
        ("permessage-deflate", [("server_max_window_bits", "10")])
    ]


@pytest.mark.parametrize(
    "value",
    [
        "permessage-deflate;",  # a parameter name missing
        "permessage-deflate; =1",
        "permessage-deflate; a=",  # a value missing
        'permessage-deflate; a="1',  # unterminated
        'permessage-deflate; a="b c"',  # unquoted, not a token
        "permessage-deflate x",  # no separator
        "permessage deflate",
        "@",
    ],
)
def test_a_header_that_breaks_the_grammar_is_a_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        parse_extensions([value])


# The offer's parameters (RFC 7692 section 7.1).


def test_an_offer_without_parameters_is_the_defaults() -> None:
    assert parse_offer([]) == Offer()


def test_an_offer_reads_every_parameter() -> None:
    params = [
        ("server_no_context_takeover", None),
        ("client_no_context_takeover", None),
        ("server_max_window_bits", "10"),
        ("client_max_window_bits", "9"),
    ]
    assert parse_offer(params) == Offer(True, True, 10, 9)


def test_client_max_window_bits_without_a_value_means_it_accepts_one() -> None:
    assert parse_offer([("client_max_window_bits", None)]).client_max_window_bits is True


@pytest.mark.parametrize(
    "params",
    [
        [("x", None)],  # unknown
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],  # twice
        [("client_no_context_takeover", "1")],  # takes no value
        [("server_max_window_bits", None)],  # needs one
        [("server_max_window_bits", "7")],
        [("server_max_window_bits", "16")],
        [("client_max_window_bits", "08")],  # leading zero
        [("client_max_window_bits", "ten")],
    ],
)
def test_an_invalid_offer_is_declined(params: list[tuple[str, str | None]]) -> None:
    with pytest.raises(ValueError):
        parse_offer(params)


# Choosing the answer.


def test_no_offer_means_no_compression() -> None:
    assert negotiate([]) is None
    assert negotiate(["x-webkit-deflate-frame"]) is None


def test_a_plain_offer_is_answered_with_our_window() -> None:
    agreement = agreed("permessage-deflate")
    assert agreement.response == "permessage-deflate; server_max_window_bits=12"
    assert agreement.client_max_window_bits == 15  # the client was given no limit


def test_a_browsers_offer_is_answered_with_both_windows() -> None:
    agreement = agreed(CHROME_OFFER)
    assert agreement.response == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    )
    assert (agreement.server_max_window_bits, agreement.client_max_window_bits) == (12, 12)


@pytest.mark.parametrize(("asked", "answered"), [(9, 9), (11, 11), (12, 12), (15, 12)])
def test_server_max_window_bits_is_the_smaller_of_the_request_and_ours(
    asked: int, answered: int
) -> None:
    agreement = agreed(f"permessage-deflate; server_max_window_bits={asked}")
    assert agreement.server_max_window_bits == answered
    assert f"server_max_window_bits={answered}" in agreement.response


@pytest.mark.parametrize(("hint", "answered"), [(8, 8), (10, 10), (15, 12)])
def test_a_client_window_hint_is_taken_when_smaller_than_ours(hint: int, answered: int) -> None:
    agreement = agreed(f"permessage-deflate; client_max_window_bits={hint}")
    assert agreement.client_max_window_bits == answered
    assert agreement.response.endswith(f"client_max_window_bits={answered}")


def test_no_context_takeover_is_answered_when_offered() -> None:
    agreement = agreed("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    assert agreement.server_no_context_takeover
    assert agreement.client_no_context_takeover
    assert agreement.response.startswith(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
    )


def test_the_first_valid_offer_is_taken() -> None:
    agreement = agreed(
        "permessage-deflate; server_max_window_bits=10, permessage-deflate",
    )
    assert agreement.server_max_window_bits == 10


def test_an_invalid_offer_is_skipped_for_the_next() -> None:
    agreement = agreed(
        "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=16, "
        "permessage-deflate; server_no_context_takeover"
    )
    assert agreement.server_no_context_takeover


def test_only_invalid_offers_mean_no_compression() -> None:
    assert negotiate(["permessage-deflate; server_max_window_bits=99"]) is None


def test_a_malformed_header_means_no_compression_not_an_error() -> None:
    assert negotiate(['permessage-deflate; a="unterminated']) is None


def test_a_server_window_of_8_is_accepted_and_nothing_is_compressed() -> None:
    agreement = agreed("permessage-deflate; server_max_window_bits=8")
    assert agreement.response == "permessage-deflate; server_max_window_bits=8"
    assert agreement.deflater().compress(b"x" * 1000) is None


@pytest.mark.parametrize(
    "factory",
    [
        ClientPerMessageDeflateFactory(),
        ClientPerMessageDeflateFactory(client_max_window_bits=None),
        ClientPerMessageDeflateFactory(server_max_window_bits=10),
        ClientPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True
        ),
        ClientPerMessageDeflateFactory(client_max_window_bits=9, server_max_window_bits=15),
    ],
)
def test_websockets_client_side_accepts_our_answer_to_its_offer(
    factory: ClientPerMessageDeflateFactory,
) -> None:
    offer = "; ".join(
        [factory.name]
        + [
            name if value is None else f"{name}={value}"
            for name, value in factory.get_request_params()
        ]
    )
    websockets_client_accepts(agreed(offer).response, factory)


def test_websockets_client_side_refuses_a_window_we_never_answer() -> None:
    # The check above has teeth: an answer RFC 7692 forbids (a client window the client did
    # not let us set) is refused by websockets.
    with pytest.raises(NegotiationError):
        websockets_client_accepts(
            "permessage-deflate; client_max_window_bits=10",
            ClientPerMessageDeflateFactory(client_max_window_bits=None),
        )


# Reading compressed messages.


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, MIB])
def test_a_compressed_binary_message_of_any_size_is_inflated(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    events = reader().feed(compressed_frame(Opcode.BINARY, deflate(data)))
    assert events == [Message(data)]


@pytest.mark.parametrize("size", [0, 1, 1000, MIB])
def test_a_compressed_text_message_is_inflated_and_decoded(size: int) -> None:
    text = ("κόσμε " * (size // 10 + 1))[: size // 2]  # at most 2 bytes a character
    events = reader().feed(compressed_frame(Opcode.TEXT, deflate(text.encode())))
    assert events == [Message(text)]


def test_a_fragmented_compressed_message_is_inflated_around_a_ping() -> None:
    payload = deflate(b"hello, compressed world" * 100)
    cut = len(payload) // 3
    data = (
        compressed_frame(Opcode.TEXT, payload[:cut], fin=False)
        + client_frame(Opcode.PING, b"p")
        + client_frame(Opcode.CONTINUATION, payload[cut : 2 * cut], fin=False)
        + client_frame(Opcode.CONTINUATION, payload[2 * cut :])
    )
    assert reader().feed(data) == [Ping(b"p"), Message("hello, compressed world" * 100)]


def test_a_compressed_message_fed_one_byte_at_a_time_is_inflated() -> None:
    data = compressed_frame(Opcode.BINARY, deflate(b"abc" * 500))
    feed = reader()
    events = [event for index in range(len(data)) for event in feed.feed(data[index : index + 1])]
    assert events == [Message(b"abc" * 500)]


def test_messages_compressed_with_context_takeover_are_inflated_in_turn() -> None:
    compressor = zlib.compressobj(wbits=-15)
    first = compressed_frame(Opcode.TEXT, deflate(b"the same words again", compressor))
    second = compressed_frame(Opcode.TEXT, deflate(b"the same words again", compressor))
    assert len(second) < len(first)  # the second refers back to the first
    assert reader().feed(first + second) == [Message("the same words again")] * 2


def test_uncompressed_messages_are_still_read_with_the_extension_on() -> None:
    data = client_frame(Opcode.TEXT, b"plain") + compressed_frame(Opcode.TEXT, deflate(b"small"))
    assert reader().feed(data + client_frame(Opcode.BINARY, b"\x00")) == [
        Message("plain"),
        Message("small"),
        Message(b"\x00"),
    ]


def test_a_message_ended_with_a_final_block_is_read_and_the_next_starts_afresh() -> None:
    ended = zlib.compressobj(wbits=-15)
    finished = ended.compress(b"first") + ended.flush(zlib.Z_FINISH)
    data = compressed_frame(Opcode.TEXT, finished) + compressed_frame(
        Opcode.TEXT, deflate(b"second")
    )
    assert reader().feed(data) == [Message("first"), Message("second")]


def test_the_client_window_asked_for_is_enough_to_inflate() -> None:
    compressor = zlib.compressobj(wbits=-9)
    data = bytes(range(256)) * 40
    frame = compressed_frame(Opcode.BINARY, deflate(data, compressor))
    assert reader(window_bits=9).feed(frame) == [Message(data)]


def test_an_empty_compressed_payload_is_an_empty_message() -> None:
    assert reader().feed(compressed_frame(Opcode.TEXT, b"")) == [Message("")]


# What is refused.


def test_rsv1_without_the_extension_is_a_protocol_error() -> None:
    error = refusal(FrameReader(), compressed_frame(Opcode.TEXT, deflate(b"hi")))
    assert error.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_rsv1_on_a_control_frame_is_a_protocol_error(opcode: Opcode) -> None:
    error = refusal(reader(), compressed_frame(opcode, b""))
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "control" in error.reason


def test_rsv1_on_a_continuation_frame_is_a_protocol_error() -> None:
    payload = deflate(b"abcdef" * 10)
    data = compressed_frame(Opcode.TEXT, payload[:5], fin=False) + compressed_frame(
        Opcode.CONTINUATION, payload[5:]
    )
    error = refusal(reader(), data)
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "continuation" in error.reason


@pytest.mark.parametrize("rsv", [2, 1, 6, 5])  # RSV2, RSV3, RSV1+RSV2, RSV1+RSV3
def test_other_rsv_bits_are_a_protocol_error_with_the_extension_on(rsv: int) -> None:
    assert refusal(reader(), compressed_frame(Opcode.TEXT, b"x", rsv=rsv)).code == 1002


def test_data_that_does_not_inflate_is_invalid_payload() -> None:
    error = refusal(reader(), compressed_frame(Opcode.BINARY, b"\xff\xff\xff\xff"))
    assert error.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_compressed_text_that_is_not_utf8_is_invalid_payload() -> None:
    error = refusal(reader(), compressed_frame(Opcode.TEXT, deflate(b"ok \xff not ok")))
    assert error.code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_a_message_inflating_to_exactly_the_limit_is_read() -> None:
    data = bytes(1000)
    events = reader(max_message_bytes=1000).feed(compressed_frame(Opcode.BINARY, deflate(data)))
    assert events == [Message(data)]


def test_a_message_inflating_one_byte_over_the_limit_is_too_big() -> None:
    error = refusal(
        reader(max_message_bytes=1000), compressed_frame(Opcode.BINARY, deflate(bytes(1001)))
    )
    assert error.code == CloseCode.MESSAGE_TOO_BIG


def test_fragments_inflating_over_the_limit_together_are_too_big() -> None:
    payload = deflate(bytes(3000))
    half = len(payload) // 2
    data = compressed_frame(Opcode.BINARY, payload[:half], fin=False) + client_frame(
        Opcode.CONTINUATION, payload[half:]
    )
    assert refusal(reader(max_message_bytes=2000), data).code == CloseCode.MESSAGE_TOO_BIG


def test_compressed_bytes_over_the_limit_are_refused_on_the_header() -> None:
    header_only = compressed_frame(Opcode.BINARY, bytes(2000))[:8]
    assert refusal(reader(max_message_bytes=1000), header_only).code == 1009


def test_a_zip_bomb_is_refused_after_the_limits_worth_of_work_and_memory() -> None:
    bomb = compressed_frame(Opcode.BINARY, zip_bomb(inflated_mib=1024))  # 1 GiB, sent as 1 MiB
    feed = reader(max_message_bytes=MIB)
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(ProtocolError) as raised:
            feed.feed(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    spent = time.process_time() - started
    assert raised.value.code == CloseCode.MESSAGE_TOO_BIG
    # Inflating all of it would hold 1 GiB and take seconds; the bomb itself is 1 MiB, the
    # message at the limit 1 MiB more. (CPU time, bounded loosely: a busy machine is slower.)
    assert peak < 5 * MIB
    assert spent < 1.0


def test_a_client_without_context_takeover_leaves_no_state_between_messages() -> None:
    inflater = Inflater(15, no_context_takeover=True)
    feed = FrameReader(decompressor=inflater)
    assert feed.feed(compressed_frame(Opcode.TEXT, deflate(b"x" * 100))) == [Message("x" * 100)]
    assert not inflater.holds_state


def test_a_client_that_takes_context_over_when_told_not_to_is_refused() -> None:
    compressor = zlib.compressobj(wbits=-15)
    first = compressed_frame(Opcode.TEXT, deflate(b"repeat me " * 20, compressor))
    second = compressed_frame(Opcode.TEXT, deflate(b"repeat me " * 20, compressor))
    feed = reader(no_context_takeover=True)
    assert feed.feed(first) == [Message("repeat me " * 20)]
    assert refusal(feed, second).code == CloseCode.INVALID_FRAME_PAYLOAD_DATA


def test_no_zlib_state_is_made_before_the_first_compressed_message() -> None:
    inflater = Inflater(15, no_context_takeover=False)
    feed = FrameReader(decompressor=inflater)
    feed.feed(client_frame(Opcode.TEXT, b"uncompressed") + client_frame(Opcode.PING))
    assert not inflater.holds_state
    feed.feed(compressed_frame(Opcode.TEXT, deflate(b"compressed")))
    assert inflater.holds_state  # kept: the next message may refer to this one


# Compressing ours.


def test_our_messages_inflate_back_in_turn_with_context_takeover() -> None:
    deflater = Deflater(12, no_context_takeover=False)
    inflater = zlib.decompressobj(wbits=-12)
    sizes = []
    for _ in range(3):
        message = b'{"tick": 1, "time": 1795458859.276}'
        compressed = deflater.compress(message)
        assert compressed is not None
        sizes.append(len(compressed))
        assert inflater.decompress(compressed + TAIL) == message
    assert sizes[2] < sizes[0]


def test_a_message_under_the_minimum_is_not_compressed_and_makes_no_state() -> None:
    deflater = Deflater(12, no_context_takeover=False, min_bytes=32)
    assert deflater.compress(b"x" * 31) is None
    assert not deflater.holds_state
    assert deflater.compress(b"x" * 32) is not None
    assert deflater.holds_state


def test_without_context_takeover_nothing_is_kept_and_each_message_stands_alone() -> None:
    deflater = Deflater(12, no_context_takeover=True)
    message = b"the same message every time " * 4
    first, second = deflater.compress(message), deflater.compress(message)
    assert second is not None
    assert first == second
    assert zlib.decompressobj(wbits=-12).decompress(second + TAIL) == message
    assert not deflater.holds_state


def test_without_context_takeover_a_message_that_would_not_shrink_goes_as_it_is() -> None:
    incompressible = bytes(range(256))
    assert Deflater(12, no_context_takeover=True).compress(incompressible) is None


def test_with_context_takeover_even_an_incompressible_message_is_compressed() -> None:
    # Sending it as it is would leave it in our window but not in the client's.
    assert Deflater(12, no_context_takeover=False).compress(bytes(range(256))) is not None


def test_a_compressors_window_must_be_9_to_15_bits() -> None:
    with pytest.raises(ValueError):
        Deflater(8, no_context_takeover=False)


def test_a_compressed_frame_header_has_rsv1() -> None:
    assert frame_header(Opcode.TEXT, 5, compressed=True) == bytes([0xC1, 5])
    assert frame_header(Opcode.BINARY, 5, fin=False, compressed=True) == bytes([0x42, 5])


def test_a_compressor_unused_since_the_last_check_is_released() -> None:
    deflater = Deflater(12, no_context_takeover=False)
    deflater.compress(b"a message long enough to compress")
    deflater.release_if_idle()  # used since the last check: kept
    assert deflater.holds_state
    deflater.release_if_idle()  # idle since: released
    assert not deflater.holds_state


def test_after_a_release_the_clients_decompressor_still_reads_what_follows() -> None:
    # The client keeps its window (context takeover); our fresh context simply never refers
    # to it, which is always allowed.
    deflater = Deflater(12, no_context_takeover=False)
    client = zlib.decompressobj(wbits=-12)
    message = b"the same words, said again and again"
    for _ in range(2):
        compressed = deflater.compress(message)
        assert compressed is not None
        assert client.decompress(compressed + TAIL) == message
        deflater.release_if_idle()
        deflater.release_if_idle()
        assert not deflater.holds_state
