"""Where a server's time goes during a bench scenario (`python -m bench --profile DIR`).

Each Python server is started under bench/profiled.py (cProfile inside its process), which is
told when the measuring window of an echo or fan-out scenario opens and closes, so the profile
covers that window only (other scenarios: the process's whole life). At the server's exit it
writes the statistics (`SCENARIO-PATTERN-SERVER.prof`, pstats format: `python -m pstats`,
snakeviz); this module adds a summary of each (`.summary.txt`): the functions with the most time
of their own, with their calls per message and microseconds per message when the measurement
counted messages, and their share of the profiled time. The C functions are apart from the
Python ones that call them: `send`, `recv_into`, `poll` are the syscalls.

It is a tool for reading the server's hot path, not a measurement: cProfile's cost per call
slows the server and inflates functions called often, so a profiled run's figures are not
comparable with an unprofiled one, and its shares are to be read beside the calls. Node's ws
is not profiled (it is not Python); picows' Cython code is one opaque callback.
"""

from __future__ import annotations

import pstats
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.servers import ServerSpec

TOP_FUNCTIONS = 30
# What a measurement counted, per scenario kind: the "per message" of the summary.
MESSAGE_KEYS = ("messages", "deliveries")


class Profiler:
    """Runs Python servers under cProfile, one profile per (scenario, pattern, server)."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def path(self, scenario: str, pattern: str | None, server: str) -> Path:
        name = "-".join(filter(None, [scenario, pattern, server]))
        return self.out / (name.replace(" ", "_").replace("/", "_") + ".prof")

    def wrap(self, spec: ServerSpec, scenario: str, pattern: str | None) -> ServerSpec:
        """`spec` started under the profiler, if it is a Python server; else `spec` as it is."""
        if spec.argv[0] != sys.executable:
            return spec
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.path(scenario, pattern, spec.name)
        path.unlink(missing_ok=True)
        argv = (sys.executable, "-m", "bench.profiled", str(path), *spec.argv[1:])
        return replace(spec, argv=argv, profiled=True)

    def summarise(self, spec: ServerSpec, result: dict[str, Any]) -> None:
        """Write the summary beside the profile the stopped server `spec` left, if any."""
        if not spec.profiled:
            return
        path = Path(spec.argv[3])  # python -m bench.profiled PATH ...
        if path.is_file():
            messages = next((result[key] for key in MESSAGE_KEYS if result.get(key)), None)
            path.with_suffix(".summary.txt").write_text(summarise(path, messages))


def short(filename: str) -> str:
    """A source file's path from its package on (site-packages/x/y.py -> x/y.py)."""
    for marker in ("site-packages/", "/lib/python3", "wt-", "/work/"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker in ("/lib/python3", "wt-") else tail
    return filename


def summarise(path: Path, messages: int | None, top: int = TOP_FUNCTIONS) -> str:
    """The functions with the most time of their own, as a table."""
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values())
    if not total:
        return "no calls profiled\n"
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    per = f"per message ({messages:,} messages)" if messages else "(no message count)"
    lines = [
        f"{total:.3f} s profiled; the functions with most time of their own, {per}",
        f"{'own %':>6} {'incl %':>7} {'calls':>10} {'calls/msg':>10} {'us/msg':>8}  function",
    ]
    for (filename, line, name), (_, calls, own, inclusive, _) in rows:
        where = f"{short(filename)}:{line}" if line else "(C)"
        per_message = (
            f"{calls / messages:>10.2f} {own / messages * 1e6:>8.2f}" if messages else f"{'':>19}"
        )
        lines.append(
            f"{100 * own / total:>6.1f} {100 * inclusive / total:>7.1f} {calls:>10,} "
            f"{per_message}  {name} {where}"
        )
    return "\n".join(lines) + "\n"
