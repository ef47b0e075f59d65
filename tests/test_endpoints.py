"""Plain HTTP on the WebSocket port: `/notify` and `GET /stats`, and who may use `/notify`.

The endpoints are spoken to as a user would: with `http.client`, and with the real `curl` the
README's one-liners use when this machine has it (without curl the same requests are made with
`http.client` alone; nothing is skipped). Messages are checked where they land, on real /chat
clients. The rule that only this machine (or a holder of `--notify-token`) may notify is tested
from a second host of our own: a network namespace joined to this one by a veth pair, with
addresses from TEST-NET-2 (RFC 5737), so no traffic leaves the machine.

`endpoints.is_loopback` and `endpoints.notify_allowed` are also tested directly, without sockets,
and `endpoints.MachineNames` with a lookup of our own that blocks until the test lets it go.
That no request waits for the resolver is tested end to end too, with a real slow resolver: the
server runs in a mount namespace whose /etc/resolv.conf names a nameserver of ours on a loopback
address, which takes the queries and never answers.
The WebSocket routes themselves are in tests/test_push.py.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import StartServer
from netns import namespace_beside_this_one
from support import ServerProcess, http_exchange, status_of
from websockets.sync.client import ClientConnection, connect

from echo_server.addresses import is_loopback
from echo_server.app.endpoints import notify_allowed
from echo_server.app.machinenames import MachineNames
from echo_server.core.loop import Loop

TIMEOUT_S = 10.0
CURL = shutil.which("curl")
# Every request goes through http.client; through curl as well when this machine has it.
HTTP_CLIENTS = ["http.client", *(["curl"] if CURL else [])]
TOKEN = "s3cret"
# This machine's names as known without a resolver (no lookup started): for the rules alone.
NAMES = MachineNames()


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]  # names lower-cased; empty when the client was curl

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    target: str,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request to the server on 127.0.0.1 with http.client: one connection, then closed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(
            response.status,
            response.read(),
            {name.lower(): value for name, value in response.getheaders()},
        )
    finally:
        connection.close()


def curl(url: str, *options: str, stdin: bytes = b"") -> Reply:
    """Run the real curl, as a README reader would; return the status and the body."""
    assert CURL is not None
    marker = "\n--status:"
    argv = [CURL, "-sS", "--noproxy", "*", "--max-time", str(TIMEOUT_S)]
    argv += ["--write-out", marker + "%{http_code}", *options, url]
    completed = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT_S + 5,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    body, _, status = completed.stdout.rpartition(marker.encode())
    return Reply(int(status), body, {})


def get(http_client: str, server: ServerProcess, target: str) -> Reply:
    if http_client == "curl":
        return curl(f"http://127.0.0.1:{server.port}{target}")
    return request(server.port, "GET", target)


def post(http_client: str, server: ServerProcess, target: str, body: bytes) -> Reply:
    if http_client == "curl":
        url = f"http://127.0.0.1:{server.port}{target}"
        return curl(url, "--data-binary", "@-", stdin=body)
    return request(server.port, "POST", target, body)


def chat_client(server: ServerProcess) -> ClientConnection:
    return connect(server.url("/chat"), open_timeout=TIMEOUT_S, compression=None, proxy=None)


@contextlib.contextmanager
def chat_clients(server: ServerProcess, count: int) -> Iterator[list[ClientConnection]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(chat_client(server)) for _ in range(count)]


def assert_nothing_was_delivered(ws: ClientConnection) -> None:
    """The client's own next chat message is the first thing it gets back."""
    ws.send("after")
    assert ws.recv(TIMEOUT_S) == "after"


