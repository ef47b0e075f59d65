"""The bench's results: medians over rounds, ratios to the references, as a table, JSON and a chart.

`build` turns the raw record of every run into one dictionary (it is what latest.json holds:
the raw runs too, so any figure can be recomputed). `table` renders it for the terminal,
`write_chart` draws the judged ratios as a bar chart (matplotlib, Agg backend; optional:
without matplotlib the chart is skipped with a note). Nothing here measures anything.

The throughput scenarios (the echo scenarios, each with both generator patterns, and the
fan-out) are "cases". In each, every server has its throughput, p50 and p99 latency, its own
CPU and the generator's, and its throughput per second of its own CPU ("per CPU": messages per
CPU-second, the median over rounds of each run's throughput / CPU). The judged ratio is the
per-CPU one, as "times better than the reference": this server's per-CPU throughput / the
reference's, the references being picows first and websockets second (REFERENCES); the raw
throughput ratio is shown beside it. On a machine where the generator shares the cores, a
server that does not keep its one thread busy (under SATURATED_CORES of a core) is flagged: its
per-CPU figure is still the judged one. For memory per idle connection and broadcast time,
where less is better, the ratio is the reference's value / this server's.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import compression, fairness
from bench.cluster import LAYOUTS, REDIS, WORKERS, redis_server_version, worker_specs
from bench.cluster import SCENARIOS as CLUSTER_SCENARIOS
from bench.fanout import FANOUT
from bench.loadgen import BATCHED, PER_MESSAGE
from bench.nodegen import NODE
from bench.servers import NODE_WS, ServerSpec, versions

JSON_NAME = "latest.json"
CHART_NAME = "latest.png"
KIB = 1024
# A single-threaded server at this much CPU (in cores) is busy all the time: its own limit.
SATURATED_CORES = 0.9
LOG_TICKS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000)
# The generator patterns every echo scenario runs with, in this order.
PATTERNS = (BATCHED, PER_MESSAGE, NODE)
PATTERN_MEANING = {
    BATCHED: "batched: the bench's generator, the messages due on a connection in one write",
    PER_MESSAGE: "per-message: the bench's generator, one write per message (as browsers send)",
    NODE: "node: Node's ws client, one send per message (an independent generator)",
}


@dataclass(frozen=True)
class Case:
    """One throughput row group: a scenario, with one generator pattern for echo scenarios."""

    scenario: str
    pattern: str | None
    key: str  # the throughput, in a run
    unit: str

    @property
    def name(self) -> str:
        return f"{self.scenario} {self.pattern}" if self.pattern else self.scenario


ECHO_KEYS = {"small": ("messages_per_s", "msg/s"), "active": ("messages_per_s", "msg/s"),
             "large": ("mb_per_s", "MB/s")}  # fmt: skip
CASES = (
    *(
        Case(scenario, pattern, key, unit)
        for scenario, (key, unit) in ECHO_KEYS.items()
        for pattern in PATTERNS
    ),
    Case(FANOUT, None, "delivered_per_s", "msg/s"),
)
CASE_KEYS = (
    "latency_p50_ms",
    "latency_p99_ms",
    "server_cpu_cores",
    "server_sys_cores",
    "loadgen_cpu_cores",
)


@dataclass(frozen=True)
class Figure:
    """A per-server figure where less is better: memory per idle connection, broadcast time."""

    scenario: str
    key: str
    title: str
    unit: str


FIGURES = (
    Figure("idle", "bytes_per_connection", "idle connections", "KiB/conn"),
    Figure("broadcast", "broadcast_ms", "broadcast", "ms"),
)

# The other numbers worth a median: (scenario, key in a run, key in the summary).
DETAILS = (
    ("idle", "open_s", "open_s"),
    ("idle", "sample_p50_ms", "sample_p50_ms"),
    ("idle", "sample_p99_ms", "sample_p99_ms"),
)
PER_SERVER = {case.scenario for case in CASES} | {figure.scenario for figure in FIGURES}
# The "workers" scenario's medians, under the same keys as in a run.
WORKERS_KEYS = ("messages_per_s", "latency_p50_ms", "server_cpu_cores", "loadgen_cpu_cores")
RATIO_MEANING = (
    "times better than the reference (above 1 is better). Throughput cases: 'per_cpu' (the "
    "judged one) = this server's throughput per second of its own CPU / the reference's; "
    "'raw' = throughput / the reference's. Memory per idle connection and broadcast time: the "
    "reference's value / this server's."
)


def median_of(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def per_cpu(run: dict[str, Any], key: str) -> float | None:
    """A run's throughput per second of the server's CPU."""
    value, cores = run.get(key), run.get("server_cpu_cores")
    return value / cores if value is not None and cores else None


def case_runs(runs: Sequence[dict[str, Any]], case: Case, server: str) -> list[dict[str, Any]]:
    return [
        run
        for run in runs
        if run["scenario"] == case.scenario
        and run["server"] == server
        and run.get("pattern") == case.pattern
    ]


def case_summary(runs: Sequence[dict[str, Any]], case: Case, server: str) -> dict[str, Any] | None:
    """One server's medians in one case, or None if it did not run there."""
    done = case_runs(runs, case, server)
    if not done:
        return None
    good = [run for run in done if "error" not in run]
    entry: dict[str, Any] = {
        "throughput": median_of([run.get(case.key) for run in good]),
        "per_cpu": median_of([per_cpu(run, case.key) for run in good]),
    }
    entry |= {key: median_of([run.get(key) for run in good]) for key in CASE_KEYS}
    cores = entry["server_cpu_cores"]
    entry["saturated"] = cores is not None and cores >= SATURATED_CORES
    entry["runs"] = len(done)
    entry["failed_runs"] = len(done) - len(good)
    return entry


