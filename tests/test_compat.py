"""The drop-in for simple-websocket-server: upstream's handler classes, run on echo_server.

The handler classes here are upstream's own examples, as upstream wrote them (its README's echo
and chat servers, and its test's SimpleEcho), with one change: they import `WebSocketServer` and
`WebSocket` from echo_server. The servers run as upstream's test runs them, `serve_forever()`
in a thread and `close()` from the test's; ports are free ones (port 0) rather than upstream's
fixed 8000 and 38200. Clients are independent: upstream's test client (`websocket-client`) and
the `websockets` package.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import simple_websocket_server
from websocket import ABNF, create_connection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from echo_server import SSLWebSocketServer, WebSocket, WebSocketServer
from echo_server.protocol.frames import encode_frame

TIMEOUT_S = 10.0
MIB = 1024 * 1024

# Upstream's README: the echo server example, as written there.


class SimpleEcho(WebSocket):
    def handle(self) -> None:
        # echo message back to client
        self.send_message(self.data)

    def connected(self) -> None:
        print(self.address, "connected")

    def handle_close(self) -> None:
        print(self.address, "closed")


# Upstream's README: the chat server example, as written there (`clients` is its global list).

clients: list[WebSocket] = []


class SimpleChat(WebSocket):
    def handle(self) -> None:
        for client in clients:
            if client != self:
                client.send_message(self.address[0] + " - " + self.data)

    def connected(self) -> None:
        print(self.address, "connected")
        for client in clients:
            client.send_message(self.address[0] + " - connected")
        clients.append(self)

    def handle_close(self) -> None:
        clients.remove(self)
        print(self.address, "closed")
        for client in clients:
            client.send_message(self.address[0] + " - disconnected")


@contextlib.contextmanager
def serving(handler: type[WebSocket], **options: Any) -> Iterator[WebSocketServer]:
    """Upstream's test fixture: serve_forever() in a thread, close() at the end (free port)."""
    server = WebSocketServer("", 0, handler, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(TIMEOUT_S)
    assert not thread.is_alive(), "serve_forever() did not return after close()"


def url(server: WebSocketServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.serversocket.getsockname()[1]}{path}"


def ws_client(server: WebSocketServer, path: str = "/") -> ClientConnection:
    return connect(url(server, path), open_timeout=TIMEOUT_S, proxy=None)


def browser_client(server: WebSocketServer, origin: str = "null") -> ClientConnection:
    """A client that sends an Origin, as a browser does ("null": a page opened from a file)."""
    return connect(url(server), origin=Origin(origin), open_timeout=TIMEOUT_S, proxy=None)


# Upstream's own test (tests/test_servers.py), with websocket-client as upstream uses it.


def test_upstreams_own_test_passes() -> None:
    data = "$äüö^"
    with serving(SimpleEcho) as server:
        client = create_connection(url(server), timeout=TIMEOUT_S)
        try:
            client.send(data)
            assert client.recv() == data
        finally:
            client.close()


def test_websocket_is_upstreams_own_class() -> None:
    assert WebSocket is simple_websocket_server.WebSocket


# The README's examples.


def test_the_readme_echo_example_echoes_text_and_binary(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(SimpleEcho) as server, ws_client(server) as ws:
        ws.send("hello")
        assert ws.recv(TIMEOUT_S) == "hello"
        ws.send(b"\x00\x01\x02")
        assert ws.recv(TIMEOUT_S) == b"\x00\x01\x02"
    assert "connected" in capsys.readouterr().out


def test_the_readme_echo_example_prints_connected_and_closed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serving(SimpleEcho) as server:
        with ws_client(server) as ws:
            ws.send("x")
            ws.recv(TIMEOUT_S)
        for _ in range(200):  # closed is printed once the closing handshake is done
            if "closed" in capsys.readouterr().out:
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("handle_close was not called")


def test_the_readme_chat_example_relays_messages_and_arrivals() -> None:
    clients.clear()
    with serving(SimpleChat) as server, ws_client(server) as first:
        with ws_client(server) as second:
            assert first.recv(TIMEOUT_S) == "127.0.0.1 - connected"
            second.send("hi all")
            assert first.recv(TIMEOUT_S) == "127.0.0.1 - hi all"
        assert first.recv(TIMEOUT_S) == "127.0.0.1 - disconnected"


# Upstream's documented handler attributes.


class Recorder(WebSocket):
    """Echoes a description of what it sees, as JSON-free text (no parsing needed)."""

    def handle(self) -> None:
        kind = type(self.data).__name__
        origin = self.request.headers["Origin"] if self.request is not None else None
        self.send_message(f"{kind} opcode={self.opcode} origin={origin} path={self.request.path}")


def test_binary_data_is_a_bytearray_and_text_a_str_with_upstreams_opcodes() -> None:
    with serving(Recorder) as server, ws_client(server, "/where?x=1") as ws:
        ws.send(b"bin")
        assert ws.recv(TIMEOUT_S) == "bytearray opcode=2 origin=None path=/where?x=1"
        ws.send("text")
        assert ws.recv(TIMEOUT_S) == "str opcode=1 origin=None path=/where?x=1"


def test_request_headers_are_a_case_insensitive_mapping() -> None:
    with serving(Recorder) as server:
        same_host = f"http://127.0.0.1:{server.serversocket.getsockname()[1] + 1}"
        with connect(
            url(server), origin=Origin(same_host), open_timeout=TIMEOUT_S, proxy=None
        ) as ws:
            ws.send("x")
            assert f"origin={same_host}" in str(ws.recv(TIMEOUT_S))


class Sender(WebSocket):
    def handle(self) -> None:
        self.send_message("text")
        self.send_message(b"bytes")
        self.send_message(bytearray(b"bytearray"))
        self.send_fragment_start("frag")
        self.send_fragment("ment")
        self.send_fragment_end("ed")


def test_send_message_takes_str_bytes_and_bytearray_and_fragments_make_one_message() -> None:
    with serving(Sender) as server, ws_client(server) as ws:
        ws.send("go")
        received = [ws.recv(TIMEOUT_S) for _ in range(4)]
    assert received == ["text", b"bytes", b"bytearray", "fragmented"]


class Counter(WebSocket):
    def handle(self) -> None:
        self.send_message(str(len(self.server.connections)))


def test_server_connections_holds_the_handlers_of_open_clients() -> None:
    with serving(Counter) as server, ws_client(server) as one, ws_client(server) as two:
        one.send("?")
        assert one.recv(TIMEOUT_S) == "2"
        assert all(isinstance(handler, Counter) for handler in server.connections.values())
        two.close()
        for _ in range(200):
            one.send("?")
            if one.recv(TIMEOUT_S) == "1":
                break
        else:
            pytest.fail("a closed client stayed in server.connections")


class Closer(WebSocket):
    def handle(self) -> None:
        self.close(4000, "bye now")


def test_close_with_a_status_and_a_reason_reaches_the_client() -> None:
    with serving(Closer) as server, ws_client(server) as ws:
        ws.send("close me")
        with pytest.raises(ConnectionClosed):
            ws.recv(TIMEOUT_S)
    assert ws.close_code == 4000
    assert ws.close_reason == "bye now"


class PoliteCloser(WebSocket):
    """Overrides close() and calls super(): upstream's way of adding to it."""

    def close(self, status: int = 1000, reason: str = "") -> None:
        super().close(status, "polite: " + reason)

    def handle(self) -> None:
        self.close(1000, "done")


def test_a_handlers_own_close_override_and_its_super_call_both_run() -> None:
    with serving(PoliteCloser) as server, ws_client(server) as ws:
        ws.send("x")
        with pytest.raises(ConnectionClosed):
            ws.recv(TIMEOUT_S)
    assert ws.close_reason == "polite: done"


class Faulty(WebSocket):
    def handle(self) -> None:
        if self.data == "boom":
            raise RuntimeError("a handler bug")
        self.send_message(self.data)


def test_a_handler_exception_closes_that_client_with_1011_and_the_server_goes_on() -> None:
    with serving(Faulty) as server:
        with ws_client(server) as victim:
            victim.send("boom")
            with pytest.raises(ConnectionClosedError):
                victim.recv(TIMEOUT_S)
        assert victim.close_code == 1011
        with ws_client(server) as other:
            other.send("still here")
            assert other.recv(TIMEOUT_S) == "still here"


def test_a_handler_class_that_is_not_a_websocket_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match="must subclass WebSocket"):
        WebSocketServer("", 0, object)  # type: ignore[arg-type]


# The hardened loop underneath: what upstream's own loop does not have.


def test_an_unmasked_frame_is_closed_with_1002() -> None:
    with serving(SimpleEcho) as server:
        port = server.serversocket.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), TIMEOUT_S) as sock:
            sock.sendall(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n" + encode_frame(0x1, b"unmasked")
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    frames = answer.partition(b"\r\n\r\n")[2]
    assert frames[0] == 0x88
    assert int.from_bytes(frames[2:4], "big") == 1002


def test_a_message_over_the_limit_is_closed_with_1009() -> None:
    with serving(SimpleEcho) as server, ws_client(server) as ws:
        ws.send(b"x" * (MIB + 1))
        with pytest.raises(ConnectionClosedError):
            ws.recv(TIMEOUT_S)
    assert ws.close_code == 1009


def test_limits_are_settings_keywords() -> None:
    with serving(SimpleEcho, max_message_bytes=10) as server, ws_client(server) as ws:
        ws.send("x" * 11)
        with pytest.raises(ConnectionClosedError):
            ws.recv(TIMEOUT_S)
    assert ws.close_code == 1009


class SaysSubprotocol(WebSocket):
    def connected(self) -> None:
        # echo_server's addition: upstream's class (and so its type) has no such attribute.
        self.send_message(repr(self.subprotocol))  # type: ignore[attr-defined]


def test_a_handler_sees_the_subprotocol_chosen_from_the_servers_list() -> None:
    with (
        serving(SaysSubprotocol, subprotocols=("ocpp1.6", "mqtt")) as server,
        connect(url(server), open_timeout=TIMEOUT_S, subprotocols=[Subprotocol("mqtt")]) as ws,
    ):
        assert ws.subprotocol == "mqtt"
        assert ws.recv(TIMEOUT_S) == "'mqtt'"


def test_a_handler_sees_none_without_a_subprotocol() -> None:
    with serving(SaysSubprotocol, subprotocols="mqtt") as server, ws_client(server) as ws:
        assert ws.recv(TIMEOUT_S) == "None"


def test_compression_is_on_unless_turned_off_and_handlers_never_see_it() -> None:
    with serving(SimpleEcho) as server, ws_client(server) as ws:
        assert ws.protocol.extensions
        ws.send("x" * 1000)
        assert ws.recv(TIMEOUT_S) == "x" * 1000
    with serving(SimpleEcho, compression=False) as server, ws_client(server) as ws:
        assert ws.protocol.extensions == []


def test_two_thousand_clients_are_served_beyond_selects_limit_of_1024() -> None:
    # Upstream's select() loop raises past descriptor 1024 and takes every client down.
    count = 2000
    with serving(SimpleEcho) as server:
        port = server.serversocket.getsockname()[1]
        socks = []
        try:
            for _ in range(count):
                socks.append(socket.create_connection(("127.0.0.1", port), TIMEOUT_S))
            with ws_client(server) as ws:
                ws.send("one more")
                assert ws.recv(TIMEOUT_S) == "one more"
        finally:
            for sock in socks:
                sock.close()


# Origins: a page opened from a file.


def test_a_page_opened_from_a_file_is_refused_with_what_to_do() -> None:
    with serving(SimpleEcho) as server, pytest.raises(InvalidStatus) as refused:
        connect(url(server), origin=Origin("null"), open_timeout=TIMEOUT_S, proxy=None)
    response = refused.value.response
    assert response.status_code == 403
    assert b"--allow-origin null" in response.body


def test_a_page_opened_from_a_file_connects_when_null_is_allowed() -> None:
    with serving(SimpleEcho, allowed_origins={"null"}) as server, browser_client(server) as ws:
        ws.send("from a file")
        assert ws.recv(TIMEOUT_S) == "from a file"


# Stopping: close() from another thread (above, in every test), and from a signal handler.


def test_close_from_a_signal_handler_ends_serve_forever_in_the_main_thread() -> None:
    server = WebSocketServer("", 0, SimpleEcho)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: server.close())
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    bound = threading.Timer(TIMEOUT_S, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        bound.start()
        server.serve_forever()  # returns once the handler's close() has been carried out
    finally:
        timer.cancel()
        bound.cancel()
        signal.signal(signal.SIGUSR1, previous)


def test_handle_request_serves_one_round() -> None:
    server = WebSocketServer("", 0, SimpleEcho, select_interval=0.01)
    port = server.serversocket.getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), TIMEOUT_S) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            sock.settimeout(0.01)
            answer = b""
            for _ in range(500):
                server.handle_request()
                with contextlib.suppress(TimeoutError):
                    answer += sock.recv(65536)
                if answer:
                    break
        assert answer.startswith(b"HTTP/1.1 400 ")
    finally:
        server.server.close()
        server.loop.close()


# TLS: upstream's SSLWebSocketServer signature.

SELF_SIGNED = shlex.split(
    "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost"
    " -addext subjectAltName=IP:127.0.0.1 -days 1"
)


def test_ssl_websocket_server_serves_wss(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [*SELF_SIGNED, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = SSLWebSocketServer("", 0, SimpleEcho, str(cert), str(key))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        port = server.serversocket.getsockname()[1]
        client = create_connection(
            f"wss://127.0.0.1:{port}/", timeout=TIMEOUT_S, sslopt={"context": context}
        )
        try:
            client.send_binary(b"over TLS")
            assert client.recv_data() == (ABNF.OPCODE_BINARY, b"over TLS")
        finally:
            client.close()
    finally:
        server.close()
        thread.join(TIMEOUT_S)
    assert not thread.is_alive()


def test_ssl_websocket_server_without_a_certificate_says_so() -> None:
    with pytest.raises(ValueError, match="certfile and keyfile"):
        SSLWebSocketServer("", 0, SimpleEcho)
