"""`python -m bench` (`make bench`): run every scenario against every server, interleaved.

Rounds interleave the servers (A B C D, A B C D, ...) so that a change in the machine's load
during the run spreads over all of them instead of landing on one. The echo scenarios (small,
active, large) run once per generator pattern (report.PATTERNS: batched and per-message from
the bench's generator, node from Node's ws client), each pattern over every server in turn.
Each measurement gets a fresh server process, so no scenario inherits another's memory or
connections. The cluster scenarios
(bench/cluster.py) are echo_server's alone: their rounds run its variants (one worker and two;
with and without Redis) instead of the peers. The report is the median over rounds; `--quick`
is a smoke run (one round, short, small) that checks the bench works and writes its JSON.

Exit status: 0 the bench ran (servers that could not run a scenario are results, not errors);
1 no server could run at all; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench import cluster, compression, fairness, fanout, loadgen, nodegen, profile, report
from bench.servers import (
    ECHO_SERVER,
    REFERENCES,
    RunningServer,
    ServerSpec,
    all_servers,
    autobahn_timing,
    node_ws_unavailable,
    raise_open_files_limit,
    start_server,
    unavailable,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
SMALL = "small"
ACTIVE = "active"
LARGE = "large"
IDLE = "idle"
BROADCAST = "broadcast"
ECHO = (SMALL, ACTIVE, LARGE)  # each runs once per generator pattern
PER_SERVER = (SMALL, ACTIVE, LARGE, IDLE, BROADCAST, *fanout.SCENARIOS)
SCENARIOS = (*PER_SERVER, *fairness.SCENARIOS, *compression.SCENARIOS, *cluster.SCENARIOS)
# Scenarios run fewer rounds than the others (plan.idle_rounds): each opens 10,000 connections.
FEWER_ROUNDS = (IDLE, compression.DEFLATE_IDLE)


@dataclass(frozen=True)
class Plan:
    """Every size and duration of one bench run."""

    rounds: int = 5
    processes: int = 2
    warmup_s: float = 0.5
    small_connections: int = 50
    small_in_flight: int = 8
    small_bytes: int = 32
    small_duration_s: float = 3.0
    active_connections: int = 1_000
    active_in_flight: int = 1
    active_duration_s: float = 3.0
    large_bytes: int = MIB
    large_in_flight: int = 2
    large_duration_s: float = 3.0
    idle_connections: int = 10_000
    idle_sample: int = 100
    idle_sample_rounds: int = 5
    idle_rounds: int = 3  # the most expensive scenario: fewer rounds than the others
    broadcast_subscribers: int = 1_000
    broadcast_messages: int = 20
    broadcast_warmup_messages: int = 2
    fanout_subscribers: int = 1_000
    fanout_in_flight: int = 8
    fanout_duration_s: float = 3.0
    fanout_sample_every: int = 10
    flood_subscribers: int = 100
    flood_warmup_s: float = 0.5
    flood_duration_s: float = 3.0
    flood_probe_interval_s: float = 0.005
    flood_probe_timeout_s: float = 10.0
    open_timeout_s: float = 60.0
    delivery_timeout_s: float = 10.0


# The smoke run of `make test`: every case once, short, but long enough that on a busy machine
# every server still gets an echo back and a measurable slice of CPU in each window.
QUICK = Plan(
    rounds=1,
    warmup_s=0.2,
    small_duration_s=0.5,
    active_connections=50,  # the machinery of the 1,000, at a size that opens fast anywhere
    active_duration_s=0.5,
    large_duration_s=0.5,
    idle_connections=200,
    idle_sample=50,
    idle_sample_rounds=2,
    idle_rounds=1,
    broadcast_subscribers=100,
    broadcast_messages=5,
    broadcast_warmup_messages=1,
    fanout_subscribers=50,
    fanout_duration_s=0.5,
    flood_warmup_s=0.2,
    flood_duration_s=1.0,
    flood_probe_timeout_s=0.5,
    open_timeout_s=20.0,
    delivery_timeout_s=5.0,
)


def echo_plan(plan: Plan, scenario: str, pattern: str) -> loadgen.EchoPlan:
    """The load of one echo scenario (small, active, large; "workers" is the small one)."""
    connections, in_flight, opcode, size, duration_s = {
        SMALL: (plan.small_connections, plan.small_in_flight, loadgen.OP_TEXT, plan.small_bytes,
                plan.small_duration_s),
        ACTIVE: (plan.active_connections, plan.active_in_flight, loadgen.OP_TEXT,
                 plan.small_bytes, plan.active_duration_s),
        LARGE: (1, plan.large_in_flight, loadgen.OP_BINARY, plan.large_bytes,
                plan.large_duration_s),
    }[SMALL if scenario == cluster.WORKERS else scenario]  # fmt: skip
    return loadgen.EchoPlan(
        "/",
        connections,
        in_flight,
        opcode,
        size,
        plan.warmup_s,
        duration_s,
        plan.processes,
        plan.open_timeout_s,
        pattern,
    )


def scenario_runner(
    plan: Plan, scenario: str, pattern: str = loadgen.BATCHED
) -> Callable[[RunningServer], dict[str, Any]]:
    if scenario in (*ECHO, cluster.WORKERS):
        echo = echo_plan(plan, scenario, pattern)
        if pattern == nodegen.NODE:
            return lambda server: nodegen.run_echo_node(server, echo)
        return lambda server: loadgen.run_echo(server, echo)
    if scenario == fanout.FANOUT:
        fan = fanout.FanoutPlan(
            "/chat",
            plan.fanout_subscribers,
            plan.fanout_in_flight,
            plan.warmup_s,
            plan.fanout_duration_s,
            plan.processes,
            plan.fanout_sample_every,
            plan.open_timeout_s,
            plan.delivery_timeout_s,
        )
        return lambda server: fanout.run_fanout(server, fan)
    if scenario == IDLE:
        idle = loadgen.IdlePlan(
            plan.idle_connections,
            plan.idle_sample,
            plan.idle_sample_rounds,
            plan.processes,
            plan.open_timeout_s,
        )
        return lambda server: loadgen.run_idle(server, idle)
    if scenario == fairness.FLOOD:
        flood = fairness.FloodPlan(
            plan.flood_subscribers,
            plan.flood_warmup_s,
            plan.flood_duration_s,
            plan.flood_probe_interval_s,
            plan.flood_probe_timeout_s,
            plan.open_timeout_s,
        )
        return lambda server: fairness.run_flood(server, flood)
    broadcast = broadcast_plan(plan)
    return lambda server: loadgen.run_broadcast([server], broadcast)


def broadcast_plan(plan: Plan) -> loadgen.BroadcastPlan:
    return loadgen.BroadcastPlan(
        "/chat",
        plan.broadcast_subscribers,
        plan.broadcast_messages,
        plan.broadcast_warmup_messages,
        plan.processes,
        plan.open_timeout_s,
        plan.delivery_timeout_s,
    )


def measure(
    spec: ServerSpec,
    scenario: str,
    plan: Plan,
    pattern: str | None = None,
    profiler: profile.Profiler | None = None,
) -> dict[str, Any]:
    """One scenario against a fresh process of one server; a failure is a result. With a
    `profiler`, a Python server runs under cProfile (bench/profiled.py)."""
    head = {"pattern": pattern} if pattern else {}
    if profiler is not None:
        spec = profiler.wrap(spec, scenario, pattern)
    try:
        server = start_server(spec)
    except RuntimeError as error:
        return head | {"error": f"did not start: {error}"}
    result: dict[str, Any] = {}
    try:
        result = scenario_runner(plan, scenario, pattern or loadgen.BATCHED)(server)
        return head | result
    except (loadgen.BenchError, OSError) as error:
        alive = server.alive()
        status = "" if alive else f" (server exited with status {server.exit_status()})"
        return head | {"error": f"{error}{status}"}
    finally:
        server.stop()
        if profiler is not None:
            profiler.summarise(spec, result)


def measure_layout(layout: cluster.Layout, plan: Plan) -> dict[str, Any]:
    """The broadcast across the fresh processes of one cluster layout; a failure is a result."""
    try:
        with cluster.layout_servers(layout) as servers:
            try:
                return loadgen.run_broadcast(servers, broadcast_plan(plan))
            except (loadgen.BenchError, OSError) as error:
                gone = [str(server.exit_status()) for server in servers if not server.alive()]
                status = f" (server exited with status {', '.join(gone)})" if gone else ""
                return {"error": f"{error}{status}"}
    except RuntimeError as error:
        return {"error": f"did not start: {error}"}


def round_measurements(
    plan: Plan,
    servers: Sequence[ServerSpec],
    scenario: str,
    patterns: Sequence[str] = report.PATTERNS,
    profiler: profile.Profiler | None = None,
) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """What one round of `scenario` measures: (name in the report, measurement) pairs; an echo
    scenario once per pattern, every server in turn."""
    if scenario == cluster.REDIS:
        return [(layout.name, partial(measure_layout, layout, plan)) for layout in cluster.LAYOUTS]
    if scenario in compression.SCENARIOS:
        deflate = compression.DeflatePlan(
            plan.small_connections,
            plan.small_in_flight,
            plan.warmup_s,
            plan.small_duration_s,
            plan.idle_connections,
            plan.processes,
            plan.open_timeout_s,
            plan.delivery_timeout_s,
        )
        return compression.round_measurements(deflate, servers, scenario)
    if scenario in ECHO:
        return [
            (spec.name, partial(measure, spec, scenario, plan, pattern, profiler))
            for pattern in patterns
            for spec in servers
        ]
    if scenario == cluster.WORKERS:
        specs = cluster.worker_specs()
    elif scenario == fairness.FLOOD:
        specs = fairness.flood_specs(servers)
    elif scenario == fanout.FANOUT:
        specs = fanout.fanout_specs(servers)
    else:
        specs = list(servers)
    return [(spec.name, partial(measure, spec, scenario, plan, None, profiler)) for spec in specs]


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(
    plan: Plan,
    servers: Sequence[ServerSpec],
    scenarios: Sequence[str],
    patterns: Sequence[str] = report.PATTERNS,
    profiler: profile.Profiler | None = None,
) -> list[dict[str, Any]]:
    """Every round, every scenario, every server in turn; the raw record of each run."""
    runs: list[dict[str, Any]] = []
    for round_index in range(plan.rounds):
        for scenario in scenarios:
            if scenario in FEWER_ROUNDS and round_index >= plan.idle_rounds:
                continue
            measurements = round_measurements(plan, servers, scenario, patterns, profiler)
            for name, measurement in measurements:
                started = time.monotonic()
                result = measurement()
                record = {"round": round_index + 1, "scenario": scenario, "server": name}
                record |= result
                record["wall_s"] = round(time.monotonic() - started, 3)
                runs.append(record)
                progress(f"round {round_index + 1}/{plan.rounds} {report.one_line(record)}")
    return runs


def scenarios_skipped(scenarios: Sequence[str], servers: Sequence[ServerSpec]) -> dict[str, str]:
    """The cluster scenarios that cannot run, and why: they are echo_server's, and "redis"
    needs redis-server."""
    skipped: dict[str, str] = {}
    wanted = [scenario for scenario in scenarios if scenario in cluster.SCENARIOS]
    if ECHO_SERVER not in {spec.name for spec in servers}:
        return dict.fromkeys(wanted, f"{ECHO_SERVER} is not among the servers to run")
    if cluster.REDIS in wanted:
        reason = cluster.redis_unavailable()
        if reason is not None:
            skipped[cluster.REDIS] = reason
    return skipped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark echo_server against picows, websockets, simple-websocket-server "
        "and node ws.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: one short round")
    parser.add_argument(
        "--out",
        type=Path,
        help="where latest.json and latest.png go (default bench/results/, with --quick "
        "bench/results/quick/, so a smoke run never replaces the real results)",
    )
    parser.add_argument("--rounds", type=int, help="rounds (default 5, quick 1)")
    parser.add_argument("--processes", type=int, help="load generator processes (default 2)")
    parser.add_argument(
        "--servers",
        help="comma-separated names to run (default all available): "
        + ", ".join(spec.name for spec in all_servers()),
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of %(default)s"
    )
    parser.add_argument(
        "--patterns",
        default=",".join(report.PATTERNS),
        help="the generator patterns the echo scenarios run with: a subset of %(default)s",
    )
    parser.add_argument("--no-chart", action="store_true", help="write no latest.png")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="run each Python server under cProfile (bench/profiled.py); the profile of "
        "each measurement, and a summary of it, go to DIR",
    )
    parser.add_argument(
        "--autobahn",
        metavar="CASES",
        help="also time the Autobahn|Testsuite CASES (e.g. '9.*') against each server",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    overrides: dict[str, int] = {}
    if args.rounds is not None:
        overrides["rounds"] = args.rounds
    if args.processes is not None:
        overrides["processes"] = args.processes
    if any(value < 1 for value in overrides.values()):
        parser.error("--rounds and --processes must be at least 1")
    plan = Plan(**{**asdict(plan), **overrides})
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    patterns = [name.strip() for name in args.patterns.split(",") if name.strip()]
    if not patterns or not set(patterns) <= set(report.PATTERNS):
        parser.error(f"--patterns takes names from: {', '.join(report.PATTERNS)}")
    profiler = profile.Profiler(args.profile) if args.profile is not None else None

    known = {spec.name: spec for spec in all_servers()}
    wanted = list(known) if args.servers is None else [n.strip() for n in args.servers.split(",")]
    if any(name not in known for name in wanted):
        parser.error(f"--servers takes names from: {', '.join(known)}")
    not_here: dict[str, str] = {}
    for name in wanted:
        reason = unavailable(name)
        if reason is not None:
            not_here[name] = reason
    servers = [known[name] for name in wanted if name not in not_here]
    for name, reason in not_here.items():
        progress(f"bench: {name} n/a: {reason}")
    if not servers:
        progress("bench: no server to run")
        return 1
    skipped_patterns: dict[str, str] = {}
    if nodegen.NODE in patterns:
        reason = node_ws_unavailable()
        if reason is not None:
            skipped_patterns[nodegen.NODE] = reason
            progress(f"bench: generator pattern {nodegen.NODE} n/a: {reason}")
    patterns = [pattern for pattern in patterns if pattern not in skipped_patterns]
    skipped = scenarios_skipped(scenarios, servers)
    for scenario, reason in skipped.items():
        progress(f"bench: scenario {scenario} n/a: {reason}")
    scenarios = [scenario for scenario in scenarios if scenario not in skipped]

    open_files = raise_open_files_limit()
    progress(
        f"bench: {len(servers)} servers x {len(scenarios)} scenarios x {plan.rounds} rounds, "
        f"{plan.processes} load generator processes, open files limit {open_files}"
    )
    load_at_start = os.getloadavg()
    started = time.monotonic()
    runs = run(plan, servers, scenarios, patterns, profiler)
    autobahn = (
        {spec.name: autobahn_timing(spec, args.autobahn) for spec in servers}
        if args.autobahn
        else None
    )
    results = report.build(
        plan=asdict(plan),
        quick=args.quick,
        servers=servers,
        unavailable=not_here,
        skipped=skipped,
        runs=runs,
        references=REFERENCES,
        wall_s=time.monotonic() - started,
        autobahn=autobahn,
        load_at_start=load_at_start,
        patterns=patterns,
        skipped_patterns=skipped_patterns,
    )
    print(report.table(results))
    out = args.out or (DEFAULT_OUT / "quick" if args.quick else DEFAULT_OUT)
    json_path = report.write_json(results, out)
    progress(f"bench: wrote {json_path}")
    if profiler is not None:
        progress(f"bench: profiles in {profiler.out}")
    if not args.no_chart:
        chart = report.write_chart(results, out)
        progress(f"bench: wrote {chart}" if isinstance(chart, Path) else f"bench: {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