# /notify and browsers: forged requests from other sites, and DNS rebinding.


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Host": "rebound.evil.example:8001"},
        {"Host": "rebound.evil.example:8001", "Origin": "http://rebound.evil.example"},
    ],
)
def test_notify_from_a_page_of_another_site_is_refused_with_403(
    ws_server: ServerProcess, headers: dict[str, str]
) -> None:
    with chat_client(ws_server) as ws:
        reply = request(ws_server.port, "POST", "/notify", b"forged", headers=headers)
        assert reply.status == 403
        assert_nothing_was_delivered(ws)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-site"},
        {"Host": "localhost", "Sec-Fetch-Site": "same-origin"},
    ],
)
def test_notify_from_this_machines_own_page_is_delivered(
    ws_server: ServerProcess, headers: dict[str, str]
) -> None:
    with chat_client(ws_server) as ws:
        reply = request(ws_server.port, "POST", "/notify", b"from our page", headers=headers)
        assert reply.status == 200
        assert ws.recv(TIMEOUT_S) == "from our page"


# /notify: delivery.


def test_a_posted_line_arrives_without_its_newline(ws_server: ServerProcess) -> None:
    with chat_client(ws_server) as ws:
        reply = request(ws_server.port, "POST", "/notify", b"Backup done\r\n")
        assert reply.json() == {"delivered": 1}
        assert ws.recv(TIMEOUT_S) == "Backup done"


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
def test_get_notify_sends_the_url_encoded_msg_to_every_chat_client(
    ws_server: ServerProcess, http_client: str
) -> None:
    text = "Lunch is ready: 5 & 6 = ½ 🍕"
    with chat_clients(ws_server, 3) as clients:
        reply = get(http_client, ws_server, "/notify?msg=" + quote(text))
        assert reply.status == 200
        assert reply.json() == {"delivered": 3}
        for ws in clients:
            assert ws.recv(TIMEOUT_S) == text


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
def test_post_notify_sends_the_utf8_body_to_every_chat_client(
    ws_server: ServerProcess, http_client: str
) -> None:
    text = "Grüße aus dem Labor, 世界 🌍\nzweite Zeile"
    with chat_clients(ws_server, 2) as clients:
        reply = post(http_client, ws_server, "/notify", text.encode())
        assert reply.status == 200
        assert reply.json() == {"delivered": 2}
        for ws in clients:
            message = ws.recv(TIMEOUT_S)
            assert isinstance(message, str), "a notification arrives as text"
            assert message == text


def test_notify_answers_json_that_is_not_cached(ws_server: ServerProcess) -> None:
    reply = request(ws_server.port, "GET", "/notify?msg=hi")
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"


def test_notify_with_no_chat_clients_delivers_to_none(ws_server: ServerProcess) -> None:
    reply = request(ws_server.port, "POST", "/notify", b"anyone?")
    assert reply.status == 200
    assert reply.json() == {"delivered": 0}


def test_notify_from_this_machine_ignores_a_wrong_token(start_server: StartServer) -> None:
    server = start_server("ws", "--port", "0", "--notify-token", TOKEN)
    with chat_clients(server, 1) as (ws,):
        headers = {"Authorization": "Bearer not-the-token"}
        reply = request(server.port, "POST", "/notify", b"local", headers=headers)
        assert reply.json() == {"delivered": 1}
        assert ws.recv(TIMEOUT_S) == "local"


def test_notify_counts_and_reaches_only_chat_clients(ws_server: ServerProcess) -> None:
    with (
        chat_clients(ws_server, 2) as clients,
        connect(ws_server.url("/echo"), open_timeout=TIMEOUT_S, proxy=None) as echo,
        connect(ws_server.url("/stream"), open_timeout=TIMEOUT_S, proxy=None),
    ):
        reply = request(ws_server.port, "GET", "/notify?msg=chat%20only")
        assert reply.json() == {"delivered": 2}
        for ws in clients:
            assert ws.recv(TIMEOUT_S) == "chat only"
        echo.send("mine")
        assert echo.recv(TIMEOUT_S) == "mine"


def test_each_notification_arrives_once_and_in_order(ws_server: ServerProcess) -> None:
    count = 20
    with chat_clients(ws_server, 2) as clients:
        for number in range(count):
            assert request(ws_server.port, "POST", "/notify", str(number).encode()).status == 200
        for ws in clients:
            assert [ws.recv(TIMEOUT_S) for _ in range(count)] == [str(n) for n in range(count)]
            assert_nothing_was_delivered(ws)


