"""An Upgrade, in-process: a socket between accept() and its WebSocket, on a loop driven by hand.

A bare core Server (no app) is given its routes and a plain-HTTP handler made here; raw sockets
send exact bytes, split as a hostile or unlucky peer would. What is checked: the upgrade happens
when the head is complete and only then, each refusal gets its status and then the socket is
let go, plain requests go to the handler with their body, and time limits hold.
"""

from __future__ import annotations

import contextlib
import socket

from inprocess import Harness, raw_exchange, turns
from support import upgrade_request

from echo_server.core.connection import Connection
from echo_server.core.upgrade import UpgradeState
from echo_server.protocol.http import HttpError, Request, http_response


class Hello(Connection):
    def connected(self) -> None:
        self.send_message("hello")


class Shouting:
    """A plain-HTTP handler for /shout: answers the body in capitals; refuses GET with 405."""

    def handles(self, request: Request) -> bool:
        return request.path == "/shout"

    def answer(self, request: Request, body: bytes, peer: str) -> bytes:
        if request.method != "POST":
            raise HttpError(405, "POST only.", [("Allow", "POST")])
        return http_response(200, body.upper(), "text/plain")


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_the_upgrade_happens_once_the_head_is_complete_however_it_is_split(
    inproc: Harness,
) -> None:
    server = inproc.core_server({"/": Hello})
    request = upgrade_request(server.port)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    received = bytearray()

    def pump() -> bool:
        with contextlib.suppress(BlockingIOError):
            received.extend(sock.recv(65536))
        return b"hello" in received

    try:
        for byte in request[:-1]:  # one byte per turn: never complete, never answered
            sock.send(bytes([byte]))
            server.loop.run_once(0.0)
            assert not pump()
        assert len(server.upgrades) == 1
        sock.send(request[-1:])
        turns(server, pump, what="the 101 and the greeting")
    finally:
        sock.close()
    assert received.startswith(b"HTTP/1.1 101 ")
    assert not server.upgrades


def test_a_refused_request_gets_its_status_and_the_socket_is_let_go(inproc: Harness) -> None:
    server = inproc.core_server({"/": Hello})
    answer = raw_exchange(server, upgrade_request(server.port).replace(b"GET", b"PUT"))
    assert status_of(answer) == 405
    assert b"Allow: GET\r\n" in answer
    turns(server, lambda: not server.upgrades, what="the socket let go after the client's EOF")


def test_a_path_without_a_route_is_404_naming_the_routes(inproc: Harness) -> None:
    server = inproc.core_server({"/": Hello, "/hello": Hello})
    answer = raw_exchange(server, upgrade_request(server.port, "/nowhere"))
    assert status_of(answer) == 404
    assert b"/, /hello" in answer


def test_a_plain_request_goes_to_the_handler_with_its_body(inproc: Harness) -> None:
    server = inproc.core_server({"/": Hello}, http=Shouting())
    request = b"POST /shout HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n" + b"quiet"
    answer = raw_exchange(server, request)
    assert status_of(answer) == 200
    assert answer.endswith(b"\r\n\r\nQUIET")


def test_a_body_that_comes_later_is_waited_for(inproc: Harness) -> None:
    server = inproc.core_server({"/": Hello}, http=Shouting())
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    try:
        sock.sendall(b"POST /shout HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nqu")
        turns(server, lambda: bool(server.upgrades), what="the upgrade")
        (pending,) = server.upgrades
        turns(server, lambda: pending.state is UpgradeState.READING_BODY, what="the head read")
        sock.sendall(b"iet")
        turns(server, lambda: pending.state is not UpgradeState.READING_BODY, what="the body")
    finally:
        sock.close()


def test_the_handlers_refusal_is_its_status(inproc: Harness) -> None:
    server = inproc.core_server({"/": Hello}, http=Shouting())
    answer = raw_exchange(server, b"GET /shout HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status_of(answer) == 405
    assert b"Allow: POST\r\n" in answer


def test_a_body_over_the_message_limit_is_413_before_it_is_read(inproc: Harness) -> None:
    server = inproc.core_server({"/": Hello}, http=Shouting(), max_message_bytes=10)
    answer = raw_exchange(
        server, b"POST /shout HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 11\r\n\r\n"
    )
    assert status_of(answer) == 413


def test_a_plain_request_the_handler_does_not_take_is_426(inproc: Harness) -> None:
    server = inproc.core_server({"/": Hello}, http=Shouting())
    answer = raw_exchange(server, b"GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status_of(answer) == 426


def test_a_silent_socket_is_closed_at_the_handshake_timeout(inproc: Harness) -> None:
    server = inproc.core_server({"/": Hello}, handshake_timeout_s=0.05)
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        turns(server, lambda: bool(server.upgrades), what="the accept")
        turns(server, lambda: not server.upgrades, what="the timeout")
        sock.settimeout(5)
        assert sock.recv(10) == b""  # closed, and nothing was said
    finally:
        sock.close()
