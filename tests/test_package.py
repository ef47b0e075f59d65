"""The package as a user installs it: a wheel, in a fresh venv, run from any folder.

The wheel is built from this checkout (`pip wheel`, as `make dist` does) and installed into a
new venv with `--no-index`: nothing is downloaded. Its dependencies come from the project's own
venv, through a .pth file, so that the test needs no network; the package itself (its code and
the page it ships) comes from the wheel alone, and runs from a temporary folder.
"""

from __future__ import annotations

import email
import os
import signal
import site
import subprocess
import sys
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest
from support import REPO, free_ports, wait_until
from websockets.sync.client import connect

BUILD_TIMEOUT_S = 180.0
TIMEOUT_S = 10.0
START_TIMEOUT_S = 20.0
RUNTIME_DEPENDENCIES = {
    "simple-websocket-server",
    "websockets",
    "hiredis",
    "prometheus-client",
    "segno",
    "zeroconf",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(out),
            ".",
        ],
        cwd=REPO,
        check=True,
        timeout=BUILD_TIMEOUT_S,
    )
    (built,) = out.glob("echo_server-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; returns its bin/ folder."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT_S,
    ).stdout.strip()
    # The dependencies, from the project's venv (its folder only: its .pth files do not run).
    (Path(purelib) / "dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
        check=True,
        timeout=BUILD_TIMEOUT_S,
    )
    return root / "bin"


def test_the_wheel_ships_the_page(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "echo_server/www/index.html" in names
    assert any(name.startswith("echo_server/www/") and name.endswith(".js") for name in names)


def test_the_wheel_needs_only_the_runtime_dependencies(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(metadata_name))
    always = {
        requirement.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for requirement in metadata.get_all("Requires-Dist", [])
        if "extra ==" not in requirement
    }
    assert always == RUNTIME_DEPENDENCIES


def test_the_installed_demo_serves_the_page_from_any_folder(
    installed: Path, tmp_path: Path
) -> None:
    web_port, ws_port = free_ports(2)
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    command = [
        str(installed / "echo-server"),
        *("demo", "--port", str(web_port), "--ws-port", str(ws_port)),
    ]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    log = tmp_path / "demo.log"
    with log.open("wb") as output:
        demo = subprocess.Popen(command, cwd=elsewhere, env=env, stdout=output, stderr=output)
    try:
        wait_until(
            lambda: log.read_text(errors="replace").count(" listening on ") >= 2,
            START_TIMEOUT_S,
            f"both servers' ready lines:\n{log}",
        )
        page = fetch(f"http://127.0.0.1:{web_port}/")
        assert b"<!doctype html>" in page.lower()
        with connect(f"ws://127.0.0.1:{ws_port}/", open_timeout=TIMEOUT_S, proxy=None) as ws:
            ws.send("from the wheel")
            assert ws.recv(TIMEOUT_S) == "from the wheel"
    finally:
        demo.send_signal(signal.SIGINT)
        status = demo.wait(TIMEOUT_S)
    assert status == 0, log.read_text()
    assert str(REPO) not in log.read_text()  # nothing came from the checkout


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        body: bytes = response.read()
    return body
