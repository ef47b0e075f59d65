"""Specification of echo_server.handshake: the Sans-IO server side of the opening handshake.

Pure bytes in and out, no sockets. Where another implementation can stand in for a real peer,
it does: requests built by the `websockets` package's own client handshake must be accepted,
and the responses built here must be understood by that client.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Origin
from websockets.uri import parse_uri

from echo_server.protocol.handshake import (
    HandshakeError,
    Headers,
    Request,
    accept_key,
    check_upgrade,
    find_head_end,
    http_response,
    is_upgrade,
    origin_allowed,
    parse_request,
    response_101,
)

RFC_SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
RFC_SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3

UPGRADE_HEADERS: list[tuple[str, str]] = [
    ("Host", "127.0.0.1:8001"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", RFC_SAMPLE_KEY),
    ("Sec-WebSocket-Version", "13"),
]


def head(
    request_line: str = "GET / HTTP/1.1", headers: list[tuple[str, str]] | None = None
) -> bytes:
    """A request head with the given request line and headers (a valid upgrade by default)."""
    fields = UPGRADE_HEADERS if headers is None else headers
    lines = [request_line, *(f"{name}: {value}" for name, value in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw_head(*lines: bytes) -> bytes:
    """A request head from raw lines, for bytes that `head` cannot express."""
    return b"\r\n".join(lines) + b"\r\n\r\n"


def upgrade_request(
    *,
    method: str = "GET",
    without: tuple[str, ...] = (),
    replace: dict[str, str] | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> Request:
    """A parsed upgrade request, minus the headers in `without`, with `replace` and `extra`."""
    replace = replace or {}
    fields = [
        (name, replace.get(name, value)) for name, value in UPGRADE_HEADERS if name not in without
    ]
    return parse_request(head(f"{method} / HTTP/1.1", fields + (extra or [])))


def refusal(request: Request, allowed_origins: frozenset[str] = frozenset()) -> HandshakeError:
    with pytest.raises(HandshakeError) as caught:
        check_upgrade(request, allowed_origins)
    return caught.value


def parse_refusal(data: bytes, max_header_lines: int = 100) -> HandshakeError:
    with pytest.raises(HandshakeError) as caught:
        parse_request(data, max_header_lines)
    return caught.value


def websockets_client(origin: str | None = None) -> ClientProtocol:
    return ClientProtocol(
        parse_uri("ws://127.0.0.1:8001/chat?room=1"),
        origin=None if origin is None else Origin(origin),
    )


def websockets_request_bytes(client: ClientProtocol) -> bytes:
    client.send_request(client.connect())
    return b"".join(client.data_to_send())


# Headers


def test_headers_get_is_case_insensitive() -> None:
    headers = Headers([("Sec-WebSocket-Key", "abc")])
    assert headers.get("sec-websocket-key") == "abc"
    assert headers.get("SEC-WEBSOCKET-KEY") == "abc"


def test_headers_get_joins_repeated_values_with_comma_space() -> None:
    headers = Headers([("Connection", "keep-alive"), ("X", "1"), ("connection", "Upgrade")])
    assert headers.get("Connection") == "keep-alive, Upgrade"


def test_headers_get_returns_none_when_absent() -> None:
    assert Headers([("Host", "a")]).get("Origin") is None


def test_headers_get_all_returns_every_value_in_order() -> None:
    headers = Headers([("A", "1"), ("B", "x"), ("a", "2")])
    assert headers.get_all("A") == ["1", "2"]
    assert headers.get_all("missing") == []


def test_headers_tokens_are_split_stripped_and_lowercased_across_values() -> None:
    headers = Headers([("Connection", "keep-alive ,  Upgrade"), ("CONNECTION", "X-Thing,,")])
    assert headers.tokens("connection") == ["keep-alive", "upgrade", "x-thing"]


def test_headers_contains_is_case_insensitive_and_false_for_non_strings() -> None:
    headers = Headers([("Origin", "http://a")])
    assert "origin" in headers
    assert "ORIGIN" in headers
    assert "Host" not in headers
    assert 42 not in headers


def test_headers_items_keep_names_as_sent_and_order() -> None:
    items = [("host", "a"), ("X-B", "2"), ("Host", "b")]
    assert Headers(items).items() == items


# find_head_end


def test_find_head_end_returns_offset_just_past_the_blank_line() -> None:
    data = head()
    assert find_head_end(data) == len(data)


def test_find_head_end_ignores_bytes_after_the_head() -> None:
    data = head()
    assert find_head_end(data + b"\x81\x85early frame") == len(data)


def test_find_head_end_returns_none_while_incomplete() -> None:
    assert find_head_end(b"") is None
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n") is None
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r") is None


def test_find_head_end_finds_the_end_however_the_input_is_split() -> None:
    data = head()
    buffer = bytearray()
    for offset in range(len(data) - 1):  # bounded: one byte per iteration
        buffer += data[offset : offset + 1]
        assert find_head_end(buffer) is None
    buffer += data[-1:]
    assert find_head_end(buffer) == len(data)


def test_find_head_end_does_not_accept_bare_lf_line_endings() -> None:
    assert find_head_end(b"GET / HTTP/1.1\nHost: a\n\n") is None


def test_find_head_end_refuses_with_431_once_the_limit_is_reached_without_an_end() -> None:
    with pytest.raises(HandshakeError) as caught:
        find_head_end(b"GET /" + b"a" * 95, max_head_bytes=100)
    assert caught.value.status == 431


def test_find_head_end_accepts_a_head_of_exactly_the_limit() -> None:
    data = head()
    assert find_head_end(data, max_head_bytes=len(data)) == len(data)


def test_find_head_end_refuses_a_head_one_byte_over_the_limit() -> None:
    data = head()
    with pytest.raises(HandshakeError) as caught:
        find_head_end(data, max_head_bytes=len(data) - 1)
    assert caught.value.status == 431


def test_find_head_end_default_limit_is_8_kib() -> None:
    assert find_head_end(b"a" * (8 * 1024 - 1)) is None
    with pytest.raises(HandshakeError):
        find_head_end(b"a" * (8 * 1024))


# parse_request: what a valid request gives


def test_parse_request_gives_method_target_path_query_and_headers() -> None:
    request = parse_request(head("GET /chat?room=1 HTTP/1.1"))
    assert request.method == "GET"
    assert request.target == "/chat?room=1"
    assert request.path == "/chat"
    assert request.query == "room=1"
    assert request.headers.items() == UPGRADE_HEADERS
    assert request.body_length == 0


def test_parse_request_query_is_empty_without_question_mark() -> None:
    request = parse_request(head("GET /chat HTTP/1.1"))
    assert (request.path, request.query) == ("/chat", "")


def test_parse_request_query_is_everything_after_the_first_question_mark() -> None:
    request = parse_request(head("GET /a?b=1?c=2 HTTP/1.1"))
    assert (request.path, request.query) == ("/a", "b=1?c=2")


def test_parse_request_does_not_percent_decode_the_path() -> None:
    assert parse_request(head("GET /a%20b/%2e%2e HTTP/1.1")).path == "/a%20b/%2e%2e"


def test_parse_request_reads_content_length_as_body_length() -> None:
    request = parse_request(head("POST /x HTTP/1.1", [("Host", "a"), ("Content-Length", "42")]))
    assert request.body_length == 42


def test_parse_request_strips_whitespace_around_header_values() -> None:
    request = parse_request(raw_head(b"GET / HTTP/1.1", b"Host: \t a:1 \t"))
    assert request.headers.get("Host") == "a:1"


def test_parse_request_accepts_a_header_without_a_space_after_the_colon() -> None:
    assert parse_request(raw_head(b"GET / HTTP/1.1", b"Host:a")).headers.get("host") == "a"


def test_parse_request_accepts_an_empty_header_value() -> None:
    request = parse_request(raw_head(b"GET / HTTP/1.1", b"Host: a", b"X-Empty:"))
    assert request.headers.get("X-Empty") == ""


def test_parse_request_decodes_non_ascii_header_bytes_as_latin_1() -> None:
    request = parse_request(raw_head(b"GET / HTTP/1.1", b"Host: a", b"X-Name: caf\xe9"))
    assert request.headers.get("X-Name") == "caf\xe9"


def test_parse_request_keeps_repeated_headers() -> None:
    request = parse_request(
        raw_head(b"GET / HTTP/1.1", b"Host: a", b"Connection: keep-alive", b"Connection: Upgrade")
    )
    assert request.headers.get_all("connection") == ["keep-alive", "Upgrade"]


def test_parse_request_accepts_an_ipv6_host() -> None:
    assert parse_request(head(headers=[("Host", "[::1]:8001")])).headers.get("Host") == "[::1]:8001"


def test_parse_request_accepts_max_header_lines() -> None:
    fields = [("Host", "a")] + [(f"X-{n}", "v") for n in range(99)]
    assert len(parse_request(head(headers=fields)).headers.items()) == 100


# parse_request: what it refuses


def test_parse_request_refuses_more_than_max_header_lines_with_431() -> None:
    fields = [("Host", "a")] + [(f"X-{n}", "v") for n in range(100)]
    assert parse_refusal(head(headers=fields)).status == 431


def test_parse_request_header_line_limit_is_a_parameter() -> None:
    fields = [("Host", "a"), ("X-1", "v"), ("X-2", "v")]
    assert parse_refusal(head(headers=fields), max_header_lines=2).status == 431
    assert parse_request(head(headers=fields), max_header_lines=3).method == "GET"


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET / HTTP/1.0",
        b"GET / HTTP/2.0",
        b"GET / http/1.1",
        b"GET /",
        b"GET / HTTP/1.1 extra",
        b"GET  / HTTP/1.1",
        b"GET / HTTP/1.1 ",
        b" GET / HTTP/1.1",
        b"GET\t/ HTTP/1.1",
        b"",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on a plain port
        b"G(T / HTTP/1.1",
        b"G\xc3\x89T / HTTP/1.1",
        b"GET /caf\xc3\xa9 HTTP/1.1",
        b"GET /a\x00b HTTP/1.1",
        b"GET /a#frag HTTP/1.1",
    ],
)
def test_parse_request_refuses_a_malformed_request_line_with_400(request_line: bytes) -> None:
    assert parse_refusal(raw_head(request_line, b"Host: a")).status == 400


@pytest.mark.parametrize(
    "target", [b"*", b"http://127.0.0.1:8001/", b"127.0.0.1:8001", b"chat", b"?q"]
)
def test_parse_request_refuses_a_target_not_in_origin_form_with_400(target: bytes) -> None:
    data = raw_head(b"GET " + target + b" HTTP/1.1", b"Host: a")
    assert parse_refusal(data).status == 400


def test_parse_request_refuses_obsolete_line_folding_with_400() -> None:
    data = raw_head(b"GET / HTTP/1.1", b"Host: a", b"X-Long: one", b" two")
    assert parse_refusal(data).status == 400


def test_parse_request_refuses_a_line_folded_with_a_tab_with_400() -> None:
    data = raw_head(b"GET / HTTP/1.1", b"Host: a", b"X-Long: one", b"\ttwo")
    assert parse_refusal(data).status == 400


def test_parse_request_refuses_a_header_line_without_colon_with_400() -> None:
    assert parse_refusal(raw_head(b"GET / HTTP/1.1", b"Host: a", b"NoColon")).status == 400


def test_parse_request_refuses_whitespace_before_the_colon_with_400() -> None:
    assert parse_refusal(raw_head(b"GET / HTTP/1.1", b"Host : a")).status == 400


@pytest.mark.parametrize("name", [b"", b"X Y", b"X(Y)", b"X/Y", b"Caf\xe9", b"X\x00"])
def test_parse_request_refuses_a_header_name_that_is_not_a_token_with_400(name: bytes) -> None:
    assert parse_refusal(raw_head(b"GET / HTTP/1.1", b"Host: a", name + b": v")).status == 400


@pytest.mark.parametrize("value", [b"a\x00b", b"a\rb", b"a\nb", b"a\x1bb", b"a\x7fb"])
def test_parse_request_refuses_a_control_character_in_a_header_value_with_400(
    value: bytes,
) -> None:
    assert parse_refusal(raw_head(b"GET / HTTP/1.1", b"Host: a", b"X: " + value)).status == 400


def test_parse_request_refuses_an_empty_line_inside_the_headers_with_400() -> None:
    assert parse_refusal(raw_head(b"GET / HTTP/1.1", b"Host: a", b"", b"X: 1")).status == 400


def test_parse_request_refuses_a_head_without_the_final_blank_line_with_400() -> None:
    assert parse_refusal(b"GET / HTTP/1.1\r\nHost: a\r\n").status == 400


def test_parse_request_refuses_a_missing_host_with_400() -> None:
    assert parse_refusal(raw_head(b"GET / HTTP/1.1", b"Upgrade: websocket")).status == 400


def test_parse_request_refuses_two_hosts_with_400() -> None:
    assert parse_refusal(raw_head(b"GET / HTTP/1.1", b"Host: a", b"Host: b")).status == 400


@pytest.mark.parametrize(
    "host",
    [
        b"",
        b"a b",
        b"a,b",
        b"user@a",
        b"a:port",
        b"a:",
        b"a:0",
        b"a:65536",
        b"a:123456",
        b"a/b",
        b"[::1",
        b"[not:an:address]",
        b"::1",
        b"caf\xe9.example",
    ],
)
def test_parse_request_refuses_an_invalid_host_with_400(host: bytes) -> None:
    assert parse_refusal(raw_head(b"GET / HTTP/1.1", b"Host: " + host)).status == 400


@pytest.mark.parametrize("length", [b"-1", b"+1", b"1.0", b"0x10", b"1 2", b"", b"1" * 19])
def test_parse_request_refuses_a_content_length_that_is_not_digits_with_400(length: bytes) -> None:
    data = raw_head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: " + length)
    assert parse_refusal(data).status == 400


def test_parse_request_refuses_repeated_content_length_with_400() -> None:
    data = raw_head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 1", b"Content-Length: 1")
    assert parse_refusal(data).status == 400


def test_parse_request_refuses_transfer_encoding_with_400() -> None:
    data = raw_head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked")
    assert parse_refusal(data).status == 400


def test_parse_request_refuses_transfer_encoding_next_to_content_length_with_400() -> None:
    data = raw_head(
        b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 5", b"transfer-encoding: chunked"
    )
    assert parse_refusal(data).status == 400


# parse_request's relaxations, for the page server (web.py); the defaults stay strict.


def test_parse_request_takes_http_1_0_when_allowed() -> None:
    request = parse_request(raw_head(b"GET /a HTTP/1.0", b"Host: a"), allow_http_1_0=True)
    assert (request.method, request.path, request.version) == ("GET", "/a", "HTTP/1.0")


def test_parse_request_http_1_0_needs_no_host_when_allowed() -> None:
    request = parse_request(raw_head(b"GET / HTTP/1.0", b"X-A: 1"), allow_http_1_0=True)
    assert "Host" not in request.headers


@pytest.mark.parametrize(
    "host_lines", [[b"Host: a", b"Host: b"], [b"Host: a@b"]], ids=["two", "invalid"]
)
def test_parse_request_http_1_0_still_refuses_a_bad_host(host_lines: list[bytes]) -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_request(raw_head(b"GET / HTTP/1.0", *host_lines), allow_http_1_0=True)
    assert caught.value.status == 400


def test_parse_request_http_1_1_still_needs_a_host_when_http_1_0_is_allowed() -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_request(raw_head(b"GET / HTTP/1.1", b"X-A: 1"), allow_http_1_0=True)
    assert caught.value.status == 400


def test_parse_request_gives_http_1_1_as_the_version() -> None:
    assert parse_request(head("GET / HTTP/1.1")).version == "HTTP/1.1"


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9"])
def test_parse_request_allowing_http_1_0_takes_no_other_version(version: bytes) -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_request(raw_head(b"GET / " + version, b"Host: a"), allow_http_1_0=True)
    assert caught.value.status == 400


def test_parse_request_takes_transfer_encoding_when_allowed() -> None:
    data = raw_head(b"GET / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked")
    request = parse_request(data, allow_transfer_encoding=True)
    assert request.headers.get("Transfer-Encoding") == "chunked"
    assert request.body_length == 0


def test_parse_request_allowing_transfer_encoding_still_refuses_two_content_lengths() -> None:
    data = raw_head(b"GET / HTTP/1.1", b"Host: a", b"Content-Length: 1", b"Content-Length: 2")
    with pytest.raises(HandshakeError) as caught:
        parse_request(data, allow_transfer_encoding=True, allow_http_1_0=True)
    assert caught.value.status == 400


# Fragments that steer generated input past the request line and into the header parser.
HEAD_PREFIXES = [b"", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n"]
HEAD_FRAGMENTS = [
    b"\r\n",
    b":",
    b" ",
    b"\t",
    b",",
    b"Host",
    b"Content-Length",
    b"Transfer-Encoding",
]
arbitrary_heads = st.builds(
    lambda prefix, parts: prefix + b"".join(parts) + b"\r\n\r\n",
    st.sampled_from(HEAD_PREFIXES),
    st.lists(st.one_of(st.sampled_from(HEAD_FRAGMENTS), st.binary(max_size=8)), max_size=40),
)


@given(arbitrary_heads)
def test_parse_request_raises_nothing_but_handshake_error_on_arbitrary_bytes(data: bytes) -> None:
    try:
        parse_request(data)
    except HandshakeError as refused:
        assert refused.status in (400, 431)


# accept_key, is_upgrade


def test_accept_key_matches_the_rfc_6455_sample() -> None:
    assert accept_key(RFC_SAMPLE_KEY) == RFC_SAMPLE_ACCEPT


def test_is_upgrade_is_true_for_the_websocket_token_in_any_case() -> None:
    assert is_upgrade(upgrade_request(replace={"Upgrade": "WebSocket"}))


def test_is_upgrade_is_true_when_websocket_is_one_of_several_protocols() -> None:
    assert is_upgrade(upgrade_request(replace={"Upgrade": "h2c, websocket"}))


def test_is_upgrade_is_false_without_an_upgrade_header() -> None:
    assert not is_upgrade(parse_request(head(headers=[("Host", "a")])))


def test_is_upgrade_is_false_for_another_protocol() -> None:
    assert not is_upgrade(upgrade_request(replace={"Upgrade": "h2c"}))


# check_upgrade: accepted requests


def test_check_upgrade_returns_the_accept_value_for_a_valid_request() -> None:
    assert check_upgrade(upgrade_request()) == RFC_SAMPLE_ACCEPT


def test_check_upgrade_accepts_a_request_built_by_the_websockets_client() -> None:
    client = websockets_client()
    data = websockets_request_bytes(client)
    assert find_head_end(data) == len(data)
    request = parse_request(data)
    assert (request.path, request.query) == ("/chat", "room=1")
    assert check_upgrade(request) == accept_key(client.key)


def test_check_upgrade_accepts_a_websockets_client_with_a_same_host_origin() -> None:
    client = websockets_client(origin="http://127.0.0.1:8000")
    request = parse_request(websockets_request_bytes(client))
    assert check_upgrade(request) == accept_key(client.key)


def test_response_101_completes_the_websockets_client_handshake() -> None:
    client = websockets_client()
    accept = check_upgrade(parse_request(websockets_request_bytes(client)))
    client.receive_data(response_101(accept))
    assert client.handshake_exc is None
    assert client.state is State.OPEN


def test_check_upgrade_accepts_header_names_in_any_case() -> None:
    data = raw_head(
        b"GET / HTTP/1.1",
        b"HOST: 127.0.0.1:8001",
        b"upgrade: websocket",
        b"CONNECTION: upgrade",
        b"sec-websocket-key: " + RFC_SAMPLE_KEY.encode(),
        b"SEC-WEBSOCKET-VERSION: 13",
    )
    assert check_upgrade(parse_request(data)) == RFC_SAMPLE_ACCEPT


def test_check_upgrade_accepts_upgrade_among_other_connection_options() -> None:
    # Firefox sends "Connection: keep-alive, Upgrade".
    request = upgrade_request(replace={"Connection": "keep-alive, Upgrade"})
    assert check_upgrade(request) == RFC_SAMPLE_ACCEPT


def test_check_upgrade_accepts_upgrade_in_a_repeated_connection_header() -> None:
    request = upgrade_request(
        replace={"Connection": "keep-alive"}, extra=[("Connection", "Upgrade")]
    )
    assert check_upgrade(request) == RFC_SAMPLE_ACCEPT


def test_check_upgrade_ignores_offered_extensions_and_subprotocols() -> None:
    request = upgrade_request(
        extra=[
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
            ("Sec-WebSocket-Protocol", "chat"),
        ]
    )
    assert check_upgrade(request) == RFC_SAMPLE_ACCEPT


# check_upgrade: refusals, each with its status and headers


def test_check_upgrade_refuses_a_method_other_than_get_with_405_and_allow() -> None:
    refused = refusal(upgrade_request(method="POST"))
    assert refused.status == 405
    assert refused.headers == (("Allow", "GET"),)


def test_check_upgrade_method_is_case_sensitive() -> None:
    assert refusal(upgrade_request(method="get")).status == 405


def test_check_upgrade_refuses_a_plain_http_request_with_426_and_upgrade_headers() -> None:
    refused = refusal(upgrade_request(without=("Upgrade", "Connection")))
    assert refused.status == 426
    assert refused.headers == (
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
    )
    assert "WebSocket client" in refused.message


def test_check_upgrade_refuses_another_upgrade_protocol_with_426() -> None:
    assert refusal(upgrade_request(replace={"Upgrade": "h2c"})).status == 426


def test_check_upgrade_refuses_a_missing_connection_upgrade_with_400() -> None:
    assert refusal(upgrade_request(without=("Connection",))).status == 400


def test_check_upgrade_refuses_connection_without_the_upgrade_token_with_400() -> None:
    assert refusal(upgrade_request(replace={"Connection": "keep-alive"})).status == 400


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 8", "", " 13x"])
def test_check_upgrade_refuses_a_version_other_than_13_with_426(version: str) -> None:
    refused = refusal(upgrade_request(replace={"Sec-WebSocket-Version": version}))
    assert refused.status == 426
    assert refused.headers == (("Sec-WebSocket-Version", "13"),)


def test_check_upgrade_refuses_a_missing_version_with_426() -> None:
    refused = refusal(upgrade_request(without=("Sec-WebSocket-Version",)))
    assert refused.status == 426
    assert refused.headers == (("Sec-WebSocket-Version", "13"),)


def test_check_upgrade_refuses_a_repeated_version_with_426() -> None:
    request = upgrade_request(extra=[("Sec-WebSocket-Version", "13")])
    assert refusal(request).status == 426


def test_check_upgrade_refuses_a_missing_key_with_400() -> None:
    assert refusal(upgrade_request(without=("Sec-WebSocket-Key",))).status == 400


def test_check_upgrade_refuses_a_repeated_key_with_400() -> None:
    request = upgrade_request(extra=[("Sec-WebSocket-Key", RFC_SAMPLE_KEY)])
    assert refusal(request).status == 400


@pytest.mark.parametrize(
    "key",
    [
        "",
        "not base64!",
        "dGhlIHNhbXBsZSBub25jZQ",  # padding missing
        "dGhlIHNhbXBsZSBub25jZQ=",  # padding short
        "dGhlIHNhbXBsZSBub25j",  # 15 bytes
        "dGhlIHNhbXBsZSBub25jZXMh",  # 18 bytes
        "dGhlIHNhbXBsZSBub25jZQ==dGhl",  # trailing data
        "dGhlIHNhbXBsZSBub25j ZQ==",  # inner space
        "dGhlIHNhbXBsZSBub25jZQ\xe9=",  # non-ASCII
        "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==",
    ],
)
def test_check_upgrade_refuses_a_key_that_is_not_16_base64_bytes_with_400(key: str) -> None:
    assert refusal(upgrade_request(replace={"Sec-WebSocket-Key": key})).status == 400


def test_check_upgrade_refuses_a_request_with_a_body_with_400() -> None:
    assert refusal(upgrade_request(extra=[("Content-Length", "5")])).status == 400


def test_check_upgrade_accepts_an_explicit_zero_content_length() -> None:
    request = upgrade_request(extra=[("Content-Length", "0")])
    assert check_upgrade(request) == RFC_SAMPLE_ACCEPT


def test_check_upgrade_refuses_a_foreign_origin_with_403() -> None:
    refused = refusal(upgrade_request(extra=[("Origin", "http://evil.example.com")]))
    assert refused.status == 403
    assert refused.headers == ()


def test_check_upgrade_accepts_a_foreign_origin_that_is_allowed() -> None:
    request = upgrade_request(extra=[("Origin", "http://Pages.Example.com")])
    assert check_upgrade(request, frozenset({"http://pages.example.com"})) == RFC_SAMPLE_ACCEPT


def test_check_upgrade_runs_its_checks_in_the_documented_order() -> None:
    everything_wrong = upgrade_request(
        method="POST",
        without=("Upgrade", "Connection", "Sec-WebSocket-Version", "Sec-WebSocket-Key"),
        extra=[("Origin", "http://evil.example.com")],
    )
    assert refusal(everything_wrong).status == 405
    no_upgrade = upgrade_request(without=("Upgrade", "Connection", "Sec-WebSocket-Key"))
    assert refusal(no_upgrade).status == 426
    no_connection = upgrade_request(without=("Connection", "Sec-WebSocket-Version"))
    assert refusal(no_connection).status == 400
    no_version = upgrade_request(
        without=("Sec-WebSocket-Version", "Sec-WebSocket-Key"),
        extra=[("Origin", "http://evil.example.com")],
    )
    assert refusal(no_version).status == 426
    bad_key = upgrade_request(
        replace={"Sec-WebSocket-Key": "x"}, extra=[("Origin", "http://evil.example.com")]
    )
    assert refusal(bad_key).status == 400


# origin_allowed

ORIGINS_ALLOWED: list[tuple[str | None, str | None, frozenset[str]]] = [
    # No Origin: a non-browser client, which could send any Origin it liked anyway.
    (None, "127.0.0.1:8001", frozenset()),
    (None, None, frozenset()),
    # The same host name on any port, either scheme, any case, with the default port implied.
    ("http://127.0.0.1:8000", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1:8000/", "127.0.0.1:8001", frozenset()),
    ("https://127.0.0.1", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1:8001", "127.0.0.1", frozenset()),
    ("http://raspberrypi.local:8000", "RaspberryPi.Local:8001", frozenset()),
    ("HTTP://LOCALHOST:8000", "localhost:8001", frozenset()),
    ("http://192.168.1.20:8000", "192.168.1.20:8001", frozenset()),
    # IPv6 literals, compared as addresses.
    ("http://[::1]:8000", "[::1]:8001", frozenset()),
    ("http://[::1]", "[0:0:0:0:0:0:0:1]:8001", frozenset()),
    ("http://[FE80::1]:8000", "[fe80::1]:8001", frozenset()),
    # Listed origins, compared lower-cased without a trailing "/".
    ("http://pages.example.com", "127.0.0.1:8001", frozenset({"http://pages.example.com"})),
    ("HTTP://Pages.Example.COM/", "127.0.0.1:8001", frozenset({"http://pages.example.com"})),
    ("http://pages.example.com", "127.0.0.1:8001", frozenset({"HTTP://PAGES.EXAMPLE.COM/"})),
    ("null", "127.0.0.1:8001", frozenset({"null"})),
    ("chrome-extension://abc", "127.0.0.1:8001", frozenset({"chrome-extension://abc"})),
    # "*" accepts anything, even what does not parse.
    ("http://evil.example.com", "127.0.0.1:8001", frozenset({"*"})),
    ("null", "127.0.0.1:8001", frozenset({"*"})),
    ("garbage", None, frozenset({"*"})),
]

ORIGINS_REFUSED: list[tuple[str | None, str | None, frozenset[str]]] = [
    # Another host, or a host name that merely contains or resembles ours.
    ("http://evil.example.com", "127.0.0.1:8001", frozenset()),
    ("http://evil.example.com.127.0.0.1.nip.io", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1.evil.com", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.10:8000", "127.0.0.1:8001", frozenset()),
    ("http://localhost:8000", "127.0.0.1:8001", frozenset()),
    ("http://localhost.:8000", "localhost:8001", frozenset()),
    ("http://raspberrypi:8000", "raspberrypi.local:8001", frozenset()),
    ("http://2130706433", "127.0.0.1:8001", frozenset()),  # 127.0.0.1 as a number
    ("http://[::1]:8000", "127.0.0.1:8001", frozenset()),
    ("http://[::ffff:127.0.0.1]", "127.0.0.1:8001", frozenset()),
    ("http://[::2]:8000", "[::1]:8001", frozenset()),
    # Userinfo: the host is what follows "@", and such an origin is never sent by a browser.
    ("http://127.0.0.1@evil.com", "127.0.0.1:8001", frozenset()),
    ("http://evil.com@127.0.0.1", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1:8000@evil.com", "127.0.0.1:8001", frozenset()),
    # Not an http(s) origin, or not an origin at all.
    ("null", "127.0.0.1:8001", frozenset()),
    ("file://127.0.0.1", "127.0.0.1:8001", frozenset()),
    ("chrome-extension://127.0.0.1", "127.0.0.1:8001", frozenset()),
    ("ws://127.0.0.1:8000", "127.0.0.1:8001", frozenset()),
    ("127.0.0.1:8000", "127.0.0.1:8001", frozenset()),
    ("//127.0.0.1:8000", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1:8000/path", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1:8000//", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1:8000?x", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1:8000#x", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1:", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1:0", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1:99999", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1%2f", "127.0.0.1%2f", frozenset()),
    ("http://", "127.0.0.1:8001", frozenset()),
    ("", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1, http://evil.com", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1 ", "127.0.0.1:8001", frozenset()),
    ("http://127.0.0.1\n", "127.0.0.1:8001", frozenset()),
    ("http://[::1", "[::1]:8001", frozenset()),
    ("http://[::1%25eth0]", "[::1]:8001", frozenset()),
    # IDN: no mapping between Unicode and punycode, and non-ASCII never matches.
    ("http://exämple.com", "exämple.com", frozenset()),
    ("http://exämple.com", "xn--exmple-cua.com", frozenset()),
    ("http://xn--exmple-cua.com", "exämple.com", frozenset()),
    # No Host to compare with, or an unparsable one.
    ("http://127.0.0.1:8000", None, frozenset()),
    ("http://127.0.0.1:8000", "", frozenset()),
    ("http://127.0.0.1:8000", "127.0.0.1, evil.com", frozenset()),
    # A listed origin allows only itself.
    ("http://evil.example.com", "127.0.0.1:8001", frozenset({"http://pages.example.com"})),
    ("https://pages.example.com", "127.0.0.1:8001", frozenset({"http://pages.example.com"})),
    ("http://pages.example.com:8080", "127.0.0.1:8001", frozenset({"http://pages.example.com"})),
]


@pytest.mark.parametrize(("origin", "host", "allowed"), ORIGINS_ALLOWED)
def test_origin_allowed_accepts(
    origin: str | None, host: str | None, allowed: frozenset[str]
) -> None:
    assert origin_allowed(origin, host, allowed)


@pytest.mark.parametrize(("origin", "host", "allowed"), ORIGINS_REFUSED)
def test_origin_allowed_refuses(
    origin: str | None, host: str | None, allowed: frozenset[str]
) -> None:
    assert not origin_allowed(origin, host, allowed)


# Responses


def test_response_101_is_exactly_the_switching_protocols_response() -> None:
    assert response_101(RFC_SAMPLE_ACCEPT) == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"\r\n"
    )


def test_handshake_error_response_is_a_complete_plain_text_response() -> None:
    refused = HandshakeError(405, "use GET", [("Allow", "GET")])
    assert refused.response() == (
        b"HTTP/1.1 405 Method Not Allowed\r\n"
        b"Allow: GET\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 8\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"use GET\n"
    )


def test_handshake_error_response_body_is_utf_8() -> None:
    refused = HandshakeError(400, "caf\u00e9")
    assert refused.response().endswith(
        b"Content-Length: 6\r\nConnection: close\r\n\r\ncaf\xc3\xa9\n"
    )


def test_handshake_error_keeps_status_message_and_headers() -> None:
    refused = HandshakeError(426, "upgrade", [("Upgrade", "websocket")])
    assert (refused.status, refused.message, refused.headers) == (
        426,
        "upgrade",
        (("Upgrade", "websocket"),),
    )


def test_refusal_is_read_by_the_websockets_client_as_its_status() -> None:
    client = websockets_client(origin="http://evil.example.com")
    refused = refusal(parse_request(websockets_request_bytes(client)))
    client.receive_data(refused.response())
    assert isinstance(client.handshake_exc, InvalidStatus)
    response: Response = client.handshake_exc.response
    assert response.status_code == 403
    assert response.body == f"{refused.message}\n".encode()


def test_http_response_puts_extra_headers_before_the_standard_ones() -> None:
    data = http_response(200, b"{}", "application/json", [("Cache-Control", "no-store")])
    assert data == (
        b"HTTP/1.1 200 OK\r\n"
        b"Cache-Control: no-store\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 2\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"{}"
    )


def test_http_response_with_an_empty_body_has_content_length_zero() -> None:
    assert http_response(404, b"", "text/plain").endswith(
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("name", "value"), [("X-Bad", "a\r\nSet-Cookie: x=1"), ("X-Bad", "a\nb"), ("X Bad", "v")]
)
def test_http_response_refuses_a_header_that_could_split_the_response(
    name: str, value: str
) -> None:
    with pytest.raises(ValueError):
        http_response(200, b"", "text/plain", [(name, value)])