def ratio(value: float | None, reference: float | None, higher_is_better: bool) -> float | None:
    if value is None or not reference:
        return None
    if higher_is_better:
        return value / reference
    return reference / value if value > 0 else None


def cases_summary(
    runs: Sequence[dict[str, Any]], names: Sequence[str], references: Sequence[str]
) -> dict[str, Any]:
    """Every case that ran: each server's medians and its ratios to each reference."""
    found: dict[str, Any] = {}
    for case in CASES:
        servers = {
            name: entry for name in names if (entry := case_summary(runs, case, name)) is not None
        }
        if not servers:
            continue
        for entry in servers.values():
            entry["ratios"] = {
                reference: {
                    "per_cpu": ratio(
                        entry["per_cpu"], servers.get(reference, {}).get("per_cpu"), True
                    ),
                    "raw": ratio(
                        entry["throughput"], servers.get(reference, {}).get("throughput"), True
                    ),
                }
                for reference in references
            }
        found[case.name] = {
            "scenario": case.scenario,
            "pattern": case.pattern,
            "key": case.key,
            "unit": case.unit,
            "servers": servers,
        }
    return found


def summarise(runs: Sequence[dict[str, Any]], server: str) -> dict[str, Any]:
    """One server's medians over rounds of the less-is-better figures (idle, broadcast), and
    every error of its per-server runs (the cluster scenarios have a summary of their own)."""
    mine = [run for run in runs if run["server"] == server and run["scenario"] in PER_SERVER]
    summary: dict[str, Any] = {}
    for figure in FIGURES:
        done = [run for run in mine if run["scenario"] == figure.scenario]
        summary[figure.key] = median_of([run.get(figure.key) for run in done if "error" not in run])
        summary[f"{figure.scenario}_runs"] = len(done)
    for scenario, key, name in DETAILS:
        done = [run for run in mine if run["scenario"] == scenario and "error" not in run]
        summary[name] = median_of([run.get(key) for run in done])
    failed_at = [run["failed_at"] for run in mine if run.get("failed_at") is not None]
    summary["idle_connections"] = next(
        (run["connections"] for run in mine if "connections" in run), None
    )
    summary["idle_failed_at"] = max(failed_at) if failed_at else None
    summary["errors"] = [
        f"{run['scenario']}{' ' + run['pattern'] if run.get('pattern') else ''} "
        f"round {run['round']}: {run['error']}"
        for run in mine
        if run.get("error")
    ]
    return summary