# /notify: refusals.


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_notify_refuses_other_methods_with_405_and_allow(
    ws_server: ServerProcess, method: str
) -> None:
    with chat_clients(ws_server, 1) as (ws,):
        reply = request(ws_server.port, method, "/notify?msg=hi", b"hi")
        assert reply.status == 405
        assert reply.headers["allow"] == "GET, POST"
        assert_nothing_was_delivered(ws)


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/notify", None),
        ("GET", "/notify?msg=", None),
        ("GET", "/notify?message=hi", None),
        ("POST", "/notify", b""),
        ("POST", "/notify", b"\xff\xfe not UTF-8"),
        ("POST", "/notify", "café".encode("latin-1")),
    ],
    ids=["get-no-msg", "get-empty-msg", "get-other-name", "post-empty", "post-ff-fe", "latin-1"],
)
def test_notify_without_a_valid_message_is_refused_with_400(
    ws_server: ServerProcess, method: str, target: str, body: bytes | None
) -> None:
    with chat_clients(ws_server, 1) as (ws,):
        reply = request(ws_server.port, method, target, body)
        assert reply.status == 400
        assert_nothing_was_delivered(ws)


def test_a_notify_body_over_the_max_message_size_is_refused_with_413(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0", "--max-message-size", "16")
    with chat_clients(server, 1) as (ws,):
        reply = request(server.port, "POST", "/notify", b"x" * 17)
        assert reply.status == 413
        assert_nothing_was_delivered(ws)


def test_a_notify_body_of_exactly_the_max_message_size_is_delivered(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0", "--max-message-size", "16")
    with chat_clients(server, 1) as (ws,):
        reply = request(server.port, "POST", "/notify", b"y" * 16)
        assert reply.json() == {"delivered": 1}
        assert ws.recv(TIMEOUT_S) == "y" * 16


# GET /stats.


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
def test_get_stats_answers_the_statistics_as_json(
    ws_server: ServerProcess, http_client: str
) -> None:
    with (
        chat_clients(ws_server, 2),
        connect(ws_server.url("/echo"), open_timeout=TIMEOUT_S, proxy=None) as echo,
    ):
        echo.send("counted")
        assert echo.recv(TIMEOUT_S) == "counted"
        reply = get(http_client, ws_server, "/stats")
    assert reply.status == 200
    stats = reply.json()
    assert isinstance(stats["uptime_s"], int | float)
    assert stats["uptime_s"] >= 0
    connections = stats["connections"]
    assert connections["total"] == 3
    assert connections["per_route"]["/chat"] == 2
    assert connections["per_route"]["/echo"] == 1
    assert connections["per_route"]["/tick"] == 0
    for name in ("messages_in", "messages_out", "bytes_in", "bytes_out"):
        assert isinstance(stats[name], int), name
    assert stats["messages_in"] >= 1
    assert stats["messages_out"] >= 1
    assert stats["bytes_in"] >= len("counted")
    assert stats["bytes_out"] >= len("counted")


def test_get_stats_answers_json_that_is_not_cached(ws_server: ServerProcess) -> None:
    reply = request(ws_server.port, "GET", "/stats")
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"


def test_stats_counts_messages_and_bytes_as_they_pass(ws_server: ServerProcess) -> None:
    before = request(ws_server.port, "GET", "/stats").json()
    # Uncompressed, so that the bytes on the wire are the payload's.
    with connect(
        ws_server.url("/echo"), open_timeout=TIMEOUT_S, compression=None, proxy=None
    ) as echo:
        for _ in range(5):
            echo.send("x" * 100)
            assert echo.recv(TIMEOUT_S) == "x" * 100
        after = request(ws_server.port, "GET", "/stats").json()
    assert after["messages_in"] - before["messages_in"] >= 5
    assert after["messages_out"] - before["messages_out"] >= 5
    assert after["bytes_in"] - before["bytes_in"] >= 500
    assert after["bytes_out"] - before["bytes_out"] >= 500


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_stats_refuses_other_methods_with_405_and_allow(
    ws_server: ServerProcess, method: str
) -> None:
    reply = request(ws_server.port, method, "/stats", b"")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET"


# Every other plain request.


@pytest.mark.parametrize("target", ["/", "/echo", "/chat", "/tick", "/nope"])
def test_any_other_plain_get_is_answered_426(ws_server: ServerProcess, target: str) -> None:
    reply = request(ws_server.port, "GET", target)
    assert reply.status == 426
    assert reply.headers["upgrade"] == "websocket"


def test_a_plain_request_answered_by_an_endpoint_then_closes(ws_server: ServerProcess) -> None:
    raw = (
        f"GET /stats HTTP/1.1\r\nHost: 127.0.0.1:{ws_server.port}\r\n\r\n"
        f"GET /stats HTTP/1.1\r\nHost: 127.0.0.1:{ws_server.port}\r\n\r\n"
    ).encode()
    response = http_exchange(ws_server.port, raw)  # returns once the server closes
    assert status_of(response) == 200
    assert response.count(b"HTTP/1.1 ") == 1, "no keep-alive: one answer, then the close"


# Who may notify: the rules, without sockets.


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1", "::1%lo"],
)
def test_loopback_addresses_are_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [
        "198.51.100.2",
        "192.168.1.10",
        "10.0.0.1",
        "0.0.0.0",
        "::",
        "fe80::1%eth0",
        "2001:db8::1",
        "::ffff:192.168.1.10",
        "::127.0.0.1",  # IPv4-compatible, deprecated: not the IPv4-mapped loopback
        "localhost",
        "",
    ],
)
def test_other_addresses_and_names_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_notify_is_allowed_from_loopback_without_any_token(peer: str) -> None:
    assert notify_allowed(NAMES, peer, "127.0.0.1:8001", None, None)
    assert notify_allowed(NAMES, peer, "localhost:8001", None, TOKEN)
    assert notify_allowed(NAMES, peer, "[::1]:8001", "Bearer wrong", TOKEN)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8001", "[::1]:8001", "LOCALHOST:80"])
