"""Autobahn|Testsuite, cases 1-10 and a sample of 12-13, against a real echo_server process:
every case green.

The compression cases (12.*, 13.*: 216 cases of 1,000 messages each, up to 128 KiB) take about
twenty minutes on a busy 2-core machine, so `make test` runs a sample of them (every test data
set, and every permessage-deflate parameter combination of 13.*) and `make conformance` runs all.

The suite runs through conformance/run.py (which starts the server on a free port, runs the
fuzzing client, judges its report, and stops both by PID); these tests call it as a process and
also read its index.json themselves. The suite is installed by conformance/install.sh into
.autobahn/; where it is not installed these tests are skipped, except on CI (env CI set), where
that is a failure. Deselect them with `-m "not conformance"`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(300)]

RUN_PY = REPO / "conformance" / "run.py"
EXIT_GREEN = 0
EXIT_NOT_GREEN = 1
EXIT_BROKEN = 3
EXIT_NOT_INSTALLED = 77
# run.py's own hard limit for the whole 1-10 run (about 30 s when the server conforms), kept
# under pytest's per-test timeout so run.py, not pytest, is the one that stops the processes.
RUN_TIMEOUT_S = 240.0
# How long past its own limit run.py may take to stop its server and fuzzing client.
RUN_GRACE_S = 30.0
GREEN_BEHAVIORS = {"OK"}
GREEN_CLOSE_BEHAVIORS = {"OK", "INFORMATIONAL"}
# The only cases the suite reports on without judging: they may be INFORMATIONAL.
INFORMATIONAL_CASES = re.compile(r"7\.1\.6|7\.13\.\d+")
CASES_1_TO_10 = "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*"  # there is no group 8
# Each of 12.*'s five test data sets with 16-byte messages (12.x.1) and once auto-fragmented
# (12.1.11: 8 KiB in 256-byte frames); 13.x.1, one for each combination of offer and answer
# (context takeover, window bits 9 and 15, several offers), and 13.3.11 (a 9-bit window,
# fragmented). About 15 s; the whole of 12 and 13 about twenty minutes.
COMPRESSION_SAMPLE = (
    "12.1.1",
    "12.1.11",
    "12.2.1",
    "12.3.1",
    "12.5.1",
    *(f"13.{group}.1" for group in range(1, 8)),
    "13.3.11",
)


def run_harness(*args: str) -> subprocess.CompletedProcess[str]:
    """Run conformance/run.py to completion; SIGTERM it by PID if it overruns its own limit."""
    proc = subprocess.Popen(
        [sys.executable, str(RUN_PY), "--quiet", "--timeout", str(RUN_TIMEOUT_S), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S + RUN_GRACE_S)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: run.py turns it into a clean stop of the processes it started.
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=RUN_GRACE_S)
        pytest.fail(f"conformance/run.py overran {RUN_TIMEOUT_S} s:\n{output}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, output)


@pytest.fixture(scope="module")
def suite_installed() -> None:
    """Skip (or, on CI, fail) when conformance/install.sh has not installed a fuzzing client."""
    check = subprocess.run(
        [sys.executable, str(RUN_PY), "--check-installed"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check.returncode == EXIT_NOT_INSTALLED:
        reason = check.stderr.strip()
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run conformance/install.sh first)")
        pytest.skip(reason)
    assert check.returncode == 0, check.stdout + check.stderr


def echo_server_cmd(*options: str) -> str:
    return " ".join([sys.executable, "-m", "echo_server", "ws", "--port", "0", *options])


def not_green_cases(outdir: Path) -> dict[str, tuple[str, str]]:
    """Read the suite's own index.json: every case whose behavior or close is not green."""
    index = json.loads((outdir / "index.json").read_text())
    return {
        case_id: (entry["behavior"], entry["behaviorClose"])
        for cases in index.values()
        for case_id, entry in cases.items()
        if not (
            entry["behavior"] in GREEN_BEHAVIORS
            or (entry["behavior"] == "INFORMATIONAL" and INFORMATIONAL_CASES.fullmatch(case_id))
        )
        or entry["behaviorClose"] not in GREEN_CLOSE_BEHAVIORS
    }


def cases_run(outdir: Path) -> set[str]:
    index = json.loads((outdir / "index.json").read_text())
    return {case_id for cases in index.values() for case_id in cases}


@pytest.mark.usefixtures("suite_installed")
def test_every_case_from_1_to_10_is_green(tmp_path: Path) -> None:
    # run.py's default server: `python -m echo_server ws --port 0 --max-message-size 16MiB`,
    # the limit the 9.* cases (messages of up to 16 MiB) need.
    result = run_harness("--outdir", str(tmp_path), "--cases", CASES_1_TO_10)
    assert result.returncode == EXIT_GREEN, result.stdout
    assert not_green_cases(tmp_path) == {}
    # Groups 1-7, 9 and 10 hold 301 cases; fewer would mean some never ran.
    assert len(cases_run(tmp_path)) == 301, result.stdout


@pytest.mark.usefixtures("suite_installed")
def test_a_sample_of_the_compression_cases_is_green(tmp_path: Path) -> None:
    # The server as it ships: permessage-deflate on.
    result = run_harness("--outdir", str(tmp_path), "--cases", ",".join(COMPRESSION_SAMPLE))
    assert result.returncode == EXIT_GREEN, result.stdout
    assert not_green_cases(tmp_path) == {}
    assert cases_run(tmp_path) == set(COMPRESSION_SAMPLE)


@pytest.mark.usefixtures("suite_installed")
def test_the_compression_cases_are_unimplemented_with_compression_off(tmp_path: Path) -> None:
    # What the sample above would say of a server without permessage-deflate: not green.
    result = run_harness(
        "--outdir",
        str(tmp_path),
        "--cases",
        "12.1.1",
        "--server-cmd",
        echo_server_cmd("--compression", "off"),
    )
    assert result.returncode == EXIT_NOT_GREEN, result.stdout
    assert not_green_cases(tmp_path) == {"12.1.1": ("UNIMPLEMENTED", "OK")}


@pytest.mark.usefixtures("suite_installed")
def test_a_case_the_server_fails_fails_the_run(tmp_path: Path) -> None:
    # A 64 KiB limit makes any conforming server refuse 9.1.2's 256 KiB message (close 1009),
    # which the suite counts as FAILED: this checks the harness, not the server.
    result = run_harness(
        "--outdir",
        str(tmp_path),
        "--cases",
        "9.1.2",
        "--server-cmd",
        echo_server_cmd("--max-message-size", "64KiB"),
    )
    assert result.returncode == EXIT_NOT_GREEN, result.stdout
    assert "9.1.2: FAILED" in result.stdout
    assert set(not_green_cases(tmp_path)) == {"9.1.2"}


@pytest.mark.usefixtures("suite_installed")
def test_a_server_that_never_gets_ready_is_a_broken_run(tmp_path: Path) -> None:
    result = run_harness(
        "--outdir", str(tmp_path), "--server-cmd", f"{sys.executable} -c 'raise SystemExit(4)'"
    )
    assert result.returncode == EXIT_BROKEN, result.stdout
    assert "exited with status 4 before it was ready" in result.stdout


@pytest.mark.usefixtures("suite_installed")
def test_patterns_that_match_no_case_are_a_broken_run(tmp_path: Path) -> None:
    # There is no group 8; wstest would wait forever instead of saying so.
    result = run_harness("--outdir", str(tmp_path), "--cases", "8.*")
    assert result.returncode == EXIT_BROKEN, result.stdout
