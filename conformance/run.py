"""Run the Autobahn|Testsuite fuzzing client against a WebSocket server, and judge the result.

This is the harness for the field's conformance suite: cases 1 to 10 (framing, pings, reserved
bits, opcodes, fragmentation, UTF-8, limits, closing) and 12 and 13 (permessage-deflate: 216
cases of 1,000 compressed messages each, with every parameter of RFC 7692). It starts the
server under test on a free port, points the suite's fuzzing client at it, reads the suite's
report back, prints a summary, and exits non-zero unless every case is green. It is bounded in
time and stops everything it started, by PID, however the run ends.

It is not the suite: conformance/install.sh installs that into .autobahn/ (the original `wstest`
on Python 2.7, or `kosoku`, a Python 3 runner of the same case files, where 2.7 is missing).
It uses the standard library only; the server under test brings its own dependencies.

    .venv/bin/python conformance/run.py                      # echo_server, cases 1-10, 12, 13
    .venv/bin/python conformance/run.py --cases "1.*,7.*"    # a few groups
    .venv/bin/python conformance/run.py --server-cmd \\
        ".venv/bin/python conformance/reference_server.py --port 0"

A server command must print a ready line "listening on ws://HOST:PORT/" (as echo_server does);
start it with port 0 so that it picks a free port, and this script reads the port back.

A case is green when its behavior is OK (INFORMATIONAL for the cases the suite itself only
reports on: 7.1.6 and 7.13.*) and its closing behavior is OK or INFORMATIONAL. NON-STRICT is not
green: it means the server did something a strict one would not (failing a whole read for a bad
frame that followed valid messages, for one).

Exit status: 0 every case green; 1 a case is not green or did not run; 2 bad arguments; 3 the
run broke (the server did not start, the runner crashed or timed out); 77 the suite is not
installed (the "skipped" status of automake and friends).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import IO, NoReturn

REPO = Path(__file__).resolve().parent.parent
INSTALL_DIR = REPO / ".autobahn"
DEFAULT_OUTDIR = REPO / "reports" / "autobahn"

# There is no group 8 in the suite (and 11 is not a group either); kosoku refuses a pattern that
# matches no case. 12 and 13 are the compression cases; the server's default has it on.
DEFAULT_CASES = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.*", "13.*")
# The 9.* cases send messages of up to 16 MiB and expect them echoed, so the server under test
# needs a limit that high; echo_server's default (1 MiB) would fail them with 1009 by design.
DEFAULT_SERVER_ARGS = ("-m", "echo_server", "ws", "--port", "0", "--max-message-size", "16MiB")
DEFAULT_AGENT = "echo_server"

GREEN_BEHAVIORS = frozenset({"OK"})
# Cases whose outcome the suite reports without judging it (a timing, a close code choice).
INFORMATIONAL_CASES = re.compile(r"7\.1\.6|7\.13\.\d+")
GREEN_CLOSE_BEHAVIORS = frozenset({"OK", "INFORMATIONAL"})

EXIT_GREEN = 0
EXIT_NOT_GREEN = 1
EXIT_BROKEN = 3
EXIT_NOT_INSTALLED = 77

# The 1-10 cases take well under a minute against a conforming server, 12 and 13 about ten
# minutes more (the fuzzing client, on Python 2, is the slower side); a server that swallows
# messages makes cases wait out their own timeouts (up to 100 s each in 9.*, 480 s in 12.*).
DEFAULT_TIMEOUT_S = 3600.0
SERVER_START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
PROGRESS_INTERVAL_S = 15.0
POLL_INTERVAL_S = 0.5
MAX_TEXT_CHARS = 300
MAX_MISSING_SHOWN = 12
SERVER_LOG_TAIL_LINES = 20

READY_RE = re.compile(r"listening on (wss?)://(\[[^\]]+\]|[^:/\s]+):(\d+)/")
# wstest prints the case list it resolved from the patterns, then one line per case it starts.
WSTEST_CASES_RE = re.compile(r"^Cases = (\[.*\])$", re.MULTILINE)
WSTEST_RUNNING_RE = re.compile(r"Running test case ID (\S+)")
# Where a server listens on every address, the fuzzer connects to loopback.
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}


class HarnessError(Exception):
    """The run itself broke: nothing to judge the server by."""


@dataclass(frozen=True)
class Runner:
    """An installed fuzzing client: `wstest` (Autobahn|Testsuite) or `kosoku`."""

    name: str
    path: Path


@dataclass(frozen=True)
class CaseOutcome:
    """One line of the suite's index.json, plus the case's texts from its own report."""

    case_id: str
    behavior: str
    behavior_close: str
    remote_close_code: int | None
    duration_ms: int
    description: str = ""
    expectation: str = ""
    result: str = ""
    result_close: str = ""

    @property
    def green(self) -> bool:
        behavior_green = self.behavior in GREEN_BEHAVIORS or (
            self.behavior == "INFORMATIONAL" and INFORMATIONAL_CASES.fullmatch(self.case_id)
        )
        return bool(behavior_green) and self.behavior_close in GREEN_CLOSE_BEHAVIORS


def case_sort_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def find_runner(choice: str) -> Runner | None:
    """The fuzzing client to use: what install.sh put in .autobahn/ first, then PATH."""
    names = ("wstest", "kosoku") if choice == "auto" else (choice,)
    for name in names:
        installed = INSTALL_DIR / name / "bin" / name
        if installed.is_file() and os.access(installed, os.X_OK):
            return Runner(name, installed)
        on_path = shutil.which(name)
        if on_path:
            return Runner(name, Path(on_path))
    return None


def split_patterns(text: str) -> list[str]:
    return [pattern.strip() for pattern in text.split(",") if pattern.strip()]


def clear_old_report(outdir: Path) -> None:
    """Remove what an earlier run left, so a stale index.json can never be judged as this run's."""
    patterns = ("index.json", "index.html", "*_case_*.json", "*_case_*.html", "*.log", "spec.json")
    for pattern in patterns:
        for path in outdir.glob(pattern):
            path.unlink()


