"""The command line: ready lines, --lan, demo's clean stop, and one-line errors with status 2."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import StartServer
from support import REPO, ServerProcess, free_ports, port_is_free, run_cli, wait_until
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from echo_server.cli import WS_OPTIONS, build_parser, ws_settings
from echo_server.settings import Settings


def echo_once(url: str) -> str:
    with connect(url, proxy=None, open_timeout=10) as ws:
        ws.send("hi")
        reply = ws.recv(10)
    assert isinstance(reply, str)
    return reply


@pytest.mark.parametrize(
    "args",
    [
        ["ws", "--port", "70000"],
        ["ws", "--port", "http"],
        ["ws", "--max-message-size", "lots"],
        ["ws", "--ping-interval", "-1"],
        ["ws", "--max-connections", "0"],
        ["ws", "--rate-limit", "-1"],
        ["ws", "--rate-limit", "nan"],
        ["ws", "--rate-limit", "fast"],
        ["ws", "--certfile", "/no/such/file.pem", "--keyfile", "/no/such/key.pem"],
        ["web", "--root", "/no/such/folder"],
        ["web", "--bogus"],
        ["web", "--request-timeout", "0"],
        ["web", "--keep-alive-timeout", "soon"],
        ["web", "--max-connections-per-address", "0"],
        ["demo", "--ws-port", "x"],
        ["ws", "--notify-token", "caf\udce9"],  # not UTF-8: `--notify-token $'caf\xe9'`
        ["ws", "--notify-token", "two words"],  # no client could send it in a header
        ["demo", "--notify-token", "caf\u00e9"],
        ["ws", "--subprotocol", "two words"],
        ["ws", "--subprotocol", ""],
        ["ws", "--compression", "maybe"],
        ["launch"],
        [],
    ],
)
def test_bad_option_is_one_line_and_exit_status_2(args: list[str]) -> None:
    result = run_cli(args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0]
    assert "Traceback" not in result.stderr


def test_certfile_without_keyfile_is_refused_in_one_line(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not used")
    result = run_cli(["ws", "--certfile", str(cert)])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--keyfile" in result.stderr


def test_port_in_use_is_a_clear_error_not_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli(["ws", "--port", str(taken.getsockname()[1])])
    assert result.returncode == 1
    assert "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_ws_prints_the_address_it_listens_on(start_server: StartServer) -> None:
    server = start_server("ws", "--port", "0")
    assert server.url() == f"ws://127.0.0.1:{server.port}/"
    assert echo_once(server.url()) == "hi"


def test_lan_listens_on_ipv4_and_ipv6_and_prints_this_machines_urls(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0", "--lan")
    found = server.wait_for_output(r"open from other machines: (.*)")
    assert "ws://" in found.group(1) or "no LAN address" in found.group(1)
    assert "127.0.0.1" not in found.group(1)  # URLs for other machines, not loopback
    assert echo_once(f"ws://127.0.0.1:{server.port}/") == "hi"
    assert echo_once(f"ws://[::1]:{server.port}/") == "hi"


def test_console_script_is_the_same_program() -> None:
    script = Path(sys.executable).parent / "echo-server"
    result = subprocess.run(
        [str(script), "ws", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert "--max-connections" in result.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_runs_both_servers_and_stops_cleanly(
    start_server: StartServer, signum: signal.Signals
) -> None:
    web_port, ws_port = free_ports(2)
    demo = start_server("demo", "--port", str(web_port), "--ws-port", str(ws_port), expect_urls=2)
    assert {port for _, _, port in demo.urls} == {web_port, ws_port}
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/config.json", timeout=10) as reply:
        assert json.load(reply)["ws_port"] == ws_port
    with connect(f"ws://127.0.0.1:{ws_port}/", proxy=None, open_timeout=10) as ws:
        ws.send("during demo")
        assert ws.recv(10) == "during demo"
        assert demo.stop(signum) == 0
        with pytest.raises(ConnectionClosed):
            ws.recv(10)
        assert ws.protocol.close_rcvd is not None
        assert ws.protocol.close_rcvd.code == 1001
    assert "Traceback" not in demo.output()
    assert port_is_free(web_port)
    assert port_is_free(ws_port)


def test_ctrl_c_during_start_up_stops_ws_with_status_0_and_no_traceback(tmp_path: Path) -> None:
    # `-X importtime` reports each import as it ends: the Ctrl-C comes while `ws` still imports
    # (after `python -m echo_server`'s first line, which makes SIGINT an event).
    log = tmp_path / "ws.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "echo_server", "ws", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        wait_until(
            lambda: (
                re.search(r"\|\s+websockets\.version$", log.read_text(), re.MULTILINE) is not None
            ),
            30,
            "websockets is imported",
        )
        server.send_signal(signal.SIGINT)
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    assert "Traceback" not in log.read_text()


# Options from the environment, and --selector.


def test_an_option_can_come_from_the_environment(start_server: StartServer) -> None:
    server = start_server("ws", env={"ECHO_SERVER_PORT": "0", "ECHO_SERVER_SELECTOR": "poll"})
    assert server.port != 8001
    assert get_stats(server.port)["selector"] == "poll"


def test_the_command_line_wins_over_the_environment(start_server: StartServer) -> None:
    server = start_server(
        "ws", "--port", "0", "--selector", "select", env={"ECHO_SERVER_SELECTOR": "poll"}
    )
    assert get_stats(server.port)["selector"] == "select"


def test_a_flag_from_the_environment_takes_yes_or_no() -> None:
    result = run_cli(["ws", "--port", "0", "--help"], env={"ECHO_SERVER_LAN": "maybe"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "echo-server ws: error: ECHO_SERVER_LAN: not yes or no: 'maybe' (see --help)"
    )


def test_a_bad_value_in_the_environment_is_one_line_naming_the_variable() -> None:
    result = run_cli(["ws"], env={"ECHO_SERVER_MAX_CONNECTIONS": "lots"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "echo-server ws: error: ECHO_SERVER_MAX_CONNECTIONS: not a whole number: 'lots' "
        "(see --help)"
    )


def test_a_repeatable_option_takes_several_values_and_the_command_line_replaces_them(
    start_server: StartServer,
) -> None:
    env = {"ECHO_SERVER_ALLOW_ORIGIN": "https://one.example https://two.example"}
    from_environment = start_server("ws", "--port", "0", env=env)
    replaced = start_server("ws", "--port", "0", "--allow-origin", "https://three.example", env=env)
    assert echo_with_origin(from_environment, "https://two.example") == "hi"
    assert echo_with_origin(replaced, "https://three.example") == "hi"
    with pytest.raises(InvalidStatus):
        echo_with_origin(replaced, "https://one.example")


def test_help_says_options_come_from_the_environment_too() -> None:
    for command in ("ws", "web", "demo"):
        result = run_cli([command, "--help"])
        assert "ECHO_SERVER_<OPTION>" in " ".join(result.stdout.split()), command


def test_an_unknown_selector_is_one_line_and_exit_2() -> None:
    result = run_cli(["ws", "--selector", "carrier-pigeon"])
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "select" in result.stderr


def test_with_select_forced_max_connections_is_lowered_below_its_descriptor_limit(
    start_server: StartServer,
) -> None:
    server = start_server("ws", "--port", "0", "--selector", "select")
    server.wait_for_output("--max-connections lowered from 10000 to 992")
    assert get_stats(server.port)["selector"] == "select"


def get_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as response:
        stats: dict[str, Any] = json.load(response)
    return stats


def echo_with_origin(server: ServerProcess, origin: str) -> str:
    with connect(server.url(), origin=Origin(origin), proxy=None, open_timeout=10) as ws:
        ws.send("hi")
        reply = ws.recv(10)
    assert isinstance(reply, str)
    return reply


# Subprotocols and compression (what they do: test_negotiation.py).


def parsed_ws_settings(*args: str, environ: dict[str, str] | None = None) -> Settings:
    return ws_settings(build_parser(environ or {}).parse_args(["ws", *args]))


def test_subprotocol_is_repeatable_and_kept_in_order() -> None:
    settings = parsed_ws_settings("--subprotocol", "ocpp1.6", "--subprotocol", "*")
    assert settings.subprotocols == ("ocpp1.6", "*")
    assert parsed_ws_settings().subprotocols == ()


@pytest.mark.parametrize(("word", "on"), [("on", True), ("OFF", False), ("no", False)])
def test_compression_takes_on_or_off(word: str, on: bool) -> None:
    assert parsed_ws_settings("--compression", word).compression is on
    assert parsed_ws_settings().compression is True


def test_subprotocols_and_compression_come_from_the_environment_too() -> None:
    environ = {"ECHO_SERVER_SUBPROTOCOL": "mqtt ocpp1.6", "ECHO_SERVER_COMPRESSION": "off"}
    settings = parsed_ws_settings(environ=environ)
    assert (settings.subprotocols, settings.compression) == (("mqtt", "ocpp1.6"), False)


def test_every_ws_option_is_in_the_options_reference() -> None:
    reference = (REPO / "docs" / "options.md").read_text()
    missing = [option.flag for option in WS_OPTIONS if f"`{option.flag}" not in reference]
    assert missing == []
