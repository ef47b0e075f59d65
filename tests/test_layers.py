"""The layer check of `make lint` (import-linter's contracts in pyproject.toml): what it rejects.

The contracts are run on the package as it is (they must hold), and on copies of it with one
import added, the way a change could bring the knot back: an upward import (also under
`if TYPE_CHECKING:`), a cycle inside a layer, a module that belongs to no layer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
TIMEOUT_S = 120.0


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the contracts of `root`/pyproject.toml on `root`/echo_server."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The package and its contracts, copied, to be broken on purpose."""
    shutil.copytree(
        REPO / "echo_server", tmp_path / "echo_server", ignore=shutil.ignore_patterns("www")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_line(module: Path, line: str) -> None:
    text = module.read_text()
    marker = "from __future__ import annotations\n"
    module.write_text(text.replace(marker, marker + line + "\n", 1))


def test_the_package_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_core_module_importing_the_app_is_rejected(copy: Path) -> None:
    add_line(copy / "echo_server/core/connection.py", "from echo_server.app import broadcast")
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "echo_server.core.connection -> echo_server.app.broadcast" in result.stdout


def test_an_upward_import_only_for_type_hints_is_rejected_too(copy: Path) -> None:
    add_line(
        copy / "echo_server/core/server.py",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from echo_server.app.app import App",
    )
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "echo_server.core.server -> echo_server.app.app" in result.stdout


def test_the_protocol_layer_importing_the_loop_is_rejected(copy: Path) -> None:
    add_line(copy / "echo_server/protocol/frames.py", "from echo_server.core import loop")
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "echo_server.protocol.frames -> echo_server.core.loop" in result.stdout


def test_a_cycle_inside_a_layer_is_rejected(copy: Path) -> None:
    add_line(copy / "echo_server/core/loop.py", "from echo_server.core import server")
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "echo_server.core.loop -> echo_server.core.server" in result.stdout


def test_a_module_in_no_layer_is_rejected(copy: Path) -> None:
    (copy / "echo_server/core/stray.py").write_text('"""Belongs nowhere."""\n')
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "echo_server.core.stray" in result.stdout
