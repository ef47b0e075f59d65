"""The page server (echo_server/web.py), as a running process seen from a client's socket.

Requests are written byte for byte on raw sockets, because http.client and browsers normalise
paths ("/a/../b", "%2e") before sending them, and the point here is what the server does with
what an attacker can send. Every site has a secret file just outside its folder, holding a
unique marker; no response may ever contain that marker.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import select
import signal
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest
from conftest import StartServer
from support import REPO, STOP_TIMEOUT_S, ServerProcess, recv_until, start

from echo_server import defaults
from echo_server.addresses import canonical_address
from echo_server.app.routes import ROUTES
from echo_server.defaults import WEB_MAX_CONNECTIONS, WEB_MAX_CONNECTIONS_PER_ADDRESS
from echo_server.protocol.frames import CloseCode
from echo_server.web import CONTENT_SECURITY_POLICY

REPLY_TIMEOUT_S = 10.0
# Short deadlines (--request-timeout, --keep-alive-timeout) for the tests that wait for them.
QUICK_REQUEST_TIMEOUT_S = 2.0
QUICK_KEEP_ALIVE_TIMEOUT_S = 1.0
# A deadline plus slack for a loaded machine; a test waits no longer than this.
SLACK_S = 5.0
LARGE_FILE_BYTES = 3 * 1024 * 1024
# Far more than loopback socket buffers hold, so the server is still sending when we vanish.
HUGE_FILE_BYTES = 64 * 1024 * 1024
# Other client addresses: loopback is all of 127.0.0.0/8, and a server on 127.0.0.1 takes
# connections from any of them (bind the client socket to one before connecting).
OTHER_ADDRESS = "127.0.0.2"


@dataclass
class Site:
    """A folder to serve, the secret outside it, and the marker that must never leak."""

    root: Path
    outside: Path
    marker: str


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes
    raw: bytes


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """One site for the module: tests only add files to it, each under its own name."""
    marker = f"secret-{uuid.uuid4().hex}"
    outside = tmp_path_factory.mktemp("site")
    (outside / "secret.txt").write_text(marker)
    (outside / "private").mkdir()
    (outside / "private" / "secret.txt").write_text(marker)

    root = outside / "www"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>home</title>")
    (root / "app.js").write_text("console.log('app');")
    (root / "style.css").write_text("body { color: black; }")
    (root / "data.json").write_text('{"answer": 42}')
    (root / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "favicon.ico").write_bytes(b"\x00\x00\x01\x00")
    (root / "notes.txt").write_text("plain notes")
    (root / "blob.bin").write_bytes(b"\x00\x01\x02")
    (root / "README").write_text("no extension")
    (root / ".hidden").write_text(marker)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(marker)
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("<!doctype html><title>sub</title>")
    (root / "noindex").mkdir()
    (root / "noindex" / f"listed-{marker}.txt").write_text("x")
    (root / "link-out").symlink_to(outside / "secret.txt")
    (root / "dir-out").symlink_to(outside / "private", target_is_directory=True)
    (root / "link-in.txt").symlink_to(root / "notes.txt")
    (root / "link-to-hidden").symlink_to(root / ".hidden")
    return Site(root=root, outside=outside, marker=marker)


@pytest.fixture(scope="module")
def web(site: Site) -> Iterator[ServerProcess]:
    """The page server on `site`, shared by the tests of one request and its answer (starting
    a server per test would take most of this module's time); whatever they send, it must never
    print a traceback. Tests that read the log, fill the server or wait for it use `own_web`.
    """
    server = start(["web", "--port", "0", "--ws-port", "9", "--root", str(site.root)])
    yield server
    assert server.stop() == 0
    assert "Traceback" not in server.output()


@pytest.fixture
def own_web(start_server: StartServer, site: Site) -> Iterator[ServerProcess]:
    """A page server on `site` for this test alone."""
    server = start_server("web", "--port", "0", "--ws-port", "9", "--root", str(site.root))
    yield server
    assert "Traceback" not in server.output()


@pytest.fixture
def quick_web(start_server: StartServer, site: Site) -> Iterator[ServerProcess]:
    """The page server with short deadlines, for the tests that wait for them to pass."""
    server = start_server(
        "web",
        "--port",
        "0",
        "--ws-port",
        "9",
        "--root",
        str(site.root),
        "--request-timeout",
        str(QUICK_REQUEST_TIMEOUT_S),
        "--keep-alive-timeout",
        str(QUICK_KEEP_ALIVE_TIMEOUT_S),
    )
    yield server
    assert "Traceback" not in server.output()


def connect(server: ServerProcess, family_host: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection((family_host, server.port), timeout=REPLY_TIMEOUT_S)


def connect_from(server: ServerProcess, source: str) -> socket.socket:
    """A connection to the server on 127.0.0.1 from the loopback address `source`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((source, 0))
        sock.settimeout(REPLY_TIMEOUT_S)
        sock.connect(("127.0.0.1", server.port))
    except OSError:
        sock.close()
        raise
    return sock


def connect_busy(server: ServerProcess, source: str) -> socket.socket:
    """A connection from `source` in the middle of sending a request head: never idle."""
    sock = connect_from(server, source)
    sock.sendall(b"GET / HTTP/1.1\r\n")
    return sock


def closed_by_server(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the server ends the stream within timeout_s (whatever it sent before)."""
    deadline = time.monotonic() + timeout_s
    try:
        while (remaining_s := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining_s)
            if not sock.recv(65536):
                return True
    except (TimeoutError, BlockingIOError):
        return False
    except ConnectionError:
        return True
    return False


def read_until_closed(sock: socket.socket, timeout_s: float = REPLY_TIMEOUT_S) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    headers = http.client.parse_headers(io.BytesIO(header_block + b"\r\n\r\n"))
    return Reply(status=int(status_line.split()[1]), headers=headers, body=body, raw=raw)


def send_raw(server: ServerProcess, request: bytes, host: str = "127.0.0.1") -> Reply:
    """Send `request` as is and read the reply up to the server's close."""
    with connect(server, host) as sock:
        sock.sendall(request)
        return parse(read_until_closed(sock))


def fetch(
    server: ServerProcess, target: str, method: str = "GET", host: str = "127.0.0.1"
) -> Reply:
    raw = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    return send_raw(server, raw.encode("latin-1"), host)


def assert_leaks_nothing(reply: Reply, site: Site) -> None:
    text = reply.raw.decode("latin-1")
    assert site.marker not in text
    assert str(site.outside) not in text
    assert "Location" not in reply.headers


# What is served.


def test_root_serves_index_html(web: ServerProcess, site: Site) -> None:
    reply = fetch(web, "/")
    assert reply.status == 200
    assert reply.body == (site.root / "index.html").read_bytes()
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"


def test_config_json_tells_the_page_the_websocket_port(web: ServerProcess) -> None:
    reply = fetch(web, "/config.json")
    assert reply.status == 200
    assert json.loads(reply.body)["ws_port"] == 9
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["Cache-Control"] == "no-store"


def test_config_json_lists_every_websocket_route_with_what_it_is(web: ServerProcess) -> None:
    routes = json.loads(fetch(web, "/config.json").body)["routes"]
    assert list(routes) == list(ROUTES)
    assert routes == {
        "/": "echo",
        "/echo": "echo",
        "/inspect": "inspector",
        "/chat": "chat",
        "/tick": "tick",
        "/stream": "live chart",
        "/stats": "statistics",
    }


def test_config_json_tells_each_tab_of_the_page_its_route(web: ServerProcess) -> None:
    tabs = json.loads(fetch(web, "/config.json").body)["tabs"]
    assert tabs == {
        "echo": "/",
        "inspect": "/inspect",
        "chat": "/chat",
        "tick": "/tick",
        "live": "/stream",
        "stats": "/stats",
    }


def test_config_json_names_every_close_code(web: ServerProcess) -> None:
    close_codes = json.loads(fetch(web, "/config.json").body)["close_codes"]
    assert list(close_codes) == [str(code.value) for code in CloseCode]
    assert close_codes["1000"] == "Normal Closure"
    assert close_codes["1008"] == "Policy Violation"
    assert close_codes["1015"] == "TLS Handshake"


def test_config_json_ignores_a_query_string(web: ServerProcess) -> None:
    reply = fetch(web, "/config.json?nocache=123")
    assert json.loads(reply.body)["ws_port"] == 9


def test_config_json_is_generated_even_if_the_folder_has_one(
    start_server: StartServer, site: Site
) -> None:
    (site.root / "config.json").write_text('{"ws_port": 1}')
    web = start_server("web", "--port", "0", "--ws-port", "4567", "--root", str(site.root))
    assert json.loads(fetch(web, "/config.json").body)["ws_port"] == 4567


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("data.json", "application/json"),
        ("logo.svg", "image/svg+xml"),
        ("logo.png", "image/png"),
        ("favicon.ico", "image/x-icon"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("blob.bin", "application/octet-stream"),
        ("README", "application/octet-stream"),
    ],
)
def test_each_file_type_has_its_content_type(
    web: ServerProcess, site: Site, name: str, content_type: str
) -> None:
    reply = fetch(web, "/" + name)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == content_type
    assert reply.body == (site.root / name).read_bytes()


def test_files_are_served_with_no_cache(web: ServerProcess) -> None:
    assert fetch(web, "/app.js").headers["Cache-Control"] == "no-cache"


def test_query_string_is_ignored_for_file_lookup(web: ServerProcess) -> None:
    reply = fetch(web, "/notes.txt?file=../secret.txt")
    assert reply.status == 200
    assert reply.body == b"plain notes"


def test_subfolder_serves_its_index_html(web: ServerProcess) -> None:
    reply = fetch(web, "/sub/")
    assert reply.status == 200
    assert b"<title>sub</title>" in reply.body


def test_subfolder_without_slash_serves_its_index_without_a_redirect(web: ServerProcess) -> None:
    reply = fetch(web, "/sub")
    assert reply.status == 200
    assert b"<title>sub</title>" in reply.body
    assert "Location" not in reply.headers


def test_large_file_arrives_whole_with_its_content_length(web: ServerProcess, site: Site) -> None:
    content = os.urandom(LARGE_FILE_BYTES)
    (site.root / "large.bin").write_bytes(content)
    reply = fetch(web, "/large.bin")
    assert reply.headers["Content-Length"] == str(LARGE_FILE_BYTES)
    assert reply.body == content


def test_symlink_to_a_file_inside_the_folder_is_served(web: ServerProcess) -> None:
    reply = fetch(web, "/link-in.txt")
    assert reply.status == 200
    assert reply.body == b"plain notes"


def test_real_www_folder_serves_its_index_at_root(start_server: StartServer) -> None:
    web = start_server("web", "--port", "0", "--ws-port", "9")
    reply = fetch(web, "/")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert reply.body == (REPO / "echo_server" / "www" / "index.html").read_bytes()


# Methods.


def test_head_sends_the_headers_of_get_and_no_body(web: ServerProcess) -> None:
    get = fetch(web, "/style.css")
    head = fetch(web, "/style.css", method="HEAD")
    assert head.status == 200
    assert head.headers["Content-Length"] == get.headers["Content-Length"] != "0"
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert head.body == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_other_methods_get_405_with_allow(web: ServerProcess, method: str) -> None:
    reply = fetch(web, "/index.html", method=method)
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, HEAD"


def test_post_with_a_body_gets_405_and_the_connection_closes(web: ServerProcess) -> None:
    reply = send_raw(
        web,
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello=world",
    )
    assert reply.status == 405
    assert reply.headers["Connection"] == "close"


def test_refused_upload_is_drained_so_the_client_sees_a_clean_close(web: ServerProcess) -> None:
    # Closing with the client's bytes unread would send a reset, which can destroy the 405
    # before the client reads it; the server reads and drops the rest instead.
    body_bytes = 512 * 1024
    with connect(web) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % body_bytes
        )
        sock.sendall(b"x" * (body_bytes // 8))
        reply = parse(recv_until(sock, b"\r\n\r\n"))
        assert reply.status == 405
        sock.sendall(b"x" * (body_bytes - body_bytes // 8))
        rest = read_until_closed(sock)  # a clean end of stream, not a reset
        assert (reply.raw + rest).endswith(b"405 Method Not Allowed\n")


def test_body_of_a_get_is_never_read_as_a_next_request(web: ServerProcess) -> None:
    smuggled = b"GET /app.js HTTP/1.1\r\nHost: localhost\r\n\r\n"
    head = b"GET /notes.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
    reply = send_raw(web, head % len(smuggled) + smuggled)
    assert reply.headers["Connection"] == "close"
    assert reply.body == b"plain notes"  # and no second response after it


def test_http_1_0_keep_alive_is_confirmed(web: ServerProcess) -> None:
    with connect(web) as sock:
        sock.sendall(b"GET /notes.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reply = parse(recv_until(sock, b"plain notes"))
        assert reply.headers["Connection"] == "keep-alive"
        sock.sendall(b"GET /notes.txt HTTP/1.0\r\n\r\n")
        assert parse(read_until_closed(sock)).headers["Connection"] == "close"


def test_keep_alive_serves_several_requests_on_one_connection(web: ServerProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=REPLY_TIMEOUT_S)
    try:
        for path in ("/", "/app.js", "/missing.txt", "/config.json"):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            assert response.status in (200, 404)
        assert connection.sock is not None  # never reopened by http.client in between
    finally:
        connection.close()


# Nothing outside the folder, nothing hidden.

ESCAPES = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2e/secret.txt",
    "/..%2fsecret.txt",
    "/%2f..%2fsecret.txt",
    "/sub%2f..%2f..%2fsecret.txt",
    "/sub/../../secret.txt",
    "/%252e%252e/secret.txt",
    "/..\\secret.txt",
    "/%5c..%5csecret.txt",
    "/./index.html",
    "/.hidden",
    "/.git/config",
    "/%2egit/config",
    "/link-out",
    "/dir-out/secret.txt",
    "/link-to-hidden",
    "/%2fetc/passwd",
    "//evil.example/",
    "//evil.example/%2e%2e",
    "//evil.example/%2e%2e/secret.txt",
]


@pytest.mark.parametrize("target", ESCAPES)
def test_paths_outside_the_folder_or_hidden_get_404_and_leak_nothing(
    web: ServerProcess, site: Site, target: str
) -> None:
    reply = fetch(web, target)
    assert reply.status == 404
    assert_leaks_nothing(reply, site)


def test_protocol_relative_path_gets_no_location_header(web: ServerProcess) -> None:
    for target in ("//evil.example/", "//evil.example/%2e%2e", "//evil.example"):
        reply = fetch(web, target)
        assert reply.status == 404
        assert "Location" not in reply.headers


def test_folder_without_index_gets_404_and_no_listing(web: ServerProcess, site: Site) -> None:
    for target in ("/noindex/", "/noindex"):
        reply = fetch(web, target)
        assert reply.status == 404
        assert b"listed-" not in reply.body
        assert_leaks_nothing(reply, site)


def test_not_found_body_does_not_echo_the_path(web: ServerProcess, site: Site) -> None:
    reply = fetch(web, f"/missing-{site.marker}.html")
    assert reply.status == 404
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert reply.body == b"404 Not Found\n"
    assert_leaks_nothing(reply, site)


def test_fifo_in_the_folder_gets_404_without_hanging(web: ServerProcess, site: Site) -> None:
    os.mkfifo(site.root / "pipe.txt")
    started = time.monotonic()
    assert fetch(web, "/pipe.txt").status == 404
    assert time.monotonic() - started < defaults.WEB_REQUEST_TIMEOUT_S


# Malformed requests.


@pytest.mark.parametrize("target", ["/%zz", "/%4", "/%", "/a%g1.txt", "/%ff", "/%c3%28"])
def test_bad_percent_escapes_get_400(web: ServerProcess, site: Site, target: str) -> None:
    reply = fetch(web, target)
    assert reply.status == 400
    assert_leaks_nothing(reply, site)


def test_encoded_nul_gets_400(web: ServerProcess) -> None:
    assert fetch(web, "/index.html%00.txt").status == 400


def test_raw_non_ascii_byte_in_the_path_gets_400(web: ServerProcess) -> None:
    reply = send_raw(web, b"GET /caf\xe9.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert reply.status == 400


def test_absolute_form_target_gets_400(web: ServerProcess) -> None:
    assert fetch(web, "http://evil.example/").status == 400


def test_http_0_9_request_gets_400_with_a_status_line(web: ServerProcess) -> None:
    reply = send_raw(web, b"GET /\r\n")
    assert reply.raw.startswith(b"HTTP/1.1 400 ")


def test_bad_http_version_gets_400_without_echoing_it(web: ServerProcess) -> None:
    reply = send_raw(web, b"GET / HTTP/x.<script>\r\nHost: localhost\r\n\r\n")
    assert reply.status == 400
    assert b"<script>" not in reply.raw


def test_http_2_request_line_gets_505(web: ServerProcess) -> None:
    assert send_raw(web, b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n").status == 505


def test_overlong_request_line_gets_414(web: ServerProcess) -> None:
    target = "/" + "a" * defaults.MAX_REQUEST_HEAD_BYTES
    assert fetch(web, target).status == 414


def test_oversized_request_head_gets_431(web: ServerProcess) -> None:
    filler = "".join(f"X-Filler-{n}: {'x' * 100}\r\n" for n in range(80))
    raw = f"GET / HTTP/1.1\r\nHost: localhost\r\n{filler}\r\n".encode()
    assert len(raw) > defaults.MAX_REQUEST_HEAD_BYTES
    assert send_raw(web, raw).status == 431


def test_too_many_header_lines_get_431(web: ServerProcess) -> None:
    lines = "".join(f"X-{n}: 1\r\n" for n in range(defaults.MAX_HEADER_LINES + 1))
    raw = f"GET / HTTP/1.1\r\nHost: localhost\r\n{lines}\r\n".encode()
    assert len(raw) < defaults.MAX_REQUEST_HEAD_BYTES
    assert send_raw(web, raw).status == 431


def test_two_different_content_lengths_get_400(web: ServerProcess) -> None:
    reply = send_raw(
        web,
        b"GET /notes.txt HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
    )
    assert reply.status == 400
    assert reply.headers["Connection"] == "close"


def test_path_segment_longer_than_any_file_name_gets_an_answer(web: ServerProcess) -> None:
    for target in ("/" + "a" * 300, "/sub/" + "b" * 300 + "/index.html", "/" + "%41" * 300):
        reply = fetch(web, target)
        assert reply.status in (404, 414)
        assert reply.body.startswith(f"{reply.status} ".encode())
        assert reply.headers["Content-Length"] == str(len(reply.body))


def test_transfer_encoding_is_answered_and_ends_the_connection(web: ServerProcess) -> None:
    smuggled = b"GET /app.js HTTP/1.1\r\nHost: localhost\r\n\r\n"
    reply = send_raw(
        web,
        b"GET /notes.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled),
    )
    assert reply.status == 200
    assert reply.headers["Connection"] == "close"
    assert reply.body == b"plain notes"  # and no second response after it


def test_expect_100_continue_gets_the_final_answer_at_once(web: ServerProcess) -> None:
    with connect(web) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        reply = recv_until(sock, b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 405 ")  # no "100 Continue": the body is never wanted


def test_pipelined_requests_are_answered_in_order(web: ServerProcess) -> None:
    requests = b"".join(
        b"GET /%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % name
        for name in (b"notes.txt", b"app.js", b"missing", b"notes.txt")
    )
    last = b"GET /app.js HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    reply = send_raw(web, requests + last)
    statuses = [int(line.split()[1]) for line in re.findall(rb"HTTP/1\.1 \d+ ", reply.raw)]
    assert statuses == [200, 200, 404, 200, 200]
    assert reply.raw.count(b"plain notes") == 2


def test_empty_lines_before_a_request_line_are_ignored(web: ServerProcess) -> None:
    reply = send_raw(
        web, b"\r\n\r\nGET /notes.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert reply.status == 200


# Headers on every response.

SAMPLE_REQUESTS = [
    ("GET", "/"),
    ("HEAD", "/app.js"),
    ("GET", "/config.json"),
    ("GET", "/missing.txt"),
    ("GET", "/../secret.txt"),
    ("POST", "/"),
    ("GET", "/%zz"),
]


@pytest.mark.parametrize(("method", "target"), SAMPLE_REQUESTS)
def test_every_response_has_the_security_headers(
    web: ServerProcess, method: str, target: str
) -> None:
    reply = fetch(web, target, method=method)
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Referrer-Policy"] == "no-referrer"
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert reply.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(("method", "target"), SAMPLE_REQUESTS)
def test_server_header_does_not_reveal_the_python_version(
    web: ServerProcess, method: str, target: str
) -> None:
    server = fetch(web, target, method=method).headers["Server"]
    assert "python" not in server.lower()
    assert not re.search(r"\d+\.\d+", server)


# Slow, silent and departing clients.


def test_silent_client_is_dropped_after_the_request_timeout(quick_web: ServerProcess) -> None:
    with connect(quick_web) as sock:
        started = time.monotonic()
        assert read_until_closed(sock, timeout_s=QUICK_REQUEST_TIMEOUT_S + SLACK_S) == b""
        assert time.monotonic() - started >= QUICK_REQUEST_TIMEOUT_S - 0.5


def test_client_trickling_a_request_head_is_dropped_at_the_deadline(
    quick_web: ServerProcess,
) -> None:
    # A header line every quarter second would reset a per-read timeout forever; a deadline on
    # the whole head must still cut it off.
    with connect(quick_web) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        assert trickle_until_closed(sock, QUICK_REQUEST_TIMEOUT_S + SLACK_S)
        assert time.monotonic() - started >= QUICK_REQUEST_TIMEOUT_S - 0.5


def trickle_until_closed(sock: socket.socket, timeout_s: float) -> bool:
    """Send a header line every quarter second until the server closes; False if it never does."""
    for n in range(int(timeout_s / 0.25)):
        readable, _, _ = select.select([sock], [], [], 0.25)
        if readable:
            return sock.recv(65536) == b""
        with contextlib.suppress(OSError):
            sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
    return False


def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_head(
    quick_web: ServerProcess,
) -> None:
    with connect(quick_web) as sock:
        sock.sendall(b"GET /notes.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert recv_until(sock, b"plain notes").endswith(b"plain notes")
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        assert trickle_until_closed(sock, QUICK_REQUEST_TIMEOUT_S + SLACK_S)
        assert time.monotonic() - started >= QUICK_REQUEST_TIMEOUT_S - 0.5


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
    quick_web: ServerProcess,
) -> None:
    with connect(quick_web) as sock:
        sock.sendall(b"GET /notes.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reply = parse(recv_until(sock, b"plain notes"))
        assert "Connection" not in reply.headers  # kept alive
        started = time.monotonic()
        assert read_until_closed(sock, QUICK_KEEP_ALIVE_TIMEOUT_S + SLACK_S) == b""
        assert time.monotonic() - started >= QUICK_KEEP_ALIVE_TIMEOUT_S - 0.5


def test_a_response_the_client_stops_reading_is_dropped(
    quick_web: ServerProcess, site: Site
) -> None:
    with (site.root / "huge.bin").open("wb") as huge:
        huge.truncate(HUGE_FILE_BYTES)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(REPLY_TIMEOUT_S)
        sock.connect(("127.0.0.1", quick_web.port))
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.recv(1024)  # the response has started; then nothing more is read
        quick_web.wait_for_output(
            r"client stopped reading", timeout_s=QUICK_REQUEST_TIMEOUT_S + SLACK_S + 5.0
        )
    assert fetch(quick_web, "/notes.txt").status == 200


def test_client_that_vanishes_mid_download_logs_a_line_and_no_traceback(
    own_web: ServerProcess, site: Site
) -> None:
    with (site.root / "huge.bin").open("wb") as huge:
        huge.truncate(HUGE_FILE_BYTES)
    with connect(own_web) as sock:
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.recv(65536)  # the response has started
        # Linger 0: close sends a reset, as a crashed client or a closed laptop lid would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    own_web.wait_for_output(r"client disconnected")
    assert fetch(own_web, "/notes.txt").status == 200
    assert "Traceback" not in own_web.output()


def test_each_request_is_logged_as_method_path_status(own_web: ServerProcess) -> None:
    fetch(own_web, "/notes.txt")
    fetch(own_web, "/missing.txt", method="HEAD")
    own_web.wait_for_output(r"GET /notes\.txt 200")
    own_web.wait_for_output(r"HEAD /missing\.txt 404")


def test_control_characters_in_the_path_cannot_forge_log_lines(own_web: ServerProcess) -> None:
    send_raw(own_web, b"GET /a\x1b[31mb HTTP/1.1\r\nHost: localhost\r\n\r\n")
    own_web.wait_for_output(r"/a\\x1b\[31mb 400")
    assert "\x1b" not in own_web.output()


# One client's share.


def other_addresses(count: int) -> list[str]:
    """`count` loopback addresses other than 127.0.0.1, for clients of separate machines."""
    return [f"127.0.0.{n}" for n in range(2, 2 + count)]


def test_connection_over_the_per_address_cap_gets_503_when_none_is_idle(
    own_web: ServerProcess,
) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(WEB_MAX_CONNECTIONS_PER_ADDRESS):
            stack.enter_context(connect_busy(own_web, OTHER_ADDRESS))
        extra = stack.enter_context(connect_from(own_web, OTHER_ADDRESS))
        reply = parse(read_until_closed(extra))
        assert reply.status == 503
        assert reply.headers["Connection"] == "close"
        assert reply.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert fetch(own_web, "/notes.txt").status == 200  # another address is served meanwhile
    own_web.wait_for_output(r"refused 127\.0\.0\.2: too many connections from this address")


def test_connection_over_the_total_cap_gets_503_when_none_is_idle(own_web: ServerProcess) -> None:
    per_address = WEB_MAX_CONNECTIONS_PER_ADDRESS
    sources = other_addresses(-(-WEB_MAX_CONNECTIONS // per_address) + 1)
    with contextlib.ExitStack() as stack:
        for n in range(WEB_MAX_CONNECTIONS):
            stack.enter_context(connect_busy(own_web, sources[n // per_address]))
        extra = stack.enter_context(connect_from(own_web, sources[-1]))
        reply = parse(read_until_closed(extra))
        assert reply.status == 503
        assert reply.headers["Connection"] == "close"
    # Once the busy ones are gone their slots come back.
    assert wait_for_status(own_web, "/notes.txt", 200)


def test_at_the_total_cap_the_longest_idle_connection_makes_room(own_web: ServerProcess) -> None:
    per_address = WEB_MAX_CONNECTIONS_PER_ADDRESS
    sources = other_addresses(-(-WEB_MAX_CONNECTIONS // per_address))
    with contextlib.ExitStack() as stack:
        idle = [
            stack.enter_context(connect_from(own_web, sources[n // per_address]))
            for n in range(WEB_MAX_CONNECTIONS)
        ]
        assert fetch(own_web, "/notes.txt").status == 200
        assert closed_by_server(idle[0], REPLY_TIMEOUT_S)  # the longest idle one
        assert not closed_by_server(idle[-1], 0.2)  # and not the others


def test_idle_connections_over_the_per_address_cap_close_that_address_s_oldest(
    own_web: ServerProcess,
) -> None:
    with contextlib.ExitStack() as stack:
        mine = stack.enter_context(connect_from(own_web, "127.0.0.3"))
        idle = [
            stack.enter_context(connect_from(own_web, OTHER_ADDRESS))
            for _ in range(WEB_MAX_CONNECTIONS_PER_ADDRESS + 1)
        ]
        assert closed_by_server(idle[0], REPLY_TIMEOUT_S)
        assert not closed_by_server(mine, 0.2)  # another address's idle connection stays
        idle[-1].sendall(b"GET /notes.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert parse(recv_until(idle[-1], b"plain notes")).status == 200


def test_200_idle_connections_from_one_address_lock_no_one_else_out(own_web: ServerProcess) -> None:
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(connect_from(own_web, OTHER_ADDRESS)) for _ in range(200)]
        assert wait_for_status(own_web, "/", 200)
        # The address keeps its share and no more: all but that many were closed.
        wait_until_closed_by_server(idle, len(idle) - WEB_MAX_CONNECTIONS_PER_ADDRESS)


def test_out_of_descriptors_the_longest_idle_connection_makes_room(
    start_server: StartServer, site: Site
) -> None:
    web = start_server(
        "web", "--port", "0", "--ws-port", "9", "--root", str(site.root), open_files_limit=40
    )
    with contextlib.ExitStack() as stack:
        # More idle connections than the process has descriptors, none over an address's cap.
        per_address = WEB_MAX_CONNECTIONS_PER_ADDRESS - 1
        for n in range(60):
            stack.enter_context(connect_from(web, f"127.0.0.{2 + n // per_address}"))
        started = time.monotonic()
        assert fetch(web, "/notes.txt").status == 200
        assert time.monotonic() - started < defaults.WEB_REQUEST_TIMEOUT_S / 2  # not a timeout


def drop_what_arrived(sock: socket.socket) -> bool:
    """Read and drop what a non-blocking socket has received; False once the server closed it."""
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return True
    except OSError:
        pass
    return False


def wait_until_closed_by_server(socks: list[socket.socket], count: int) -> None:
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    open_socks = set(socks)
    while len(socks) - len(open_socks) < count and time.monotonic() < deadline:
        readable, _, _ = select.select(list(open_socks), [], [], 0.5)
        for sock in readable:
            with contextlib.suppress(ConnectionError):
                if sock.recv(65536):
                    continue
            open_socks.discard(sock)
    assert len(socks) - len(open_socks) >= count


def test_200_connections_drip_feeding_requests_lock_no_one_else_out(own_web: ServerProcess) -> None:
    # Each sends a piece of a request every second, a whole keep-alive request every two:
    # none of them is ever idle, and every request head arrives well within its deadline.
    pieces = [b"GET / HTTP/1.1\r\n", b"Host: localhost\r\n\r\n"]
    with contextlib.ExitStack() as stack:
        drips = [stack.enter_context(connect_from(own_web, OTHER_ADDRESS)) for _ in range(200)]
        for sock in drips:
            sock.setblocking(False)
        alive = set(drips)
        for second in range(2 * len(pieces)):
            round_ends = time.monotonic() + 1.0
            for sock in list(alive):
                if not drop_what_arrived(sock):
                    alive.discard(sock)
                    continue
                with contextlib.suppress(BlockingIOError):
                    try:
                        sock.send(pieces[second % len(pieces)])
                    except OSError:
                        alive.discard(sock)
            assert fetch(own_web, "/").status == 200
            time.sleep(max(0.0, round_ends - time.monotonic()))  # the attacker's own pace
        assert 0 < len(alive) <= WEB_MAX_CONNECTIONS_PER_ADDRESS


def wait_for_status(server: ServerProcess, target: str, status: int) -> bool:
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, IndexError, ValueError):
            if fetch(server, target).status == status:
                return True
        time.sleep(0.05)
    return False


# Addresses.


def ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_works(), reason="no IPv6 on this machine")


@needs_ipv6
def test_ipv6_loopback_host_serves_pages(start_server: StartServer, site: Site) -> None:
    web = start_server(
        "web", "--host", "::1", "--port", "0", "--ws-port", "9", "--root", str(site.root)
    )
    assert web.host == "[::1]"
    assert fetch(web, "/", host="::1").status == 200


@needs_ipv6
def test_any_address_host_takes_ipv4_and_ipv6_clients(
    start_server: StartServer, site: Site
) -> None:
    web = start_server(
        "web", "--host", "::", "--port", "0", "--ws-port", "9", "--root", str(site.root)
    )
    assert fetch(web, "/", host="::1").status == 200
    assert fetch(web, "/", host="127.0.0.1").status == 200
    # An IPv4 client arrives as ::ffff:127.0.0.1; it is logged (and counted) as its IPv4 address.
    web.wait_for_output(r"INFO 127\.0\.0\.1 GET / 200")


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("127.0.0.2", "127.0.0.2"),
        ("::ffff:127.0.0.2", "127.0.0.2"),
        ("::FFFF:7f00:2", "127.0.0.2"),
        ("::1", "::1"),
        ("2001:db8:0:0::1", "2001:db8::1"),
    ],
)
def test_a_client_address_counts_as_its_ipv4_address_when_it_has_one(host: str, key: str) -> None:
    assert canonical_address(host) == key


# Stopping.

STOP_TRIES = 20
STOP_FILE_BYTES = 32 * 1024 * 1024
OTHER_SIGNAL = {signal.SIGINT: signal.SIGTERM, signal.SIGTERM: signal.SIGINT}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_server_with_status_0_and_no_traceback_every_time(
    site: Site, signum: signal.Signals
) -> None:
    # Ctrl-C on `make demo` sends SIGINT to the whole process group and demo forwards SIGTERM
    # a moment later: so most tries send the other signal too, after a varying short gap.
    with (site.root / "big.bin").open("wb") as big:
        big.truncate(STOP_FILE_BYTES)
    for attempt in range(STOP_TRIES):
        server = start(["web", "--port", "0", "--ws-port", "9", "--root", str(site.root)])
        try:
            if attempt % 4 == 0:
                # A download under way is finished, then the server stops.
                assert stop_mid_download(server, signum) == STOP_FILE_BYTES
            else:
                with connect(server) as kept_alive:
                    kept_alive.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    recv_until(kept_alive, b"</title>")
                    server.send_signal(signum)
                    time.sleep(attempt % 4 * 0.004)  # the gap between the two, varied on purpose
                    server.send_signal(OTHER_SIGNAL[signum])
            status = server.proc.wait(STOP_TIMEOUT_S)
        finally:
            server.stop(signal.SIGKILL)
        output = server.output()
        assert status == 0, output
        assert "Traceback" not in output
        assert "Exception ignored" not in output


def stop_mid_download(server: ServerProcess, signum: signal.Signals) -> int:
    """Start a download, signal the server, read the rest: the body's size as received."""
    with connect(server) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = recv_until(sock, b"\r\n\r\n")
        assert parse(head).headers["Content-Length"] == str(STOP_FILE_BYTES)
        server.send_signal(signum)
        size = len(head.partition(b"\r\n\r\n")[2])
        buffer = bytearray(1024 * 1024)
        while received := sock.recv_into(buffer):  # counted, not kept: it is large
            size += received
    return size