def start_process(argv: Sequence[str], log: IO[bytes], cwd: Path) -> subprocess.Popen[bytes]:
    # A session of its own, so that stopping it reaches any children it starts (a shell wrapper,
    # a reloader) and a Ctrl-C meant for this script does not reach it first.
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group led by `proc` (its PID), then SIGKILL it if it lingers."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def running(argv: Sequence[str], log_path: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose output goes to `log_path`, stopped by PID when the block ends."""
    with log_path.open("wb") as log:
        try:
            proc = start_process(argv, log, cwd)
        except OSError as error:
            raise HarnessError(f"cannot start {shlex.join(argv)}: {error}") from None
        try:
            yield proc
        finally:
            stop_process(proc)


def wait_for_ready_line(
    proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> tuple[str, str, int]:
    """(scheme, host, port) from the server's ready line; HarnessError if none comes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = READY_RE.search(log_path.read_text(errors="replace"))
        if found:
            scheme, host, port = found.groups()
            return scheme, WILDCARD_HOSTS.get(host, host), int(port)
        if proc.poll() is not None:
            raise HarnessError(
                f"the server exited with status {proc.returncode} before it was ready:\n"
                + tail(log_path)
            )
        time.sleep(0.05)
    raise HarnessError(f"the server printed no ready line in {timeout_s:g} s:\n" + tail(log_path))


def tail(path: Path, lines: int = SERVER_LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "  (no output)"
    kept = text.splitlines()[-lines:]
    return "\n".join("  | " + line for line in kept) if kept else "  (no output)"


def runner_argv(
    runner: Runner,
    url: str,
    *,
    cases: Sequence[str],
    excludes: Sequence[str],
    agent: str,
    outdir: Path,
) -> list[str]:
    if runner.name == "wstest":
        spec = {
            "outdir": str(outdir),
            "servers": [{"agent": agent, "url": url}],
            "cases": list(cases),
            "exclude-cases": list(excludes),
            "exclude-agent-cases": {},
        }
        spec_path = outdir / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=2) + "\n")
        return [str(runner.path), "-m", "fuzzingclient", "-s", str(spec_path)]
    argv = [str(runner.path), "-m", "fuzzingclient", "-o", str(outdir)]
    for pattern in cases:
        argv += ["-i", pattern]
    for pattern in excludes:
        argv += ["-x", pattern]
    return [*argv, url]


def wait_for_runner(
    proc: subprocess.Popen[bytes], log_path: Path, deadline: float, timeout_s: float, quiet: bool
) -> None:
    """Wait for the fuzzing client to finish, saying now and then which case it is on."""
    next_report = time.monotonic() + PROGRESS_INTERVAL_S
    while True:
        try:
            proc.wait(POLL_INTERVAL_S)
            return
        except subprocess.TimeoutExpired:
            pass
        log = log_path.read_text(errors="replace")
        started = WSTEST_RUNNING_RE.findall(log)
        now = time.monotonic()
        if now >= deadline:
            where = f" (last case started: {started[-1]})" if started else ""
            raise HarnessError(f"the run did not finish within --timeout {timeout_s:g} s{where}")
        if expected_cases(log) == []:
            # wstest waits forever when the patterns match no case.
            raise HarnessError("no case matches --cases (there is no group 8, for one)")
        if now >= next_report and started and not quiet:
            print(f"  ... case {started[-1]} ({len(started)} started)", flush=True)
            next_report = now + PROGRESS_INTERVAL_S


def expected_cases(runner_log: str) -> list[str] | None:
    """The case ids wstest resolved from the patterns (None from a runner that does not say)."""
    found = WSTEST_CASES_RE.search(runner_log)
    if not found:
        return None
    cases = ast.literal_eval(found.group(1))
    return [str(case) for case in cases]


def read_text_field(report: dict[str, object], key: str) -> str:
    value = report.get(key, "")
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 3] + "..."


def read_outcomes(index_path: Path) -> dict[str, CaseOutcome]:
    """Every case in the suite's index.json, with the texts of the cases that are not green."""
    outdir = index_path.parent
    index = json.loads(index_path.read_text())
    outcomes: dict[str, CaseOutcome] = {}
    for cases in index.values():
        for case_id, entry in cases.items():
            outcome = CaseOutcome(
                case_id=case_id,
                behavior=str(entry.get("behavior")),
                behavior_close=str(entry.get("behaviorClose")),
                remote_close_code=entry.get("remoteCloseCode"),
                duration_ms=int(entry.get("duration") or 0),
            )
            if not outcome.green:
                # Only the failures are worth opening their (large) case reports for.
                report_path = outdir / str(entry.get("reportfile", ""))
                report = json.loads(report_path.read_text()) if report_path.is_file() else {}
                outcome = replace(
                    outcome,
                    description=read_text_field(report, "description"),
                    expectation=read_text_field(report, "expectation"),
                    result=read_text_field(report, "result"),
                    result_close=read_text_field(report, "resultClose"),
                )
            outcomes[case_id] = outcome
    return outcomes


def summary(
    outcomes: dict[str, CaseOutcome], missing: Sequence[str], elapsed_s: float
) -> list[str]:
    lines = [f"{len(outcomes)} cases in {elapsed_s:.1f} s"]
    for title, counts in (
        ("behavior", Counter(o.behavior for o in outcomes.values())),
        ("behaviorClose", Counter(o.behavior_close for o in outcomes.values())),
    ):
        lines.append(f"  {title}:")
        lines += [f"    {name:<16} {count:>5}" for name, count in counts.most_common()]
    failing = sorted(
        (o for o in outcomes.values() if not o.green), key=lambda o: case_sort_key(o.case_id)
    )
    if failing:
        lines.append(f"  not green ({len(failing)}):")
    for outcome in failing:
        lines += [
            f"    {outcome.case_id}: {outcome.behavior} / close {outcome.behavior_close}"
            f" (server's close code: {outcome.remote_close_code})",
            f"      description: {outcome.description}",
            f"      expectation: {outcome.expectation}",
            f"      result:      {outcome.result}",
            f"      close:       {outcome.result_close}",
        ]
    if missing:
        shown = ", ".join(missing[:MAX_MISSING_SHOWN])
        more = (
            f" and {len(missing) - MAX_MISSING_SHOWN} more"
            if len(missing) > MAX_MISSING_SHOWN
            else ""
        )
        lines.append(f"  did not run ({len(missing)}): {shown}{more}")
    slowest = max(outcomes.values(), key=lambda o: o.duration_ms, default=None)
    if slowest is not None:
        lines.append(f"  slowest case: {slowest.case_id}, {slowest.duration_ms} ms")
    return lines


def run(args: argparse.Namespace) -> int:
    runner = find_runner(args.runner)
    if runner is None:
        wanted = "wstest or kosoku" if args.runner == "auto" else args.runner
        print(
            f"conformance: Autobahn|Testsuite is not installed (no {wanted} in {INSTALL_DIR} "
            "or on PATH); run conformance/install.sh",
            file=sys.stderr,
        )
        return EXIT_NOT_INSTALLED
    if args.check_installed:
        print(f"conformance: {runner.name} is installed: {runner.path}")
        return EXIT_GREEN
    cases = split_patterns(args.cases)
    excludes = split_patterns(args.exclude)
    outdir: Path = args.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    clear_old_report(outdir)
    server_argv = shlex.split(args.server_cmd)
    server_log = outdir / "server.log"
    runner_log = outdir / f"{runner.name}.log"
    print(f"conformance: {runner.name} ({runner.path}), cases {','.join(cases)}", flush=True)
    print(f"conformance: server: {shlex.join(server_argv)}", flush=True)

    began = time.monotonic()
    with running(server_argv, server_log, REPO) as server:
        scheme, host, port = wait_for_ready_line(server, server_log, SERVER_START_TIMEOUT_S)
        url = f"{scheme}://{host}:{port}"
        print(f"conformance: fuzzing {url} (at most {args.timeout:g} s)", flush=True)
        argv = runner_argv(
            runner, url, cases=cases, excludes=excludes, agent=args.agent, outdir=outdir
        )
        with running(argv, runner_log, outdir) as fuzzer:
            wait_for_runner(fuzzer, runner_log, began + args.timeout, args.timeout, args.quiet)
        server_status = server.poll()
    elapsed_s = time.monotonic() - began

    if server_status is not None:
        print(f"conformance: the server exited (status {server_status}) during the run:")
        print(tail(server_log))
    index_path = outdir / "index.json"
    outcomes = read_outcomes(index_path) if index_path.is_file() else {}
    if not outcomes:
        raise HarnessError(
            f"{runner.name} exited with status {fuzzer.returncode} and reported no case"
            f" (did --cases match any?):\n" + tail(runner_log)
        )
    wanted_cases = expected_cases(runner_log.read_text(errors="replace"))
    missing = sorted(set(wanted_cases or ()) - set(outcomes), key=case_sort_key)
    for line in summary(outcomes, missing, elapsed_s):
        print("conformance: " + line if not line.startswith(" ") else line)
    green = sum(outcome.green for outcome in outcomes.values())
    not_green = len(outcomes) - green + len(missing)
    print(f"conformance: full report: {outdir / 'index.html'}")
    print(f"conformance: {green} cases green, {not_green} not")
    return EXIT_GREEN if not_green == 0 and server_status is None else EXIT_NOT_GREEN


def build_parser() -> argparse.ArgumentParser:
    default_server = shlex.join([sys.executable, *DEFAULT_SERVER_ARGS])
    parser = argparse.ArgumentParser(
        description="Run Autobahn|Testsuite cases against a WebSocket server.",
        epilog="exit status: 0 all green, 1 not green, 2 usage, 3 run broke, 77 not installed",
    )
    parser.add_argument(
        "--cases",
        default=",".join(DEFAULT_CASES),
        help="comma-separated case patterns (default: %(default)s)",
    )
    parser.add_argument("--exclude", default="", help="comma-separated case patterns to skip")
    parser.add_argument(
        "--server-cmd",
        default=default_server,
        help="command that starts the server on a free port and prints "
        "'listening on ws://HOST:PORT/' (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="hard limit in seconds for the whole run (default: %(default)s)",
    )
    parser.add_argument(
        "--runner",
        choices=("auto", "wstest", "kosoku"),
        default="auto",
        help="fuzzing client (default: wstest if installed, else kosoku)",
    )
    parser.add_argument(
        "--agent", default=DEFAULT_AGENT, help="server name in wstest's report (%(default)s)"
    )
    parser.add_argument(
        "--outdir",
        type=Path,
        default=DEFAULT_OUTDIR,
        help="where the reports go (default: reports/autobahn)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--check-installed",
        action="store_true",
        help="only say which runner would be used; exit 0, or 77 if none is installed",
    )
    return parser


def stop_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    # Turn SIGTERM into an exception so that the finally blocks stop the server and the runner,
    # which live in sessions of their own and would otherwise outlive this script.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.timeout <= 0:
        build_parser().error("--timeout must be above 0")
    if not shlex.split(args.server_cmd):
        build_parser().error("--server-cmd is empty")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        return run(args)
    except HarnessError as error:
        print(f"conformance: error: {error}", file=sys.stderr)
        return EXIT_BROKEN
    except KeyboardInterrupt:
        print("conformance: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