def cluster_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The cluster scenarios' medians: echo with one worker and with more ("workers", the ratio
    of the second to the first), and the broadcast in each layout ("redis", with what each
    layout adds to the broadcast of one process without Redis)."""

    def of(scenario: str, name: str) -> list[dict[str, Any]]:
        return [run for run in runs if run["scenario"] == scenario and run["server"] == name]

    workers: dict[str, Any] = {}
    for spec in worker_specs():
        done = of(WORKERS, spec.name)
        if done:
            good = [run for run in done if "error" not in run]
            each = [run["server_cpu_cores_each"] for run in good]
            workers[spec.name] = {
                key: median_of([run.get(key) for run in good]) for key in WORKERS_KEYS
            } | {
                # Per process (the supervisor first, then each worker), when the count held.
                "server_cpu_cores_each": [
                    statistics.median(cores) for cores in zip(*each, strict=True)
                ]
                if each and len({len(cores) for cores in each}) == 1
                else None,
                "runs": len(done),
            }
    one, more = (workers.get(spec.name, {}) for spec in worker_specs())
    redis: dict[str, Any] = {}
    for layout in LAYOUTS:
        done = of(REDIS, layout.name)
        if done:
            good = [run for run in done if "error" not in run]
            redis[layout.name] = {
                "broadcast_ms": median_of([run["broadcast_ms"] for run in good]),
                "processes": layout.processes,
                "redis": layout.redis,
                "runs": len(done),
            }
    local = redis.get(LAYOUTS[0].name, {}).get("broadcast_ms")
    for entry in redis.values():
        value = entry["broadcast_ms"]
        entry["added_ms"] = value - local if value is not None and local is not None else None
    return {
        "workers": workers,
        "workers_ratio": ratio(more.get("messages_per_s"), one.get("messages_per_s"), True),
        "redis": redis,
        "errors": [
            f"{run['scenario']} {run['server']} round {run['round']}: {run['error']}"
            for run in runs
            if run["scenario"] in CLUSTER_SCENARIOS and run.get("error")
        ],
    }


def headroom(cases: dict[str, Any]) -> dict[str, Any]:
    """The evidence that the load generator was not the limit of the small batched rates.

    Two kinds: node ws, the fastest peer, driven faster than every Python server (the rate the
    generator can reach is then at least that); and every server's CPU during the window: each
    runs its loop on one thread, so a server near one full core is its own limit.
    """
    servers = cases.get(f"small {BATCHED}", {}).get("servers", {})
    cpu = {
        name: entry["server_cpu_cores"]
        for name, entry in servers.items()
        if entry.get("server_cpu_cores") is not None
    }
    loadgen_cpu = [
        entry["loadgen_cpu_cores"]
        for entry in servers.values()
        if entry.get("loadgen_cpu_cores") is not None
    ]
    evidence: dict[str, Any] = {
        "server_cpu_cores": cpu,
        "servers_saturated": bool(cpu) and min(cpu.values()) >= SATURATED_CORES,
        "max_loadgen_cpu_cores": max(loadgen_cpu) if loadgen_cpu else None,
        "node_holds": None,
    }
    node = servers.get(NODE_WS)
    python = {
        name: entry["throughput"]
        for name, entry in servers.items()
        if name != NODE_WS and entry.get("throughput") is not None
    }
    if node is None or node.get("throughput") is None or not python:
        return evidence
    fastest = max(python, key=lambda name: python[name])
    return evidence | {
        "node_messages_per_s": node["throughput"],
        "fastest_python": fastest,
        "fastest_python_messages_per_s": python[fastest],
        "factor": node["throughput"] / python[fastest],
        "loadgen_cpu_cores_with_node": node.get("loadgen_cpu_cores"),
        "node_holds": node["throughput"] > python[fastest],
    }


def unsaturated(cases: dict[str, Any]) -> list[str]:
    """ "case: server (cores)" for every server that used under SATURATED_CORES in a case."""
    return [
        f"{case}: {name} ({entry['server_cpu_cores']:.2f})"
        for case, found in cases.items()
        for name, entry in found["servers"].items()
        if entry["server_cpu_cores"] is not None and not entry["saturated"]
    ]


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024**2, 1) if memory_kib else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }


def build(
    *,
    plan: dict[str, Any],
    quick: bool,
    servers: Sequence[ServerSpec],
    unavailable: dict[str, str],
    skipped: dict[str, str],
    runs: list[dict[str, Any]],
    references: Sequence[str],
    wall_s: float,
    autobahn: dict[str, Any] | None,
    load_at_start: tuple[float, float, float],
    patterns: Sequence[str] = PATTERNS,
    skipped_patterns: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Everything latest.json holds: the machine, the plan, the summaries and every raw run."""
    names = [spec.name for spec in servers]
    summaries = {name: summarise(runs, name) for name in names}
    cases = cases_summary(runs, names, references)
    ratios = {
        name: {
            figure.key: {
                reference: ratio(
                    summary[figure.key], summaries.get(reference, {}).get(figure.key), False
                )
                for reference in references
            }
            for figure in FIGURES
        }
        for name, summary in summaries.items()
    }
    found_versions = versions() | {"redis-server": redis_server_version()}
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": {
            **machine(),
            "node": found_versions.get("node"),
            # Other work on the machine skews every number: the 1-minute load, before and after.
            "load_average_start": round(load_at_start[0], 2),
            "load_average_end": round(os.getloadavg()[0], 2),
        },
        "versions": found_versions,
        "plan": plan,
        "patterns": {pattern: PATTERN_MEANING[pattern] for pattern in patterns},
        "skipped_patterns": skipped_patterns or {},
        "references": list(references),
        "ratio_meaning": RATIO_MEANING,
        "servers": [
            {"name": spec.name, "description": spec.description, "argv": list(spec.argv)}
            for spec in servers
        ],
        "unavailable": unavailable,
        "skipped_scenarios": skipped,
        "cases": cases,
        "summary": summaries,
        "ratios": ratios,
        "unsaturated": unsaturated(cases),
        "headroom": headroom(cases),
        "cluster": cluster_summary(runs),
        "fairness": fairness.summary(runs),
        "compression": compression.summary(runs),
        "autobahn": autobahn,
        "wall_s": round(wall_s, 1),
        "runs": runs,
    }