def test_this_machines_names_name_it(host: str) -> None:
    assert NAMES.allows(host)
    assert NAMES.allows(f"{socket.gethostname()}:8001")


@pytest.mark.parametrize("host", ["evil.example:8001", "127.0.0.1.evil.example", "", None])
def test_other_names_do_not_name_this_machine(host: str | None) -> None:
    assert not NAMES.allows(host)


def test_notify_from_loopback_addressed_by_another_name_needs_the_token() -> None:
    # A page that points its own DNS name at 127.0.0.1 (DNS rebinding) sends that name as Host.
    assert not notify_allowed(NAMES, "127.0.0.1", "rebound.evil.example:8001", None, TOKEN)
    assert notify_allowed(NAMES, "127.0.0.1", "rebound.evil.example:8001", "Bearer s3cret", TOKEN)


@pytest.mark.parametrize("authorization", ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"])
def test_notify_is_allowed_from_elsewhere_with_the_bearer_token(authorization: str) -> None:
    assert notify_allowed(NAMES, "198.51.100.2", "198.51.100.1:8001", authorization, TOKEN)
    assert notify_allowed(NAMES, "::ffff:198.51.100.2", "198.51.100.1:8001", authorization, TOKEN)


@pytest.mark.parametrize(
    ("authorization", "token"),
    [
        (None, TOKEN),
        ("", TOKEN),
        ("Bearer", TOKEN),
        ("Bearer ", TOKEN),
        ("Bearer wrong", TOKEN),
        ("Bearer s3cre", TOKEN),
        ("Bearer s3cret2", TOKEN),
        ("Bearer S3CRET", TOKEN),
        ("Basic s3cret", TOKEN),
        ("Token s3cret", TOKEN),
        ("s3cret", TOKEN),
        ("Bearer s3cret", None),
        ("Bearer s3cret", ""),
        ("Bearer ", ""),
        ("Bearer", ""),
    ],
)
def test_notify_is_refused_from_elsewhere_without_the_right_bearer_token(
    authorization: str | None, token: str | None
) -> None:
    assert not notify_allowed(NAMES, "198.51.100.2", "198.51.100.1:8001", authorization, token)


# This machine's names: the resolver never asked in the loop.


class HeldLookup:
    """A name lookup that blocks until released, noting the thread it ran in."""

    def __init__(self, answer: str = "pi.example.lan") -> None:
        self.answer = answer
        self.release = threading.Event()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.calls = 0
        self.threads: list[threading.Thread] = []

    def __call__(self) -> str:
        self.calls += 1
        self.threads.append(threading.current_thread())
        self.started.set()
        self.release.wait(TIMEOUT_S)
        self.finished.set()
        return self.answer


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {TIMEOUT_S} s: {what}"
        time.sleep(0.01)


def test_the_names_known_without_a_resolver_are_allowed_before_any_lookup() -> None:
    lookup = HeldLookup()
    names = MachineNames(lookup)
    for host in ("localhost:8001", "127.0.0.1:8001", "[::1]:8001", socket.gethostname()):
        assert names.allows(host)
    assert lookup.calls == 0


def test_a_lookup_that_hangs_never_holds_up_the_answer() -> None:
    lookup = HeldLookup()
    names = MachineNames(lookup)
    assert names.refresh()
    assert lookup.started.wait(TIMEOUT_S)
    # The lookup is still waiting: these answers did not wait for it.
    assert names.allows("localhost:8001")
    assert not names.allows("pi.example.lan:8001")
    assert not lookup.finished.is_set()
    assert lookup.threads[0] is not threading.main_thread()
    lookup.release.set()


def test_the_looked_up_name_is_allowed_once_the_lookup_is_done() -> None:
    lookup = HeldLookup("Pi.Example.LAN")
    names = MachineNames(lookup)
    names.refresh()
    lookup.release.set()
    wait_for(lambda: names.allows("pi.example.lan:8001"), "the looked-up name allowed")
    assert names.allows("PI.example.lan")
    assert names.allows("localhost")


def test_no_second_lookup_starts_while_one_hangs() -> None:
    lookup = HeldLookup()
    names = MachineNames(lookup)
    assert names.refresh()
    assert lookup.started.wait(TIMEOUT_S)
    assert not names.refresh()
    assert not names.refresh()
    lookup.release.set()
    wait_for(lookup.finished.is_set, "the lookup done")
    wait_for(names.refresh, "a new lookup started once the last one is done")
    wait_for(lambda: lookup.calls == 2, "the second lookup run")


def test_a_failing_lookup_keeps_the_names_known_without_it() -> None:
    def broken() -> str:
        raise OSError("resolver on fire")

    names = MachineNames(broken)
    names.refresh()
    wait_for(names.refresh, "the failed lookup over")
    assert names.allows("localhost")
    assert not names.allows("")


def test_the_lookup_is_repeated_from_a_loop_timer() -> None:
    answers = iter(f"name{number}.example" for number in range(1000))
    loop = Loop()
    try:
        names = MachineNames.started(loop, 0.02, lambda: next(answers))
        deadline = loop.time() + TIMEOUT_S

        def check() -> None:
            later = any(names.allows(f"name{number}.example") for number in range(3, 1000))
            if later or loop.time() > deadline:
                loop.stop()
            else:
                loop.call_later(0.01, check)

        check()
        loop.run()
    finally:
        loop.close()
    assert not names.allows("name0.example")  # swapped for a later answer, not added to
    assert any(names.allows(f"name{number}.example") for number in range(3, 1000))


@dataclass
class SlowResolver:
    """A nameserver on a loopback address that takes every query and answers none.

    `command` starts echo_server in a mount namespace of its own whose /etc/resolv.conf (timeout
    30 s), /etc/hosts (without this machine's name) and /etc/nsswitch.conf send every lookup of
    this machine's name there.
    """

    sock: socket.socket
    command: tuple[str, ...]

    def queries(self) -> list[bytes]:
        received = []
        with contextlib.suppress(BlockingIOError):
            for _ in range(1000):
                received.append(self.sock.recv(4096))
        return received


def bind_nameserver() -> socket.socket:
    """A UDP socket on port 53 of a loopback address no other run uses (port 53 needs root)."""
    for offset in range(250):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((f"127.53.{(os.getpid() + offset) % 250 + 1}.1", 53))
        except OSError as error:
            sock.close()
            if error.errno != errno.EADDRINUSE:
                raise
            continue
        sock.setblocking(False)
        return sock
    raise AssertionError("no free port 53 on 127.53.*.1")


NAMESPACE_SCRIPT = (
    'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && '
    'mount --bind "$3" /etc/nsswitch.conf && shift 3 && exec "$@"'
)


@pytest.fixture
def slow_resolver(tmp_path: Path) -> Iterator[SlowResolver]:
    try:
        sock = bind_nameserver()
        unshare = subprocess.run(
            ["unshare", "--mount", "true"], capture_output=True, text=True, check=False
        )
        if unshare.returncode != 0:
            raise OSError(unshare.stderr.strip())
    except OSError as error:
        reason = f"cannot run a nameserver on port 53 or a mount namespace: {error}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run these tests as root")
        pytest.skip(reason)
    files = {
        "resolv.conf": f"nameserver {sock.getsockname()[0]}\noptions timeout:30 attempts:1\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
        "nsswitch.conf": "hosts: files dns\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    command = (
        *("unshare", "--mount", "sh", "-c", NAMESPACE_SCRIPT, "sh"),
        *(str(tmp_path / name) for name in files),
        *(sys.executable, "-m", "echo_server"),
    )
    with sock:
        yield SlowResolver(sock, command)


