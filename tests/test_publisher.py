"""`echo-server publish URL SERIES VALUE`, run as a shell script would: exit status and one line.

A real WebSocket server process; what it receives is checked on a real /stream client (the
`websockets` package). From another host, with the token, see tests/test_endpoints.py.
"""

from __future__ import annotations

import json

import pytest
from conftest import StartServer
from support import ServerProcess, free_port, run_cli
from websockets.sync.client import connect

TIMEOUT_S = 10.0


def http_url(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.port}"


def test_a_published_value_reaches_a_stream_client_and_exits_0(ws_server: ServerProcess) -> None:
    with connect(ws_server.url("/stream?series=cpu"), open_timeout=TIMEOUT_S, proxy=None) as ws:
        assert json.loads(ws.recv(TIMEOUT_S))["history"] == []
        done = run_cli(["publish", http_url(ws_server), "cpu", "0.75", "--unit", "load"])
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        point = json.loads(ws.recv(TIMEOUT_S))
    assert (point["series"], point["value"], point["unit"]) == ("cpu", 0.75, "load")


def test_a_ws_url_names_the_same_server(ws_server: ServerProcess) -> None:
    done = run_cli(["publish", ws_server.url("/"), "cpu", "1"])
    assert done.returncode == 0, done.stderr


def test_a_refused_publish_is_one_line_with_the_status_and_exit_1(
    ws_server: ServerProcess,
) -> None:
    done = run_cli(["publish", http_url(ws_server), "demo", "1"])
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("echo-server publish: error: 409 Conflict: ")
    assert "built-in" in done.stderr


def test_a_server_that_is_not_there_is_one_line_and_exit_1() -> None:
    done = run_cli(["publish", f"http://127.0.0.1:{free_port()}", "cpu", "1", "--timeout", "5"])
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "cannot reach" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["http://127.0.0.1:1", "cpu", "nan"],
        ["http://127.0.0.1:1", "cpu", "1e999"],
        ["http://127.0.0.1:1", "cpu", "twenty"],
        ["http://127.0.0.1:1", "bad name", "1"],
        ["ftp://127.0.0.1:1", "cpu", "1"],
        ["http://127.0.0.1:1", "cpu", "1", "--unit", "u" * 17],
        ["http://127.0.0.1:1", "cpu"],
    ],
)
def test_a_bad_usage_is_one_line_and_exit_2(args: list[str]) -> None:
    done = run_cli(["publish", *args])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_the_token_is_sent_from_the_environment_and_never_printed(
    start_server: StartServer,
) -> None:
    # From this machine no token is needed; a wrong one is ignored (see test_endpoints.py):
    # what is checked here is that giving one breaks nothing and shows nothing.
    server = start_server("ws", "--port", "0", "--notify-token", "s3cret")
    done = run_cli(
        ["publish", http_url(server), "cpu", "1"], env={"ECHO_SERVER_NOTIFY_TOKEN": "s3cret"}
    )
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout + done.stderr