def write_json(results: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / JSON_NAME
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path


# The terminal table.


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def times(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.3f}x"


def percent(part: float | None, whole: float | None) -> str:
    return "n/a" if part is None or not whole else f"{100 * part / whole:.0f}%"


def case_title(case: dict[str, Any], plan: dict[str, Any]) -> str:
    """What a case measured, in words."""
    scenario, pattern = case["scenario"], case["pattern"]
    if scenario == "small":
        what = (
            f"{plan['small_bytes']} B echo, {plan['small_connections']:,} connections x "
            f"{plan['small_in_flight']} in flight"
        )
    elif scenario == "active":
        what = (
            f"{plan['small_bytes']} B echo, {plan['active_connections']:,} active connections "
            f"x {plan['active_in_flight']} in flight"
        )
    elif scenario == "large":
        what = (
            f"{plan['large_bytes'] // 1024**2} MiB binary echo, 1 connection x "
            f"{plan['large_in_flight']} in flight"
        )
    else:
        what = (
            f"fan-out: {plan['fanout_subscribers']:,} /chat subscribers, one publisher "
            f"keeping {plan['fanout_in_flight']} messages of 32 B in flight (one write each); "
            "deliveries/s, latency publish to subscriber"
        )
    return f"{what}, {PATTERN_MEANING[pattern]}" if pattern else what


def case_lines(name: str, case: dict[str, Any], plan: dict[str, Any], refs: list[str]) -> list[str]:
    unit = case["unit"]
    digits = 1 if unit == "MB/s" else 0
    lines = [
        "",
        f"[{name}] {case_title(case, plan)}",
        f"{'server':<25}{unit:>12}{'p50 ms':>9}{'p99 ms':>9}{'srv CPU':>9}{'sys':>6}"
        f"{'gen CPU':>9}"
        f"{unit.split('/')[0] + '/CPU-s':>14}"
        + "".join(f"{'vs ' + ref + ' cpu/raw':>24}" for ref in refs),
    ]
    for server, entry in case["servers"].items():
        cores = entry["server_cpu_cores"]
        flag = "" if cores is None or entry["saturated"] else "*"
        cells = [
            f"{number(entry['throughput'], digits):>12}",
            f"{number(entry['latency_p50_ms'], 2):>9}",
            f"{number(entry['latency_p99_ms'], 2):>9}",
            f"{number(cores, 2) + flag:>9}",
            f"{percent(entry['server_sys_cores'], cores):>6}",
            f"{number(entry['loadgen_cpu_cores'], 2):>9}",
            f"{number(entry['per_cpu'], digits):>14}",
        ]
        for ref in refs:
            found = entry["ratios"][ref]
            cells.append(f"{times(found['per_cpu']) + ' / ' + times(found['raw']):>24}")
        failed = (
            f"  ({entry['failed_runs']} of {entry['runs']} failed)" if entry["failed_runs"] else ""
        )
        lines.append(f"{server:<25}" + "".join(cells) + failed)
    return lines


def figure_cell(figure: Figure, summary: dict[str, Any]) -> str:
    value = summary.get(figure.key)
    if figure.key == "bytes_per_connection":
        if summary.get("idle_failed_at") is not None and value is None:
            return f"failed at {summary['idle_failed_at']:,}"
        return number(value / KIB if value is not None else None, 1)
    if value is None and summary.get(f"{figure.scenario}_runs"):
        return "failed"
    return number(value, 1)


def table(results: dict[str, Any]) -> str:
    plan = results["plan"]
    refs = results["references"]
    head = (
        f"echo_server bench, {results['date']}, {results['machine']['nproc']} CPUs, "
        f"Python {results['machine']['python']}, node {results['machine']['node'] or 'n/a'}"
        + (" (QUICK: a smoke run, not a measurement)" if results["quick"] else "")
    )
    lines = [
        head,
        f"medians of {plan['rounds']} rounds ({plan['idle_rounds']} for idle connections), the "
        "servers interleaved in each round.",
        "Judged: throughput per second of the server's own CPU (X/CPU-s), as 'vs REF cpu': times "
        f"that of {' and of '.join(refs)} (above 1 is better); 'raw' = the throughput ratio. "
        f"CPU in cores of {results['machine']['nproc']}: srv = the server's processes (sys: "
        "the share of it in the kernel: send, recv, epoll), gen = the load generator's; "
        f"'*' = the server used under {SATURATED_CORES} of a core (not "
        "its own limit: its per-CPU ratio is still the judged one).",
    ]
    for name, case in results["cases"].items():
        lines += case_lines(name, case, plan, refs)
    for name, reason in results["unavailable"].items():
        lines.append(f"{name}: n/a: {reason}")
    for pattern, reason in results["skipped_patterns"].items():
        lines.append(f"generator pattern {pattern}: n/a: {reason}")
    if any(
        results["summary"][name][f"{figure.scenario}_runs"]
        for name in results["summary"]
        for figure in FIGURES
    ):
        lines += figure_lines(results)
    lines += fairness.table_lines(results.get("fairness", {}), plan)
    lines += compression.table_lines(results.get("compression", {}), plan)
    lines += cluster_table(results)
    lines += notes(results)
    return "\n".join(lines)


def figure_lines(results: dict[str, Any]) -> list[str]:
    """Memory per idle connection and the one-message broadcast: less is better."""
    plan, refs = results["plan"], results["references"]
    lines = [
        "",
        f"{'':<25}{plan['idle_connections']:,} idle connections".ljust(25 + 50)
        + f"one /chat message to {plan['broadcast_subscribers']:,}",
        f"{'server':<25}{'KiB/conn':>12}"
        + "".join(f"{'vs ' + ref:>14}" for ref in refs)
        + f"{'open s':>9}{'sample p50':>11}{'ms':>10}"
        + "".join(f"{'vs ' + ref:>14}" for ref in refs),
    ]
    for name, summary in results["summary"].items():
        ratios = results["ratios"][name]
        idle, broadcast = FIGURES
        lines.append(
            f"{name:<25}{figure_cell(idle, summary):>12}"
            + "".join(f"{times(ratios[idle.key][ref]):>14}" for ref in refs)
            + f"{number(summary['open_s'], 2):>9}{number(summary['sample_p50_ms'], 2):>11}"
            + f"{figure_cell(broadcast, summary):>10}"
            + "".join(f"{times(ratios[broadcast.key][ref]):>14}" for ref in refs)
        )
    lines.append(
        "  idle: resident memory per open idle connection; open s: time to open them all; "
        "sample p50: round trip of 32 B on a sample of them, ms. broadcast: one message, "
        "until the last subscriber has it. Less is better: 'vs' = the reference's / this one's."
    )
    return lines


def cluster_table(results: dict[str, Any]) -> list[str]:
    """The cluster rows: echo_server with one worker and with more; broadcast through Redis."""
    plan, found = results["plan"], results["cluster"]
    lines: list[str] = []
    if found["workers"]:
        lines += [
            "",
            f"{'workers':<24}{'msg/s':>17}{'vs 1':>10}{'p50 ms':>10}{'srv CPU':>10}"
            f"{'gen CPU':>10}  per process",
        ]
        for index, (name, entry) in enumerate(found["workers"].items()):
            versus = times(found["workers_ratio"]) if index else "1.00x"
            each = entry["server_cpu_cores_each"] or []
            lines.append(
                f"{name:<24}{number(entry['messages_per_s']):>17}{versus:>10}"
                f"{number(entry['latency_p50_ms'], 2):>10}"
                f"{number(entry['server_cpu_cores'], 2):>10}"
                f"{number(entry['loadgen_cpu_cores'], 2):>10}  "
                + ("+".join(f"{cores:.2f}" for cores in each) if len(each) > 1 else "")
            )
        lines.append(
            f"  {plan['small_bytes']} B echo on {plan['small_connections']} connections x"
            f"{plan['small_in_flight']} in flight; srv CPU: the server's processes together "
            "(per process: the supervisor, then each worker), gen CPU: the load generator's, "
            f"in cores of {results['machine']['nproc']}."
        )
    if found["redis"]:
        lines += [
            "",
            f"{'broadcast layout':<24}{'ms to ' + format(plan['broadcast_subscribers'], ','):>17}"
            f"{'+ms':>10}",
        ]
        for name, entry in found["redis"].items():
            added = entry["added_ms"]
            lines.append(
                f"{name:<24}{number(entry['broadcast_ms'], 1):>17}"
                f"{'' if added is None or not entry['redis'] else f'{added:+.1f}':>10}"
            )
        lines.append(
            "  one chat message, published on the first process, until the last subscriber "
            "has it; the subscribers are split evenly between the processes. +ms: over the "
            "layout without Redis."
        )
    for scenario, reason in results["skipped_scenarios"].items():
        lines.append(f"{scenario}: n/a: {reason}")
    return lines


def notes(results: dict[str, Any]) -> list[str]:
    lines = [""]
    room = results["headroom"]
    nproc = results["machine"]["nproc"]
    if room["node_holds"] is None:
        lines.append("node ws row: not shown (node ws did not run, or no Python server did)")
    else:
        verdict = (
            "higher than every Python server, so the generator is not their limit"
            if room["node_holds"]
            else "NOT higher than every Python server: this row alone does not show headroom"
        )
        lines.append(
            f"node ws row (small batched): the generator drove node ws at "
            f"{number(room['node_messages_per_s'])} msg/s, {room['factor']:.2f}x the fastest "
            f"Python server ({room['fastest_python']}, "
            f"{number(room['fastest_python_messages_per_s'])} msg/s): {verdict}. The "
            f"generator's own CPU then: {number(room['loadgen_cpu_cores_with_node'], 2)} cores "
            f"of {nproc}."
        )
    if results["unsaturated"]:
        lines.append(
            f"under {SATURATED_CORES} of a core (the generator, or another process, held them "
            "back; their per-CPU figure is the judged one, the raw one is beside it): "
            + "; ".join(results["unsaturated"])
        )
    elif results["cases"]:
        lines.append(
            f"every server kept its thread busy (>= {SATURATED_CORES} of a core) in every "
            "case: the servers, not the generator, set these rates."
        )
    load = (results["machine"]["load_average_start"], results["machine"]["load_average_end"])
    lines.append(f"machine load average (1 min) at start and end: {load[0]}, {load[1]}")
    for name, summary in results["summary"].items():
        for error in summary["errors"][:4]:
            lines.append(f"{name}: {brief(error)}")
    for error in results["cluster"]["errors"][:4]:
        lines.append(brief(error))
    for name, timing in (results["autobahn"] or {}).items():
        lines.append(
            f"autobahn {timing['cases']} {name}: {number(timing['cases_seconds'], 1)} s of cases, "
            f"{timing['seconds']:.1f} s in all, exit status {timing['exit_status']}"
        )
    return lines


def brief(error: str, limit: int = 300) -> str:
    """An error on one line: its first line and, for a traceback, its last."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    text = lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(run: dict[str, Any]) -> str:
    """A run as one progress line."""
    scenario = run["scenario"]
    label = f"{scenario} {run['pattern']}" if run.get("pattern") else scenario
    head = f"{label:<21} {run['server']:<24}"
    if run.get("error"):
        return f"{head} error: {brief(run['error'])}"
    if scenario in ("small", "active", "large", WORKERS, FANOUT):
        key = {"large": "mb_per_s", FANOUT: "delivered_per_s"}.get(scenario, "messages_per_s")
        unit = "MB/s" if scenario == "large" else "msg/s"
        each = run.get("server_cpu_cores_each", [])
        return (
            f"{head} {number(run[key], 1 if scenario == 'large' else 0)} {unit}, "
            f"per CPU-s {number(per_cpu(run, key))}, p50 {number(run['latency_p50_ms'], 2)} ms, "
            f"p99 {number(run['latency_p99_ms'], 2)} ms, gen CPU {run['loadgen_cpu_cores']:.2f}, "
            f"server CPU {run['server_cpu_cores']:.2f}"
            + (f" ({'+'.join(f'{cores:.2f}' for cores in each)})" if len(each) > 1 else "")
        )
    if scenario == "idle":
        if run.get("failed_at") is not None:
            return f"{head} failed at {run['failed_at']:,}: {run.get('failure', '')[:200]}"
        return (
            f"{head} {number(run['bytes_per_connection'] / KIB, 1)} KiB/conn, "
            f"{run['opened']:,} opened in {run['open_s']:.2f} s, sample "
            f"{run['sample_echoes']}/{run['sample_expected']} echoed"
        )
    if scenario in compression.SCENARIOS:
        return compression.one_line(head, run)
    if scenario == fairness.FLOOD:
        return (
            f"{head} bystander worst {number(run['bystander_max_ms'], 1)} ms, p99 "
            f"{number(run['bystander_p99_ms'], 1)} ms over {run['probes']} echoes; flood "
            f"{number(run['flood_delivered_per_s'])} msg/s delivered"
            + (
                f"; flooder closed: {brief(run['flooder_closed'], 80)}"
                if run["flooder_closed"]
                else ""
            )
        )
    return f"{head} {number(run['broadcast_ms'], 2)} ms to {run['subscribers']:,}"


# The chart.


def write_chart(results: dict[str, Any], out: Path) -> Path | str:
    """Draw the judged ratios to the first reference that ran as grouped bars, one group per
    case (per-CPU) and for idle memory and broadcast time; return the path, or why there is
    none."""
    # matplotlib is optional (the `bench` extra): imported here, so the bench runs without it.
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -e '.[bench]')"

    names = list(results["summary"])
    ran = set(names)
    reference = next((ref for ref in results["references"] if ref in ran), None)
    if reference is None:
        return "chart skipped: no reference server ran"
    plan = results["plan"]
    groups: list[tuple[str, dict[str, float | None]]] = []
    for case_name, case in results["cases"].items():
        label = case_name.replace(" ", "\n", 1) + ("\nper CPU-s" if case["pattern"] is None else "")
        values = {
            name: entry["ratios"][reference]["per_cpu"] for name, entry in case["servers"].items()
        }
        groups.append((label, values))
    for figure in FIGURES:
        if any(results["summary"][name][f"{figure.scenario}_runs"] for name in names):
            label = (
                f"memory/conn.\n({plan['idle_connections']:,} idle)"
                if figure.scenario == "idle"
                else f"broadcast time\n(to {plan['broadcast_subscribers']:,})"
            )
            groups.append(
                (label, {name: results["ratios"][name][figure.key][reference] for name in names})
            )
    width = 0.8 / max(1, len(names))
    shown = [value for _, found in groups for value in found.values() if value]
    # The axis starts a little below the smallest bar (a log axis has no zero).
    floor = min([0.5, *shown]) / 3
    figure, axes = plt.subplots(figsize=(max(10, 1.3 * len(groups)), 5.5), dpi=110)
    for index, name in enumerate(names):
        xs = [group + (index - (len(names) - 1) / 2) * width for group in range(len(groups))]
        bars = [found.get(name) for _, found in groups]
        axes.bar(xs, [value or 0 for value in bars], width, label=name)
        for x, value in zip(xs, bars, strict=True):
            if value:
                text = f"{value:.2f}" if value >= 0.01 else f"{value:.1g}"
                axes.annotate(text, (x, value), ha="center", va="bottom", fontsize=6)
            else:
                axes.annotate("n/a", (x, floor), ha="center", va="bottom", fontsize=6, rotation=90)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_yscale("log")
    top = max([2.0, *shown]) * 2
    axes.set_ylim(floor, top)
    ticks = [tick for tick in LOG_TICKS if floor <= tick <= top]
    axes.set_yticks(ticks, [f"{tick:g}" for tick in ticks])
    axes.minorticks_off()
    axes.set_xticks(range(len(groups)), [label for label, _ in groups], fontsize=7)
    axes.set_ylabel(f"times better than {reference} (log; throughput per CPU-second)")
    when = results["date"][:10]
    axes.set_title(
        f"echo_server and peers vs {reference} (= 1), {results['machine']['nproc']} CPUs, {when}"
        + (" - QUICK smoke run" if results["quick"] else "")
    )
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(names))
    figure.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / CHART_NAME
    figure.savefig(path)
    plt.close(figure)
    return path
