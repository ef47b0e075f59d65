"""Specification of echo_server.protocol.http: strict HTTP/1.1 request heads and responses.

Pure bytes in and out, no sockets: the parser both servers use, its refusals (each with its
status), the relaxations the page server asks for, and the responses built for every refusal.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from echo_server.protocol.http import (
    Headers,
    HttpError,
    find_head_end,
    http_response,
    parse_request,
)

UPGRADE_HEADERS: list[tuple[str, str]] = [
    ("Host", "127.0.0.1:8001"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
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


def parse_refusal(data: bytes, max_header_lines: int = 100) -> HttpError:
    with pytest.raises(HttpError) as caught:
        parse_request(data, max_header_lines)
    return caught.value


# Headers


def test_headers_get_is_case_insensitive() -> None:
    headers = Headers([("Sec-WebSocket-Key", "abc")])
    assert headers.get("sec-websocket-key") == "abc"
    assert headers.get("SEC-WEBSOCKET-KEY") == "abc"


def test_headers_get_joins_repeated_values_with_comma_space() -> None:
    headers = Headers([("Connection", "keep-alive"), ("X", "1"), ("connection", "Upgrade")])
    assert headers.get("Connection") == "keep-alive, Upgrade"


def test_headers_can_be_indexed_like_a_mapping_none_when_absent() -> None:
    headers = Headers([("Origin", "http://a.example"), ("X-Twice", "1"), ("x-twice", "2")])
    assert headers["origin"] == "http://a.example"
    assert headers["X-Twice"] == "1, 2"
    assert headers["Missing"] is None


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
    with pytest.raises(HttpError) as caught:
        find_head_end(b"GET /" + b"a" * 95, max_head_bytes=100)
    assert caught.value.status == 431


def test_find_head_end_accepts_a_head_of_exactly_the_limit() -> None:
    data = head()
    assert find_head_end(data, max_head_bytes=len(data)) == len(data)


def test_find_head_end_refuses_a_head_one_byte_over_the_limit() -> None:
    data = head()
    with pytest.raises(HttpError) as caught:
        find_head_end(data, max_head_bytes=len(data) - 1)
    assert caught.value.status == 431


def test_find_head_end_default_limit_is_8_kib() -> None:
    assert find_head_end(b"a" * (8 * 1024 - 1)) is None
    with pytest.raises(HttpError):
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
    with pytest.raises(HttpError) as caught:
        parse_request(raw_head(b"GET / HTTP/1.0", *host_lines), allow_http_1_0=True)
    assert caught.value.status == 400


def test_parse_request_http_1_1_still_needs_a_host_when_http_1_0_is_allowed() -> None:
    with pytest.raises(HttpError) as caught:
        parse_request(raw_head(b"GET / HTTP/1.1", b"X-A: 1"), allow_http_1_0=True)
    assert caught.value.status == 400


def test_parse_request_gives_http_1_1_as_the_version() -> None:
    assert parse_request(head("GET / HTTP/1.1")).version == "HTTP/1.1"


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9"])
def test_parse_request_allowing_http_1_0_takes_no_other_version(version: bytes) -> None:
    with pytest.raises(HttpError) as caught:
        parse_request(raw_head(b"GET / " + version, b"Host: a"), allow_http_1_0=True)
    assert caught.value.status == 400


def test_parse_request_takes_transfer_encoding_when_allowed() -> None:
    data = raw_head(b"GET / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked")
    request = parse_request(data, allow_transfer_encoding=True)
    assert request.headers.get("Transfer-Encoding") == "chunked"
    assert request.body_length == 0


def test_parse_request_allowing_transfer_encoding_still_refuses_two_content_lengths() -> None:
    data = raw_head(b"GET / HTTP/1.1", b"Host: a", b"Content-Length: 1", b"Content-Length: 2")
    with pytest.raises(HttpError) as caught:
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
def test_parse_request_raises_nothing_but_http_error_on_arbitrary_bytes(data: bytes) -> None:
    try:
        parse_request(data)
    except HttpError as refused:
        assert refused.status in (400, 431)


# Responses


def test_http_error_response_is_a_complete_plain_text_response() -> None:
    refused = HttpError(405, "use GET", [("Allow", "GET")])
    assert refused.response() == (
        b"HTTP/1.1 405 Method Not Allowed\r\n"
        b"Allow: GET\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 8\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"use GET\n"
    )


def test_http_error_response_body_is_utf_8() -> None:
    refused = HttpError(400, "caf\u00e9")
    assert refused.response().endswith(
        b"Content-Length: 6\r\nConnection: close\r\n\r\ncaf\xc3\xa9\n"
    )


def test_http_error_keeps_status_message_and_headers() -> None:
    refused = HttpError(426, "upgrade", [("Upgrade", "websocket")])
    assert (refused.status, refused.message, refused.headers) == (
        426,
        "upgrade",
        (("Upgrade", "websocket"),),
    )


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
