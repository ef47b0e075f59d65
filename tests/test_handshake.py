"""Specification of echo_server.protocol.handshake: the server side of the opening handshake.

Pure bytes in and out, no sockets. Where another implementation can stand in for a real peer,
it does: requests built by the `websockets` package's own client handshake must be accepted,
and the responses built here must be understood by that client.
"""

from __future__ import annotations

import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, NegotiationError
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Origin, Subprotocol
from websockets.uri import parse_uri

from echo_server.protocol.handshake import (
    NULL_ORIGIN_MESSAGE,
    Accepted,
    accept_key,
    check_upgrade,
    is_upgrade,
    negotiate,
    origin_allowed,
    response_101,
    select_subprotocol,
)
from echo_server.protocol.http import HttpError, Request, find_head_end, parse_request

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


def refusal(request: Request, allowed_origins: frozenset[str] = frozenset()) -> HttpError:
    with pytest.raises(HttpError) as caught:
        check_upgrade(request, allowed_origins)
    return caught.value


def websockets_client(
    origin: str | None = None, subprotocols: list[str] | None = None, compression: bool = False
) -> ClientProtocol:
    return ClientProtocol(
        parse_uri("ws://127.0.0.1:8001/chat?room=1"),
        origin=None if origin is None else Origin(origin),
        subprotocols=None if subprotocols is None else [Subprotocol(p) for p in subprotocols],
        extensions=[ClientPerMessageDeflateFactory()] if compression else None,
    )


def websockets_handshake(
    client: ClientProtocol, *, subprotocols: tuple[str, ...] = (), compression: bool = True
) -> Accepted:
    """Our answer to the websockets client's request, fed back to that client."""
    request = parse_request(websockets_request_bytes(client))
    accepted = negotiate(
        request, check_upgrade(request), subprotocols=subprotocols, compression=compression
    )
    client.receive_data(accepted.response())
    return accepted


def websockets_request_bytes(client: ClientProtocol) -> bytes:
    client.send_request(client.connect())
    return b"".join(client.data_to_send())


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


def test_refusal_is_read_by_the_websockets_client_as_its_status() -> None:
    client = websockets_client(origin="http://evil.example.com")
    refused = refusal(parse_request(websockets_request_bytes(client)))
    client.receive_data(refused.response())
    assert isinstance(client.handshake_exc, InvalidStatus)
    response: Response = client.handshake_exc.response
    assert response.status_code == 403
    assert response.body == f"{refused.message}\n".encode()


def test_a_page_opened_from_a_file_is_refused_with_a_message_that_says_what_to_do() -> None:
    refused = refusal(upgrade_request(extra=[("Origin", "null")]))
    assert refused.status == 403
    assert refused.message == NULL_ORIGIN_MESSAGE
    assert "--allow-origin null" in refused.message


def test_a_page_opened_from_a_file_is_accepted_when_null_is_allowed() -> None:
    assert check_upgrade(upgrade_request(extra=[("Origin", "null")]), frozenset({"null"}))


# Subprotocols: select_subprotocol, and the websockets client's view of the answer


def test_the_first_offered_subprotocol_the_server_speaks_is_selected() -> None:
    assert select_subprotocol(["mqtt, ocpp1.6, graphql-ws"], ("graphql-ws", "ocpp1.6")) == (
        "ocpp1.6"
    )


def test_subprotocols_offered_on_several_header_lines_are_read_in_order() -> None:
    assert select_subprotocol(["mqtt", "ocpp1.6"], ("ocpp1.6", "mqtt")) == "mqtt"


def test_star_selects_whatever_the_client_offers_first() -> None:
    assert select_subprotocol([" graphql-transport-ws , mqtt"], ("*",)) == "graphql-transport-ws"


def test_no_subprotocol_is_selected_when_none_offered_is_spoken() -> None:
    assert select_subprotocol(["mqtt"], ("ocpp1.6",)) is None


def test_no_subprotocol_is_selected_by_a_server_configured_with_none() -> None:
    assert select_subprotocol(["mqtt"], ()) is None


def test_no_subprotocol_is_selected_when_the_client_offers_none() -> None:
    assert select_subprotocol([], ("*",)) is None


def test_subprotocol_names_compare_case_sensitively() -> None:
    assert select_subprotocol(["OCPP1.6"], ("ocpp1.6",)) is None


def test_an_offered_name_that_is_not_a_token_is_never_selected() -> None:
    assert select_subprotocol(['a b, "quoted", ok'], ("*",)) == "ok"


def test_the_websockets_client_gets_the_subprotocol_it_asked_for() -> None:
    client = websockets_client(subprotocols=["graphql-transport-ws", "graphql-ws"])
    accepted = websockets_handshake(client, subprotocols=("graphql-ws", "graphql-transport-ws"))
    assert accepted.subprotocol == "graphql-transport-ws"
    assert client.state is State.OPEN
    assert client.subprotocol == "graphql-transport-ws"


def test_with_no_subprotocol_in_common_the_answer_names_none_and_the_client_decides() -> None:
    # RFC 6455 leaves it to the client; websockets opens the connection with no subprotocol
    # (an application that insists checks `subprotocol` itself), as browsers do.
    client = websockets_client(subprotocols=["ocpp1.6"])
    accepted = websockets_handshake(client, subprotocols=("ocpp2.0.1",))
    assert accepted.subprotocol is None
    assert b"Sec-WebSocket-Protocol" not in accepted.response()
    assert client.state is State.OPEN
    assert client.subprotocol is None


def test_the_websockets_client_refuses_a_subprotocol_it_did_not_offer() -> None:
    # Why the answer must come from the client's offer, even with "*".
    client = websockets_client(subprotocols=["ocpp1.6"])
    request = parse_request(websockets_request_bytes(client))
    client.receive_data(response_101(check_upgrade(request), subprotocol="mqtt"))
    assert isinstance(client.handshake_exc, NegotiationError)


# permessage-deflate in the handshake (the rules themselves: test_deflate.py)


def test_compression_offered_by_the_websockets_client_is_agreed() -> None:
    client = websockets_client(compression=True)
    accepted = websockets_handshake(client)
    assert accepted.deflate is not None
    assert client.state is State.OPEN
    assert [type(extension).__name__ for extension in client.extensions] == ["PerMessageDeflate"]


def test_compression_off_answers_no_extension_to_an_offer() -> None:
    client = websockets_client(compression=True)
    accepted = websockets_handshake(client, compression=False)
    assert accepted.deflate is None
    assert b"Sec-WebSocket-Extensions" not in accepted.response()
    assert client.state is State.OPEN
    assert client.extensions == []


def test_an_extension_the_client_never_offered_is_refused_by_it() -> None:
    # The check above means something: websockets refuses an answer naming an extension it
    # did not offer.
    client = websockets_client()
    request = parse_request(websockets_request_bytes(client))
    client.receive_data(response_101(check_upgrade(request), extensions="permessage-deflate"))
    assert isinstance(client.handshake_exc, NegotiationError)


def test_response_101_names_the_subprotocol_and_the_extension() -> None:
    assert response_101(RFC_SAMPLE_ACCEPT, subprotocol="mqtt", extensions="permessage-deflate") == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: mqtt\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        b"\r\n"
    )
