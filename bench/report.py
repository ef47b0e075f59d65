"""The bench's results: medians over rounds, ratios to websockets, as a table, JSON and a chart.

`build` turns the raw record of every run into one dictionary (it is what latest.json holds:
the raw runs too, so any figure can be recomputed). `table` renders it for the terminal,
`write_chart` draws the ratios as a bar chart (matplotlib, Agg backend; optional: without
matplotlib the chart is skipped with a note). Nothing here measures anything.

A ratio is "times better than websockets": above 1 is better than websockets. For messages/s
and MB/s that is this server's value / websockets'; for memory per connection and broadcast
time, where less is better, it is websockets' value / this server's.
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
from bench.servers import NODE_WS, ServerSpec, versions

JSON_NAME = "latest.json"
CHART_NAME = "latest.png"
KIB = 1024
# A single-threaded server at this much CPU (in cores) is busy all the time: its own limit.
SATURATED_CORES = 0.9
LOG_TICKS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000)


@dataclass(frozen=True)
class Figure:
    """One of the four headline numbers."""

    scenario: str
    key: str
    title: str
    unit: str
    higher_is_better: bool


FIGURES = (
    Figure("small", "messages_per_s", "small messages", "msg/s", True),
    Figure("large", "mb_per_s", "1 MiB messages", "MB/s", True),
    Figure("idle", "bytes_per_connection", "idle connections", "KiB/conn", False),
    Figure("broadcast", "broadcast_ms", "broadcast", "ms", False),
)

# The other numbers worth a median: (scenario, key in a run, key in the summary).
DETAILS = (
    ("small", "latency_p50_ms", "latency_p50_ms"),
    ("small", "latency_p99_ms", "latency_p99_ms"),
    ("small", "loadgen_cpu_cores", "small_loadgen_cpu_cores"),
    ("small", "server_cpu_cores", "small_server_cpu_cores"),
    ("large", "loadgen_cpu_cores", "large_loadgen_cpu_cores"),
    ("large", "server_cpu_cores", "large_server_cpu_cores"),
    ("large", "latency_p50_ms", "large_latency_p50_ms"),
    ("idle", "open_s", "open_s"),
    ("idle", "sample_p50_ms", "sample_p50_ms"),
    ("idle", "sample_p99_ms", "sample_p99_ms"),
)
PER_SERVER = {figure.scenario for figure in FIGURES}
# The "workers" scenario's medians, under the same keys as in a run.
WORKERS_KEYS = ("messages_per_s", "latency_p50_ms", "server_cpu_cores", "loadgen_cpu_cores")
RATIO_MEANING = (
    "times better than websockets (above 1 is better): value / websockets' for msg/s and "
    "MB/s, websockets' / value for memory per connection and broadcast time"
)


def median_of(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def summarise(runs: Sequence[dict[str, Any]], server: str) -> dict[str, Any]:
    """The medians over rounds of one server's runs, and what failed (per-server scenarios
    only: the cluster scenarios have a summary of their own)."""
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
        f"{run['scenario']} round {run['round']}: {run['error']}"
        for run in mine
        if run.get("error")
    ]
    return summary


def ratio(value: float | None, reference: float | None, higher_is_better: bool) -> float | None:
    if value is None or not reference:
        return None
    if higher_is_better:
        return value / reference
    return reference / value if value > 0 else None


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


def headroom(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The evidence that the load generator was not the limit of the small-message rates.

    Two kinds: node ws, the fastest peer, driven faster than every Python server (the rate the
    generator can reach is then at least that); and every server's CPU during the window: each
    runs its loop on one thread, so a server near one full core is its own limit.
    """
    cpu = {
        name: summary["small_server_cpu_cores"]
        for name, summary in summaries.items()
        if summary.get("small_server_cpu_cores") is not None
    }
    loadgen_cpu = [
        summary["small_loadgen_cpu_cores"]
        for summary in summaries.values()
        if summary.get("small_loadgen_cpu_cores") is not None
    ]
    evidence: dict[str, Any] = {
        "server_cpu_cores": cpu,
        "servers_saturated": bool(cpu) and min(cpu.values()) >= SATURATED_CORES,
        "max_loadgen_cpu_cores": max(loadgen_cpu) if loadgen_cpu else None,
        "node_holds": None,
    }
    node = summaries.get(NODE_WS)
    python = {
        name: summary["messages_per_s"]
        for name, summary in summaries.items()
        if name != NODE_WS and summary.get("messages_per_s") is not None
    }
    if node is None or node.get("messages_per_s") is None or not python:
        return evidence
    fastest = max(python, key=lambda name: python[name])
    return evidence | {
        "node_messages_per_s": node["messages_per_s"],
        "fastest_python": fastest,
        "fastest_python_messages_per_s": python[fastest],
        "factor": node["messages_per_s"] / python[fastest],
        "loadgen_cpu_cores_with_node": node.get("small_loadgen_cpu_cores"),
        "node_holds": node["messages_per_s"] > python[fastest],
    }


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
    reference: str,
    wall_s: float,
    autobahn: dict[str, Any] | None,
    load_at_start: tuple[float, float, float],
) -> dict[str, Any]:
    """Everything latest.json holds: the machine, the plan, the summaries and every raw run."""
    summaries = {spec.name: summarise(runs, spec.name) for spec in servers}
    base = summaries.get(reference, {})
    ratios = {
        name: {
            figure.key: ratio(summary[figure.key], base.get(figure.key), figure.higher_is_better)
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
        "reference": reference,
        "ratio_meaning": RATIO_MEANING,
        "servers": [
            {"name": spec.name, "description": spec.description, "argv": list(spec.argv)}
            for spec in servers
        ],
        "unavailable": unavailable,
        "skipped_scenarios": skipped,
        "summary": summaries,
        "ratios": ratios,
        "headroom": headroom(summaries),
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
        return ""
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.3f}x"


def figure_cell(figure: Figure, summary: dict[str, Any]) -> str:
    value = summary.get(figure.key)
    if figure.key == "bytes_per_connection":
        if summary.get("idle_failed_at") is not None and value is None:
            return f"failed at {summary['idle_failed_at']:,}"
        return number(value / KIB if value is not None else None, 1)
    if value is None and summary.get(f"{figure.scenario}_runs"):
        return "failed"
    return number(value, 0 if figure.key == "messages_per_s" else 1)


def cost_us(summary: dict[str, Any]) -> float | None:
    """The load generator's CPU time per small message, in microseconds."""
    cores, rate = summary["small_loadgen_cpu_cores"], summary["messages_per_s"]
    return cores / rate * 1e6 if cores is not None and rate else None


def table(results: dict[str, Any]) -> str:
    plan = results["plan"]
    head = (
        f"echo_server bench, {results['date']}, {results['machine']['nproc']} CPUs, "
        f"Python {results['machine']['python']}, node {results['machine']['node'] or 'n/a'}"
        + (" (QUICK: a smoke run, not a measurement)" if results["quick"] else "")
    )
    flood = fairness.table_lines(results.get("fairness", {}), plan)
    flood += compression.table_lines(results.get("compression", {}), plan)
    if not any(run["scenario"] in PER_SERVER for run in results["runs"]):
        return "\n".join([head, *flood, *cluster_table(results), *notes(results)])
    headers = [
        f"{plan['small_bytes']} B x{plan['small_connections']} conns x{plan['small_in_flight']}",
        f"{plan['large_bytes'] // 1024**2} MiB x{plan['large_in_flight']} in flight",
        f"{plan['idle_connections']:,} idle conns",
        f"broadcast to {plan['broadcast_subscribers']:,}",
    ]
    units = ["msg/s", "MB/s", "KiB/conn", "ms"]
    lines = [
        head,
        f"medians of {plan['rounds']} rounds ({plan['idle_rounds']} for idle connections); "
        "'vs ws' = times better than websockets (above 1 is better)",
        "",
        f"{'':<24}" + "".join(f"{header:>27}" for header in headers),
        f"{'server':<24}" + "".join(f"{unit:>17}{'vs ws':>10}" for unit in units),
    ]
    for name, summary in results["summary"].items():
        cells = []
        for figure in FIGURES:
            cells.append(f"{figure_cell(figure, summary):>17}")
            cells.append(f"{times(results['ratios'][name][figure.key]):>10}")
        lines.append(f"{name:<24}" + "".join(cells))
    for name, reason in results["unavailable"].items():
        lines.append(f"{name:<24}  n/a: {reason}")

    lines += [
        "",
        f"{'details':<24}{'p50 ms':>10}{'p99 ms':>10}{'gen CPU':>10}{'gen us/msg':>11}"
        f"{'srv CPU':>10}{'1MiB CPU g/s':>14}{'open s':>10}{'sample p50':>12}",
    ]
    for name, summary in results["summary"].items():
        big_cpu = (
            f"{number(summary['large_loadgen_cpu_cores'], 2)}/"
            f"{number(summary['large_server_cpu_cores'], 2)}"
        )
        lines.append(
            f"{name:<24}{number(summary['latency_p50_ms'], 2):>10}"
            f"{number(summary['latency_p99_ms'], 2):>10}"
            f"{number(summary['small_loadgen_cpu_cores'], 2):>10}"
            f"{number(cost_us(summary), 1):>11}"
            f"{number(summary['small_server_cpu_cores'], 2):>10}"
            f"{big_cpu:>14}"
            f"{number(summary['open_s'], 2):>10}"
            f"{number(summary['sample_p50_ms'], 2):>12}"
        )
    lines.append(
        "  CPU in cores (1.00 = one core busy) during the small-message window: gen = the load "
        "generator's processes together, srv = the server; 1MiB CPU g/s: the same, 1 MiB "
        "messages; open s: time to open all idle connections; sample p50: round trip of 32 B "
        "on a sample of them, ms."
    )
    lines += flood
    lines += cluster_table(results)
    lines += notes(results)
    return "\n".join(lines)


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
            f"node ws row: the generator drove node ws at {number(room['node_messages_per_s'])} "
            f"msg/s, {room['factor']:.2f}x the fastest Python server ({room['fastest_python']}, "
            f"{number(room['fastest_python_messages_per_s'])} msg/s): {verdict}. The "
            f"generator's own CPU then: {number(room['loadgen_cpu_cores_with_node'], 2)} cores "
            f"of {nproc}."
        )
    busy = ", ".join(f"{name} {cores:.2f}" for name, cores in room["server_cpu_cores"].items())
    if room["servers_saturated"]:
        lines.append(
            f"server CPU during small messages: {busy} cores. Every server kept its one thread "
            f"busy (>= {SATURATED_CORES}) while the generator used at most "
            f"{number(room['max_loadgen_cpu_cores'], 2)} of {nproc} cores: the servers, not "
            "the generator, set these rates."
        )
    elif busy:
        lines.append(
            f"server CPU during small messages: {busy} cores. Not every server reached "
            f"{SATURATED_CORES} of a core: something else (another process, see the load "
            "average, or the generator) held it back."
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
    head = f"{run['scenario']:<9} {run['server']:<24}"
    if run.get("error"):
        return f"{head} error: {brief(run['error'])}"
    scenario = run["scenario"]
    if scenario in ("small", WORKERS):
        each = "+".join(f"{cores:.2f}" for cores in run["server_cpu_cores_each"])
        return (
            f"{head} {number(run['messages_per_s'])} msg/s, p50 "
            f"{number(run['latency_p50_ms'], 2)} ms, p99 {number(run['latency_p99_ms'], 2)} ms, "
            f"gen CPU {run['loadgen_cpu_cores']:.2f}, server CPU {run['server_cpu_cores']:.2f}"
            + (f" ({each})" if len(run["server_cpu_cores_each"]) > 1 else "")
        )
    if scenario == "large":
        return f"{head} {number(run['mb_per_s'], 1)} MB/s"
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
    """Draw the ratios to websockets as grouped bars; return the path, or why there is none."""
    # matplotlib is optional (the `bench` extra): imported here, so the bench runs without it.
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -e '.[bench]')"

    names = list(results["summary"])
    plan = results["plan"]
    labels = [
        f"{plan['small_bytes']} B messages/s",
        f"{plan['large_bytes'] // 1024**2} MiB MB/s",
        f"memory per conn.\n({plan['idle_connections']:,} idle)",
        f"broadcast time\n(to {plan['broadcast_subscribers']:,})",
    ]
    width = 0.8 / max(1, len(names))
    shown = [value for name in names for value in results["ratios"][name].values() if value]
    # The axis starts a little below the smallest bar (a log axis has no zero).
    floor = min([0.5, *shown]) / 3
    figure, axes = plt.subplots(figsize=(10, 5.5), dpi=110)
    for index, name in enumerate(names):
        summary = results["summary"][name]
        values = [results["ratios"][name][fig.key] for fig in FIGURES]
        xs = [group + (index - (len(names) - 1) / 2) * width for group in range(len(FIGURES))]
        axes.bar(xs, [value or 0 for value in values], width, label=name)
        for x, value, fig in zip(xs, values, FIGURES, strict=True):
            if value:
                text = f"{value:.2f}" if value >= 0.01 else f"{value:.1g}"
                axes.annotate(text, (x, value), ha="center", va="bottom", fontsize=7)
                continue
            if value == 0:
                text = "0"
            elif fig.key == "bytes_per_connection" and summary["idle_failed_at"]:
                text = f"failed at {summary['idle_failed_at']:,}"
            else:
                text = "n/a"
            axes.annotate(text, (x, floor), ha="center", va="bottom", fontsize=7, rotation=90)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_yscale("log")
    top = max([2.0, *shown]) * 2
    axes.set_ylim(floor, top)
    ticks = [tick for tick in LOG_TICKS if floor <= tick <= top]
    axes.set_yticks(ticks, [f"{tick:g}" for tick in ticks])
    axes.minorticks_off()
    axes.set_xticks(range(len(FIGURES)), labels)
    axes.set_ylabel("times better than websockets (log scale; above 1 is better)")
    when = results["date"][:10]
    axes.set_title(
        f"echo_server and peers vs websockets (= 1), {results['machine']['nproc']} CPUs, {when}"
        + (" - QUICK smoke run" if results["quick"] else "")
    )
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(names))
    figure.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / CHART_NAME
    figure.savefig(path)
    plt.close(figure)
    return path
