"""contrib/: the systemd unit and its environment file, as systemd and the program read them.

`systemd-analyze verify` checks the unit as systemd would load it (it runs without systemd as
PID 1, as here and in CI). It also checks that the program in ExecStart exists, so the unit is
checked with ExecStart pointing at this checkout's `echo-server` (in the unit it is
/opt/echo-server/venv/bin/echo-server, as docs/raspberry-pi.md installs it); nothing else is
changed. Without systemd-analyze the check skips, except in CI, which installs it (.ci/run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path

import pytest
from support import REPO

from echo_server.cli import build_parser

UNIT = REPO / "contrib" / "echo-server.service"
ENV_FILE = REPO / "contrib" / "echo-server.env"
INSTALLED = "/opt/echo-server/venv/bin/echo-server"


def unit() -> ConfigParser:
    parser = ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def environment() -> dict[str, str]:
    """The variables the example environment file sets (comments and blank lines aside)."""
    variables = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            variables[name.strip()] = value.strip()
    return variables


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        reason = "systemd-analyze is not installed (apt-get install systemd)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run installs it")
        pytest.skip(reason)
    here = Path(sys.executable).parent / "echo-server"
    assert here.exists()
    checked = tmp_path / "echo-server.service"
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 1
    checked.write_text(text.replace(INSTALLED, str(here)))
    done = subprocess.run(
        [analyze, "verify", str(checked)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # Warnings (an unknown setting, a bad value ignored) exit 0 too: none may name the unit.
    assert "echo-server.service" not in done.stderr, done.stderr


def test_the_service_runs_as_its_own_user_restarts_on_failure_and_reads_the_token_from_a_file() -> (
    None
):
    service = unit()["Service"]
    assert service["User"] not in ("", "root", "0")
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/echo-server/env"
    assert "TOKEN" not in UNIT.read_text().split("[Service]")[1]  # the secret is not in the unit
    assert service["ExecStart"].split()[0] == INSTALLED
    assert service["KillMode"] == "mixed"  # SIGTERM to demo alone: it stops its servers


def test_the_example_environment_is_valid_options_for_the_command_in_execstart() -> None:
    variables = environment()
    assert "ECHO_SERVER_NOTIFY_TOKEN" in variables
    command = unit()["Service"]["ExecStart"].split()[1:]
    args = build_parser(variables).parse_args(command)
    assert args.lan is True
    assert args.notify_token == variables["ECHO_SERVER_NOTIFY_TOKEN"]