def test_notify_from_this_machine_never_waits_for_a_slow_resolver(
    start_server: StartServer, slow_resolver: SlowResolver
) -> None:
    server = start_server("ws", "--port", "0", command=slow_resolver.command)
    with chat_client(server) as ws:
        for number, host in enumerate(("127.0.0.1", "localhost", "[::1]")):
            headers = {"Host": f"{host}:{server.port}"}
            reply = request(server.port, "GET", f"/notify?msg={number}", headers=headers)
            assert reply.status == 200, reply
            assert ws.recv(TIMEOUT_S) == str(number)
    # The server did ask for its name: in a thread, where the resolver still has it waiting.
    wait_for(lambda: bool(slow_resolver.queries()), "the server's lookup reaching the resolver")


# Who may notify: from another host, a network namespace of our own.


@dataclass
class NamespaceHost:
    """A second host: a network namespace linked to this one by a veth pair."""

    name: str
    server_address: str  # this side of the link: the server binds here
    client_address: str  # the namespace's side: requests from it are not loopback

    def request(
        self, port: int, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> Reply:
        """Make an HTTP request from inside the namespace, with the same http.client."""
        argv = [
            *("ip", "netns", "exec", self.name, sys.executable, "-c", NAMESPACE_CLIENT),
            *(self.server_address, str(port), method, target, json.dumps(headers)),
        ]
        completed = subprocess.run(
            argv, input=body, capture_output=True, timeout=TIMEOUT_S + 10, check=False
        )
        assert completed.returncode == 0, completed.stderr.decode(errors="replace")
        answer = json.loads(completed.stdout)
        return Reply(answer["status"], answer["body"].encode(), answer["headers"])


NAMESPACE_CLIENT = """
import http.client, json, sys
host, port, method, target, headers = sys.argv[1:]
connection = http.client.HTTPConnection(host, int(port), timeout=10)
connection.request(method, target, body=sys.stdin.buffer.read(), headers=json.loads(headers))
response = connection.getresponse()
print(json.dumps({
    "status": response.status,
    "body": response.read().decode(errors="replace"),
    "headers": {name.lower(): value for name, value in response.getheaders()},
}))
"""


@pytest.fixture
def namespace_host() -> Iterator[NamespaceHost]:
    with namespace_beside_this_one("test") as (name, here, there):
        yield NamespaceHost(name, here, there)


def start_on(start_server: StartServer, host: NamespaceHost, *options: str) -> ServerProcess:
    return start_server("ws", "--port", "0", "--host", host.server_address, *options)


def test_the_namespace_peer_is_not_loopback(namespace_host: NamespaceHost) -> None:
    assert not is_loopback(namespace_host.client_address)


def test_notify_from_another_host_is_refused_with_403_when_no_token_is_set(
    start_server: StartServer, namespace_host: NamespaceHost
) -> None:
    server = start_on(start_server, namespace_host)
    with chat_client(server) as ws:
        reply = namespace_host.request(server.port, "POST", "/notify", b"from the LAN", {})
        assert reply.status == 403
        assert_nothing_was_delivered(ws)


def test_notify_from_another_host_without_a_token_is_refused_with_403(
    start_server: StartServer, namespace_host: NamespaceHost
) -> None:
    server = start_on(start_server, namespace_host, "--notify-token", TOKEN)
    with chat_client(server) as ws:
        reply = namespace_host.request(server.port, "GET", "/notify?msg=hello", b"", {})
        assert reply.status == 403
        assert_nothing_was_delivered(ws)


def test_notify_from_another_host_with_the_right_bearer_token_is_delivered(
    start_server: StartServer, namespace_host: NamespaceHost
) -> None:
    server = start_on(start_server, namespace_host, "--notify-token", TOKEN)
    with chat_client(server) as ws:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        reply = namespace_host.request(server.port, "POST", "/notify", b"from the LAN", headers)
        assert reply.status == 200
        assert reply.json() == {"delivered": 1}
        assert ws.recv(TIMEOUT_S) == "from the LAN"


def test_notify_from_another_host_with_a_wrong_token_is_refused_with_403(
    start_server: StartServer, namespace_host: NamespaceHost
) -> None:
    server = start_on(start_server, namespace_host, "--notify-token", TOKEN)
    with chat_client(server) as ws:
        headers = {"Authorization": "Bearer not-the-token"}
        reply = namespace_host.request(server.port, "POST", "/notify", b"from the LAN", headers)
        assert reply.status == 403
        assert_nothing_was_delivered(ws)


def test_a_plain_request_from_another_host_still_gets_426(
    start_server: StartServer, namespace_host: NamespaceHost
) -> None:
    server = start_on(start_server, namespace_host)
    reply = namespace_host.request(server.port, "GET", "/", b"", {})
    assert reply.status == 426


# Who may publish: the same rule, and `echo-server publish` from the other host with the token.


def publish_from(
    host: NamespaceHost, port: int, token: str | None
) -> subprocess.CompletedProcess[str]:
    """`echo-server publish` run on the other host, with the token (if any) in its environment."""
    env = {k: v for k, v in os.environ.items() if k != "ECHO_SERVER_NOTIFY_TOKEN"}
    if token is not None:
        env["ECHO_SERVER_NOTIFY_TOKEN"] = token
    argv = [
        *("ip", "netns", "exec", host.name, sys.executable, "-m", "echo_server", "publish"),
        *(f"http://{host.server_address}:{port}", "lan", "21.5", "--timeout", str(TIMEOUT_S)),
    ]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT_S + 10, check=False, env=env
    )


@contextlib.contextmanager
def lan_series_client(server: ServerProcess) -> Iterator[ClientConnection]:
    with connect(server.url("/stream?series=lan"), open_timeout=TIMEOUT_S, proxy=None) as ws:
        assert json.loads(ws.recv(TIMEOUT_S))["history"] == []
        yield ws


def test_publish_from_another_host_without_the_token_is_refused_with_403(
    start_server: StartServer, namespace_host: NamespaceHost
) -> None:
    server = start_on(start_server, namespace_host, "--notify-token", TOKEN)
    with lan_series_client(server) as ws:
        done = publish_from(namespace_host, server.port, None)
        assert done.returncode == 1
        assert "403 Forbidden" in done.stderr
        with pytest.raises(TimeoutError):
            ws.recv(0.5)  # nothing was published


def test_publish_from_another_host_with_the_token_in_the_environment_is_delivered(
    start_server: StartServer, namespace_host: NamespaceHost
) -> None:
    server = start_on(start_server, namespace_host, "--notify-token", TOKEN)
    with lan_series_client(server) as ws:
        done = publish_from(namespace_host, server.port, TOKEN)
        assert done.returncode == 0, done.stderr
        assert json.loads(ws.recv(TIMEOUT_S))["value"] == 21.5
