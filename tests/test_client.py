"""The terminal client, `echo-server client URL`, run as a process against real servers.

Most tests talk to a real `python -m echo_server ws` on a free port. What the echo server never
does (send binary on its own, close with an error code, send late, never answer the upgrade) comes
from small servers started inside the test on 127.0.0.1: a `websockets` server in a thread, or a
listening socket that never speaks.

This is the client's specification as a user sees it: stdout, stderr and the exit status. The
server's own behaviour is specified in test_hostile.py and the other server tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import StartServer
from support import REPO, ServerProcess, recv_until, wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve
from websockets.utils import accept_key

from echo_server.client import request_header

CLIENT = (sys.executable, "-m", "echo_server", "client")
RUN_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 10.0
# What a close or an exit may take beyond the moment asked for, on a slow Raspberry Pi.
SLACK_S = 5.0
OPENSSL_TIMEOUT_S = 60.0  # generating an RSA key can take seconds on a Raspberry Pi
# What the client may take from a stop signal to its exit: a close handshake with a local server,
# five clients at once, on a busy machine. Under the client's own deadline for a close that is
# never answered (CLOSE_TIMEOUT_S + 1 s), so a client that waits that out still fails.
SIGNAL_EXIT_S = SLACK_S
SIGNAL_TRIES = 50
SIGNAL_TRIES_AT_ONCE = 5


def run_client(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the client to completion; stdin is always given, never the terminal pytest runs in."""
    return subprocess.run(
        [*CLIENT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=REPO,
        check=False,
    )


@contextlib.contextmanager
def client_process(tmp_path: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Start the client with stdin an open pipe nobody writes to, like a user who types nothing.

    stdout and stderr go to files (tmp_path/out, tmp_path/err), so the test can read them while
    the client runs; the process is killed if the test leaves it running.
    """
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        proc = subprocess.Popen(
            [*CLIENT, *args], stdin=subprocess.PIPE, stdout=out, stderr=err, text=True, cwd=REPO
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdin is not None
        proc.stdin.close()


def wait_connected(proc: subprocess.Popen[str], tmp_path: Path) -> None:
    err = tmp_path / "err"
    wait_until(lambda: "connected to" in err.read_text(), REPLY_TIMEOUT_S, "the client connects")
    assert proc.poll() is None, err.read_text()


def one_error_line(stderr: str) -> str:
    """The single line a failure prints: no traceback, no usage dump, no status line before."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("echo-server client: error: "), stderr
    return lines[0]


@contextlib.contextmanager
def scripted_server(handler: Callable[[ServerConnection], None]) -> Iterator[str]:
    """A websockets server on 127.0.0.1 and a free port, running `handler` per connection."""
    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        try:
            yield f"ws://127.0.0.1:{port}/"
        finally:
            server.shutdown()
            thread.join(REPLY_TIMEOUT_S)


@contextlib.contextmanager
def raw_server(script: Callable[[socket.socket], None]) -> Iterator[str]:
    """A hand-made WebSocket server for one connection: the upgrade, then `script(socket)`.

    For what a websockets server never does: a malformed close frame, a close never answered.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(RUN_TIMEOUT_S)

    def serve_one() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                head = recv_until(conn, b"\r\n\r\n", REPLY_TIMEOUT_S)
                found = re.search(rb"Sec-WebSocket-Key: *(\S+)", head, re.IGNORECASE)
                assert found is not None, head
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                    + accept_key(found[1].decode()).encode()
                    + b"\r\n\r\n"
                )
                script(conn)

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() still waiting
        listener.close()
        thread.join(REPLY_TIMEOUT_S)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame, as a server sends it."""
    if len(payload) < 126:
        return bytes([0x80 | opcode, len(payload)]) + payload
    return bytes([0x80 | opcode, 126]) + len(payload).to_bytes(2, "big") + payload


def send_raw_then_wait_for_close(frame: bytes) -> Callable[[socket.socket], None]:
    def script(conn: socket.socket) -> None:
        conn.sendall(frame)
        with contextlib.suppress(OSError):
            conn.recv(65536)  # the client's close frame; then the TCP connection ends

    return script


def without_import_times(stderr: str) -> str:
    """stderr less the lines `python -X importtime` adds."""
    return "".join(
        line for line in stderr.splitlines(keepends=True) if not line.startswith("import time:")
    )


def send_then_wait_for_close(*messages: str | bytes) -> Callable[[ServerConnection], None]:
    def handler(ws: ServerConnection) -> None:
        for message in messages:
            ws.send(message)
        with contextlib.suppress(ConnectionClosed):
            for _ in ws:  # the client decides when it is over
                pass

    return handler


# Sending and printing.


def test_send_messages_go_first_in_order_and_count_ends_with_a_normal_close(
    ws_server: ServerProcess,
) -> None:
    result = run_client(ws_server.url(), "--send", "a", "--send", "b", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a\nb\n"
    assert "closed: 1000" in result.stderr


def test_status_lines_go_to_stderr_and_stdout_holds_only_messages(
    ws_server: ServerProcess,
) -> None:
    result = run_client(ws_server.url(), "--send", "only this", "--count", "1")
    assert result.stdout == "only this\n"
    assert f"connected to {ws_server.url()}" in result.stderr


def test_quiet_prints_no_status_lines(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url(), "--quiet", "--send", "hi", "--count", "1")
    assert result.returncode == 0
    assert result.stdout == "hi\n"
    assert result.stderr == ""


def test_each_stdin_line_is_sent_as_one_text_message(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url(), "--count", "3", stdin="one\ntwo words\n\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "one\ntwo words\n\n"


def test_stdin_lines_follow_the_send_messages(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url(), "--send", "first", "--count", "2", stdin="second\n")
    assert result.stdout == "first\nsecond\n"


def test_a_carriage_return_before_the_newline_is_not_sent(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url(), "--count", "1", stdin="windows\r\n")
    assert result.stdout == "windows\n"


def test_text_that_is_not_utf8_on_stdin_is_sent_with_replacement_characters(
    ws_server: ServerProcess,
) -> None:
    completed = subprocess.run(
        [*CLIENT, ws_server.url(), "--count", "1"],
        input=b"caf\xe9\n",
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
        cwd=REPO,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.decode() == "caf\N{REPLACEMENT CHARACTER}\n"


def test_a_bare_host_and_port_means_ws(ws_server: ServerProcess) -> None:
    result = run_client(f"127.0.0.1:{ws_server.port}", "--send", "hi", "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"


def test_the_ipv6_loopback_works_too(start_server: StartServer) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = start_server("ws", "--host", "::1", "--port", "0")
    except AssertionError as error:  # ::1 not configured (some containers)
        pytest.skip(f"cannot listen on ::1: {error}")
    result = run_client(f"ws://[::1]:{server.port}/", "--send", "six", "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "six\n"


# End of input.


def test_end_of_input_closes_normally_after_printing_the_replies(
    ws_server: ServerProcess,
) -> None:
    result = run_client(ws_server.url(), stdin="x\ny\nlast line without newline")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "x\ny\nlast line without newline\n"
    assert "closed: 1000" in result.stderr


def test_an_empty_input_closes_at_once(ws_server: ServerProcess) -> None:
    started = time.monotonic()
    result = run_client(ws_server.url(), stdin="")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert time.monotonic() - started < SLACK_S


def test_with_count_end_of_input_only_stops_sending() -> None:
    def late(ws: ServerConnection) -> None:
        # Sent once the client has had all the time it needs to close at end of input: if it
        # did close, the message is never sent and the client prints nothing.
        with contextlib.suppress(TimeoutError):
            ws.recv(timeout=0.5)
        ws.send("late")
        with contextlib.suppress(ConnectionClosed):
            ws.recv(timeout=REPLY_TIMEOUT_S)

    with scripted_server(late) as url:
        result = run_client(url, "--count", "1", stdin="")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "late\n"


def test_keep_open_waits_for_the_server_after_end_of_input(
    ws_server: ServerProcess, tmp_path: Path
) -> None:
    with client_process(tmp_path, ws_server.url(), "--keep-open") as client:
        assert client.stdin is not None
        client.stdin.write("typed\n")
        client.stdin.close()
        wait_until(lambda: (tmp_path / "out").read_text() == "typed\n", REPLY_TIMEOUT_S, "the echo")
        assert client.poll() is None  # still open after the end of input
        ws_server.stop()
        assert client.wait(REPLY_TIMEOUT_S + SLACK_S) == 0
    assert "1001" in (tmp_path / "err").read_text()


def test_a_closed_stdin_is_an_end_of_input_too(ws_server: ServerProcess) -> None:
    # `<&-` starts the client with no fd 0 at all: it must not read its own socket as input.
    closed_stdin = ("sh", "-c", 'exec "$@" <&-', "sh", *CLIENT)
    result = subprocess.run(
        [*closed_stdin, ws_server.url(), "--send", "x"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "x\n"
    assert "closed: 1000" in result.stderr


# Ending.


def test_the_server_stopping_is_a_normal_end_with_1001_on_stderr(
    ws_server: ServerProcess, tmp_path: Path
) -> None:
    with client_process(tmp_path, ws_server.url()) as client:
        wait_connected(client, tmp_path)
        assert ws_server.stop(signal.SIGTERM) == 0
        assert client.wait(REPLY_TIMEOUT_S + SLACK_S) == 0
    stderr = (tmp_path / "err").read_text()
    assert "closed by the server: 1001" in stderr
    assert "Traceback" not in stderr


def test_timeout_closes_normally_and_exits_0_in_time(ws_server: ServerProcess) -> None:
    started = time.monotonic()
    result = run_client(ws_server.url(), "--timeout", "1", stdin="")
    elapsed_s = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "closed: 1000" in result.stderr
    assert 1.0 <= elapsed_s < 1.0 + SLACK_S


def test_count_and_timeout_together_end_at_whichever_comes_first(
    ws_server: ServerProcess,
) -> None:
    started = time.monotonic()
    result = run_client(ws_server.url(), "--send", "just one", "--count", "5", "--timeout", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "just one\n"
    assert time.monotonic() - started < 1.0 + SLACK_S


def test_count_stops_printing_at_n_messages(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url(), "--count", "2", stdin="1\n2\n3\n4\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n2\n"


def test_ctrl_c_closes_normally_and_exits_130(ws_server: ServerProcess, tmp_path: Path) -> None:
    with client_process(tmp_path, ws_server.url()) as client:
        wait_connected(client, tmp_path)
        client.send_signal(signal.SIGINT)
        assert client.wait(REPLY_TIMEOUT_S) == 130
    stderr = (tmp_path / "err").read_text()
    assert "closed: 1000" in stderr
    assert "Traceback" not in stderr


def flood(ws: ServerConnection) -> None:
    """Send numbered messages without pause until the client closes."""
    with contextlib.suppress(ConnectionClosed):
        for number in range(10**9):
            ws.send(f"message {number}")


def interrupt_while_receiving(url: str, tmp_path: Path, signum: int) -> tuple[int, float, str]:
    """Start a client, signal it once messages flow; return (status, seconds to exit, stderr)."""
    with client_process(tmp_path, url) as client:
        wait_until(
            lambda: (tmp_path / "out").stat().st_size > 0, REPLY_TIMEOUT_S, "messages are printed"
        )
        client.send_signal(signum)
        signalled = time.monotonic()
        try:
            status = client.wait(SIGNAL_EXIT_S)
        except subprocess.TimeoutExpired:
            status = -1
        elapsed_s = time.monotonic() - signalled
    return status, elapsed_s, (tmp_path / "err").read_text()


def test_ctrl_c_while_receiving_closes_normally_and_exits_130_every_time(
    tmp_path: Path,
) -> None:
    # KeyboardInterrupt used to be raised wherever the main thread was, inside websockets' locks
    # too: now and then the client hung or printed a traceback.
    def one_try(index: int) -> tuple[int, float, str]:
        folder = tmp_path / str(index)
        folder.mkdir()
        return interrupt_while_receiving(url, folder, signal.SIGINT)

    with scripted_server(flood) as url, ThreadPoolExecutor(SIGNAL_TRIES_AT_ONCE) as pool:
        outcomes = list(pool.map(one_try, range(SIGNAL_TRIES)))
    failures = [
        outcome
        for outcome in outcomes
        if outcome[0] != 130 or "closed: 1000" not in outcome[2] or "Traceback" in outcome[2]
    ]
    assert not failures, failures
    # Status -1 above is a client still running after SIGNAL_EXIT_S: no separate time check.


def test_sigterm_closes_normally_and_exits_143(tmp_path: Path) -> None:
    with scripted_server(flood) as url:
        status, _, stderr = interrupt_while_receiving(url, tmp_path, signal.SIGTERM)
    assert status == 143, stderr
    assert "closed: 1000" in stderr
    assert "Traceback" not in stderr


def test_ctrl_c_while_connecting_exits_130_at_once(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(REPLY_TIMEOUT_S)
        with client_process(tmp_path, f"ws://127.0.0.1:{silent.getsockname()[1]}/") as client:
            accepted, _ = silent.accept()  # the client waits for an answer to its upgrade
            with accepted:
                client.send_signal(signal.SIGINT)
                assert client.wait(SIGNAL_EXIT_S) == 130
    stderr = (tmp_path / "err").read_text()
    assert stderr == "echo-server client: interrupted\n"


@pytest.mark.parametrize(
    "imported",
    ["websockets.version", "websockets.exceptions", "echo_server.client", "echo_server.cli"],
)
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(
    tmp_path: Path, imported: str
) -> None:
    # `-X importtime` reports each import as it ends: the signal comes during start-up, at a
    # known place. (Before `python -m echo_server` runs its first line, the interpreter's own
    # start-up is beyond our reach.) The server never answers, so that the client is still
    # connecting, not finished, when the signal is handled.
    err = tmp_path / "err"
    silent = socket.create_server(("127.0.0.1", 0))
    with err.open("w") as err_file:
        client = subprocess.Popen(
            [
                *(sys.executable, "-X", "importtime", *CLIENT[1:]),
                f"ws://127.0.0.1:{silent.getsockname()[1]}/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            cwd=REPO,
        )
    try:
        marker = re.compile(rf"\|\s+{re.escape(imported)}$", re.MULTILINE)
        wait_until(
            lambda: marker.search(err.read_text()) is not None,
            RUN_TIMEOUT_S,
            f"{imported} is imported",
        )
        client.send_signal(signal.SIGINT)
        assert client.wait(RUN_TIMEOUT_S) == 130
    finally:
        if client.poll() is None:
            client.kill()
        client.wait()
        silent.close()
    assert without_import_times(err.read_text()) == "echo-server client: interrupted\n"


def test_a_second_ctrl_c_exits_at_once_while_the_server_does_not_answer_the_close(
    tmp_path: Path,
) -> None:
    hold = threading.Event()

    def never_answers(conn: socket.socket) -> None:
        hold.wait(RUN_TIMEOUT_S)  # reads nothing, so never answers the client's close

    with raw_server(never_answers) as url, client_process(tmp_path, url) as client:
        try:
            wait_connected(client, tmp_path)
            client.send_signal(signal.SIGINT)
            wait_until(
                lambda: "interrupted" in (tmp_path / "err").read_text(),
                REPLY_TIMEOUT_S,
                "the first Ctrl-C is seen",
            )
            assert client.poll() is None  # waiting for the close it will never get
            client.send_signal(signal.SIGINT)
            assert client.wait(SIGNAL_EXIT_S) == 130
        finally:
            hold.set()
    assert "Traceback" not in (tmp_path / "err").read_text()


def test_a_close_with_an_error_code_exits_1_with_one_line() -> None:
    def failing(ws: ServerConnection) -> None:
        ws.close(1011, "it broke")

    with scripted_server(failing) as url:
        result = run_client(url, "--quiet", "--count", "1")
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "1011" in line
    assert "it broke" in line


def test_a_close_reason_cannot_move_the_cursor_or_add_lines() -> None:
    def hostile(ws: ServerConnection) -> None:
        ws.close(4000, "\x1b[2J\ncleared")

    with scripted_server(hostile) as url:
        result = run_client(url, "--quiet", "--count", "1")
    assert result.returncode == 1
    assert "4000" in one_error_line(result.stderr)
    assert "\\x1b[2J\\ncleared" in result.stderr
    assert "\x1b" not in result.stderr


def test_the_server_vanishing_without_a_close_frame_exits_1() -> None:
    def vanishing(ws: ServerConnection) -> None:
        ws.socket.shutdown(socket.SHUT_RDWR)

    with scripted_server(vanishing) as url:
        result = run_client(url, "--quiet", "--count", "1")
    assert result.returncode == 1
    assert "1006" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("frame", "named"),
    [
        (server_frame(0x8, (999).to_bytes(2, "big")), "1002"),  # a code no one may send
        (server_frame(0x8, (1005).to_bytes(2, "big")), "1002"),  # reserved: never on the wire
        (server_frame(0x8, b"\x03\xe8" + b"x" * 124), "1002"),  # a control frame over 125 bytes
        (server_frame(0x8, b"\x03\xe8\xff"), "1007"),  # a reason that is not UTF-8
        (server_frame(0x1, b"caf\xe9"), "1007"),  # a text message that is not UTF-8
        (server_frame(0x3, b"x"), "1002"),  # a reserved opcode
    ],
)
def test_a_malformed_frame_from_the_server_is_one_error_line(frame: bytes, named: str) -> None:
    with raw_server(send_raw_then_wait_for_close(frame)) as url:
        result = run_client(url, "--quiet", "--count", "1")
    assert result.returncode == 1
    assert named in one_error_line(result.stderr)


def test_count_ends_with_a_normal_close_also_when_the_server_sends_without_pause() -> None:
    # The server's answer to our close comes behind a queue of messages that must be read.
    with scripted_server(flood) as url:
        result = run_client(url, "--count", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "message 0\nmessage 1\nmessage 2\n"
    assert "closed: 1000" in result.stderr


def test_a_message_over_the_size_limit_is_one_error_line_with_1009() -> None:
    too_big = "x" * (1024 * 1024 + 1)
    with scripted_server(send_then_wait_for_close(too_big)) as url:
        result = run_client(url, "--quiet", "--count", "1")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "1009" in one_error_line(result.stderr)


def test_output_to_a_closed_pipe_ends_quietly_with_status_0() -> None:
    with scripted_server(flood) as url:
        client = subprocess.Popen(
            [*CLIENT, url, "--quiet", "--keep-open"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        assert client.stdout is not None
        assert client.stdout.readline() == b"message 0\n"
        client.stdout.close()  # like `| head -1`
        try:
            assert client.wait(REPLY_TIMEOUT_S + SLACK_S) == 0
        finally:
            if client.poll() is None:
                client.kill()
            client.wait()
        assert client.stderr is not None
        stderr = client.stderr.read()
        client.stderr.close()
    assert stderr == b""


def test_a_closed_stdout_loses_the_messages_not_the_exit_status(ws_server: ServerProcess) -> None:
    # `>&-`: no fd 1 at all. The messages have nowhere to go; the connection must not be
    # given fd 1 and written into.
    closed_stdout = ("sh", "-c", 'exec "$@" >&-', "sh", *CLIENT)
    result = subprocess.run(
        [*closed_stdout, ws_server.url(), "--send", "lost", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "closed: 1000" in result.stderr
    assert "Traceback" not in result.stderr


# Display.


def test_json_messages_are_pretty_printed(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url(), "--json", "--send", '{"a":[1,"b"]}', "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{\n  "a": [\n    1,\n    "b"\n  ]\n}\n'


def test_json_prints_text_that_is_not_json_as_is(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url(), "--json", "--send", "{not json", "--count", "1")
    assert result.stdout == "{not json\n"


def test_json_prints_json_nested_too_deep_to_pretty_print_as_is() -> None:
    nested = "[" * 100_000 + "]" * 100_000
    with scripted_server(send_then_wait_for_close(nested)) as url:
        result = run_client(url, "--json", "--count", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == nested + "\n"
    assert "Traceback" not in result.stderr


def test_a_newline_inside_a_text_message_is_escaped_so_one_message_is_one_line(
    ws_server: ServerProcess,
) -> None:
    result = run_client(ws_server.url(), "--send", "two\nlines", "--count", "1")
    assert result.stdout == "two\\nlines\n"


def test_terminal_control_characters_are_escaped_and_tabs_are_kept(
    ws_server: ServerProcess,
) -> None:
    result = run_client(ws_server.url(), "--send", "\x1b[31mred\x07\tend", "--count", "1")
    assert result.stdout == "\\x1b[31mred\\x07\tend\n"


def test_non_ascii_text_is_printed_as_is(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url(), "--send", "héllo wörld ✓", "--count", "1")
    assert result.stdout == "héllo wörld ✓\n"


def test_binary_shows_its_size_and_at_most_32_bytes_of_hex() -> None:
    with scripted_server(send_then_wait_for_close(bytes(range(40)), b"\x0a\x1b\x2c")) as url:
        result = run_client(url, "--count", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"<binary 40 bytes: {bytes(range(32)).hex()}...>",
        "<binary 3 bytes: 0a1b2c>",
    ]


def test_binary_hex_shows_every_byte() -> None:
    with scripted_server(send_then_wait_for_close(bytes(range(40)))) as url:
        result = run_client(url, "--binary-hex", "--count", "1")
    assert result.stdout == f"<binary 40 bytes: {bytes(range(40)).hex()}>\n"


def test_an_empty_binary_message_shows_zero_bytes() -> None:
    with scripted_server(send_then_wait_for_close(b"")) as url:
        result = run_client(url, "--count", "1")
    assert result.stdout == "<binary 0 bytes>\n"


# Failing to connect.


def test_connection_refused_is_one_line_and_exit_1() -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{bound_not_listening.getsockname()[1]}/"
        result = run_client(url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert one_error_line(result.stderr) == (
        f"echo-server client: error: cannot connect to {url}: connection refused"
    )


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8001/", "ws://", "ws://127.0.0.1:99999/", "ws://127.0.0.1/#top", "ftp://x"],
)
def test_a_bad_url_is_one_line_and_exit_2(url: str) -> None:
    result = run_client(url)
    assert result.returncode == 2
    assert "URL" in one_error_line(result.stderr)


@pytest.mark.parametrize("origin", ["http://caf\udce9.example", "http://a b", ""])
def test_an_origin_that_cannot_be_a_header_is_one_line_and_exit_2(
    ws_server: ServerProcess, origin: str
) -> None:
    result = run_client(ws_server.url(), "--origin", origin)
    assert result.returncode == 2
    assert "origin" in one_error_line(result.stderr)


def test_a_refused_upgrade_names_the_http_status(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url(), "--origin", "http://evil.example")
    assert result.returncode == 1
    assert "server refused the upgrade: HTTP 403" in one_error_line(result.stderr)


def test_the_origin_option_sends_an_origin_the_server_accepts(start_server: StartServer) -> None:
    server = start_server("ws", "--port", "0", "--allow-origin", "http://school.example")
    args = ("--origin", "http://school.example", "--send", "hi", "--count", "1")
    result = run_client(server.url(), *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"


def test_an_unknown_path_names_the_404(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url("/no-such-route"))
    assert result.returncode == 1
    assert "HTTP 404" in one_error_line(result.stderr)


def test_a_server_that_never_answers_the_upgrade_times_out_in_one_line() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the TCP handshake; nobody ever answers
        started = time.monotonic()
        result = run_client(f"ws://127.0.0.1:{silent.getsockname()[1]}/", "--timeout", "1")
    assert result.returncode == 1
    assert "no answer in 1 s" in one_error_line(result.stderr)
    assert time.monotonic() - started < 1.0 + SLACK_S


# TLS.


@pytest.fixture
def tls_server(start_server: StartServer, tmp_path: Path) -> ServerProcess:
    """A wss:// echo server with a self-signed certificate for 127.0.0.1."""
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(keyfile), "-out", str(certfile)),
        ],
        check=True,
        capture_output=True,
        timeout=OPENSSL_TIMEOUT_S,
    )
    return start_server("ws", "--port", "0", "--certfile", str(certfile), "--keyfile", str(keyfile))


def test_a_self_signed_certificate_is_refused_in_one_line_that_suggests_insecure(
    tls_server: ServerProcess,
) -> None:
    result = run_client(tls_server.url())
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "self-signed certificate" in line
    assert "--insecure" in line


def test_insecure_accepts_a_self_signed_certificate(tls_server: ServerProcess) -> None:
    result = run_client(tls_server.url(), "--insecure", "--send", "secret", "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "secret\n"


def test_ws_to_a_tls_server_fails_in_one_line_that_suggests_wss(
    tls_server: ServerProcess,
) -> None:
    result = run_client(tls_server.url().replace("wss://", "ws://", 1))
    assert result.returncode == 1
    assert "wss://" in one_error_line(result.stderr)


def test_wss_to_a_plain_server_fails_in_one_line_that_suggests_ws(
    ws_server: ServerProcess,
) -> None:
    # The server waits for an HTTP request, the client for a TLS answer: --timeout ends it.
    wss_url = ws_server.url().replace("ws://", "wss://", 1)
    result = run_client(wss_url, "--insecure", "--timeout", "1")
    assert result.returncode == 1
    assert "ws:// server?" in one_error_line(result.stderr)


# Help.


def test_help_says_what_end_of_input_and_each_exit_status_mean() -> None:
    result = run_client("--help")
    assert result.returncode == 0
    assert "end of input" in result.stdout
    assert "--keep-open" in result.stdout
    for status in ("0  ", "1  ", "2  ", "130  "):
        assert f"\n  {status}" in result.stdout


def test_a_proxy_in_the_environment_is_not_used_for_this_machine(ws_server: ServerProcess) -> None:
    with socket.socket() as dead_proxy:
        dead_proxy.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead_proxy.getsockname()[1]}"
        env = {**os.environ, "http_proxy": proxy, "https_proxy": proxy, "all_proxy": proxy}
        env.pop("no_proxy", None)
        env.pop("NO_PROXY", None)
        result = subprocess.run(
            [*CLIENT, ws_server.url(), "--send", "direct", "--count", "1"],
            input="",
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            cwd=REPO,
            env=env,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "direct\n"


# What the handshake offers: subprotocols, headers, compression; pings; the close code.


def request_header_echo(*names: str) -> Callable[[ServerConnection], None]:
    """A scripted server's handler: send back what the request said for each header name."""

    def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        for name in names:
            ws.send(f"{name}={ws.request.headers.get(name, '-')}")
        with contextlib.suppress(ConnectionClosed):
            for _ in ws:
                pass

    return handler


def test_the_subprotocol_the_server_chose_is_on_the_status_line(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0", "--subprotocol", "mqtt")
    args = ("--subprotocol", "ocpp1.6", "--subprotocol", "mqtt", "--send", "hi", "--count", "1")
    result = run_client(server.url(), *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    assert "subprotocol mqtt" in result.stderr


def test_subprotocols_are_offered_in_the_order_given() -> None:
    with scripted_server(request_header_echo("Sec-WebSocket-Protocol")) as url:
        result = run_client(url, "--subprotocol", "b", "--subprotocol", "a", "--count", "1")
    assert result.stdout == "Sec-WebSocket-Protocol=b, a\n"
    assert "subprotocol none (the server chose none)" in result.stderr


def test_a_subprotocol_that_is_not_a_token_is_one_line_and_exit_2() -> None:
    result = run_client("ws://127.0.0.1:1/", "--subprotocol", "two words")
    assert result.returncode == 2
    assert "subprotocol" in one_error_line(result.stderr)


def test_headers_are_added_to_the_upgrade_request() -> None:
    with scripted_server(request_header_echo("Authorization", "X-Device")) as url:
        args = ("--header", "Authorization: Bearer s3cret", "--header", "X-Device:esp32")
        result = run_client(url, *args, "--count", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Authorization=Bearer s3cret\nX-Device=esp32\n"


@pytest.mark.parametrize(
    ("header", "said"),
    [
        ("no colon", "Name: value"),
        ("Two Words: x", "Name: value"),
        (": empty name", "Name: value"),
        ("X-Bell: \a", "printable ASCII"),
        ("Sec-WebSocket-Protocol: mqtt", "--subprotocol"),
        ("sec-websocket-extensions: x", "--compression"),
        ("Origin: http://a", "--origin"),
        ("Host: elsewhere", "URL"),
    ],
)
def test_a_header_that_cannot_be_sent_is_refused_saying_why(header: str, said: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(said)):
        request_header(header)


def test_a_header_that_cannot_be_sent_is_one_line_and_exit_2() -> None:
    result = run_client("ws://127.0.0.1:1/", "--header", "Sec-WebSocket-Key: abc")
    assert result.returncode == 2
    assert "--header" in one_error_line(result.stderr)


def test_a_header_value_keeps_its_inner_spaces_and_loses_the_outer_ones() -> None:
    assert request_header("X-Name :  two  words ") == ("X-Name", "two  words")


def test_compression_is_offered_by_default_and_said_to_be_on() -> None:
    with scripted_server(request_header_echo("Sec-WebSocket-Extensions")) as url:
        result = run_client(url, "--count", "1")
    assert result.stdout.startswith("Sec-WebSocket-Extensions=permessage-deflate")
    assert "compression on" in result.stderr


def test_compression_off_offers_none() -> None:
    with scripted_server(request_header_echo("Sec-WebSocket-Extensions")) as url:
        result = run_client(url, "--compression", "off", "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Sec-WebSocket-Extensions=-\n"


def test_compression_takes_on_or_off_only() -> None:
    result = run_client("ws://127.0.0.1:1/", "--compression", "maybe")
    assert result.returncode == 2
    assert "on or off" in one_error_line(result.stderr)


def test_compressed_messages_both_ways_print_as_sent(ws_server: ServerProcess) -> None:
    long_line = "a line long enough to be compressed, " * 30
    result = run_client(ws_server.url(), "--send", long_line, "--count", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == long_line + "\n"
    assert "compression on" in result.stderr


def test_ping_prints_each_round_trip_on_stderr(ws_server: ServerProcess) -> None:
    result = run_client(ws_server.url(), "--ping", "0.2", "--timeout", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert re.search(r"echo-server client: pong in \d+\.\d ms\n", result.stderr), result.stderr


def test_the_last_status_line_has_the_close_code_and_reason() -> None:
    def close_with_reason(ws: ServerConnection) -> None:
        ws.close(1000, "see you tomorrow")

    with scripted_server(close_with_reason) as url:
        result = run_client(url, "--keep-open")
    assert result.returncode == 0, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == "echo-server client: closed by the server: 1000 (OK) see you tomorrow"
