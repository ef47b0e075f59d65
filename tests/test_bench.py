"""The benchmark harness (bench/) runs end to end: `python -m bench --quick` against real servers.

One quick run (a smoke run: one short round, every echo scenario with both generator patterns,
200 active connections, 500 idle ones, 100 subscribers, and the cluster rows: one worker and
two, a broadcast through a real redis-server) is shared by the end-to-end tests of this module.
They check that the bench ran and recorded what it promises (every case has throughput,
latency, the server's CPU and the generator's, and the per-CPU ratios to picows and websockets),
never how fast anything was: speed depends on the machine, and on whatever else it is doing.
The load generator's frame counter, which every figure rests on, is pinned first, then the two
ways it writes.

Run with `python -m pytest` from the repository (as `make test` does), so that `bench` imports.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_server import require_redis_server
from support import REPO

from bench.__main__ import ECHO, PER_SERVER, QUICK, round_measurements, scenarios_skipped
from bench.cluster import LAYOUTS, worker_specs
from bench.compression import CLIENT_WINDOW_BITS, MESSAGE, compressed_frame
from bench.fanout import fanout_specs
from bench.loadgen import (
    BATCHED,
    OP_BINARY,
    OP_PING,
    OP_TEXT,
    PER_MESSAGE,
    FrameReader,
    Peer,
    broadcast_targets,
    client_frame,
    drive_echo,
    length_header,
    mask,
    server_frame_head,
)
from bench.profile import summarise
from bench.report import CASES, PATTERNS, Case, case_runs
from bench.servers import PICOWS, REFERENCES, all_servers, modules_missing
from echo_server.protocol.deflate import Inflater
from echo_server.protocol.frames import FrameReader as ServerFrameReader
from echo_server.protocol.frames import Message

QUICK_TIMEOUT_S = 480.0  # the whole smoke run; about 150 s on an idle 2-core machine
ALWAYS_THERE = ("echo_server", "simple-websocket-server", "websockets")
CASE_FIGURES = (
    "throughput",
    "per_cpu",
    "latency_p50_ms",
    "latency_p99_ms",
    "server_cpu_cores",
    "loadgen_cpu_cores",
)
# What a run with no message back cannot have: a latency, and (with no server CPU spent) a rate
# per second of CPU.
ZERO_MESSAGE_GAPS = ("latency_p50_ms", "latency_p99_ms", "per_cpu")
LESS_IS_BETTER = ("bytes_per_connection", "broadcast_ms")
IN_FLIGHT = 5
WRITE_WINDOW_S = 0.05


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return length_header((0x80 if fin else 0) | opcode, len(payload), masked=False) + payload


def feed_in_pieces(reader: FrameReader, stream: bytes, cuts: list[int]) -> int:
    count = 0
    start = 0
    for cut in sorted({min(cut, len(stream)) for cut in cuts}):
        count += reader.feed(memoryview(stream)[start:cut])
        start = cut
    return count + reader.feed(memoryview(stream)[start:])


# The frame counter of the load generator.

server_frames = st.lists(
    st.tuples(st.sampled_from([OP_TEXT, OP_BINARY, OP_PING]), st.integers(0, 70_000)),
    max_size=12,
)


@given(frames=server_frames, cuts=st.lists(st.integers(0, 300_000), max_size=20))
def test_frame_reader_counts_messages_however_the_stream_is_split(
    frames: list[tuple[int, int]], cuts: list[int]
) -> None:
    stream = b"".join(server_frame(opcode, bytes(size)) for opcode, size in frames)
    reader = FrameReader()
    assert feed_in_pieces(reader, stream, cuts) == sum(op != OP_PING for op, _ in frames)


@given(
    frames=st.lists(st.booleans(), max_size=60),
    cuts=st.lists(st.integers(0, 3_000), max_size=20),
)
def test_frame_reader_fast_path_counts_small_echoes_and_keeps_pings(
    frames: list[bool], cuts: list[int]
) -> None:
    echo = server_frame(OP_TEXT, b"x" * 32)
    stream = b"".join(server_frame(OP_PING, b"hi") if ping else echo for ping in frames)
    reader = FrameReader(server_frame_head(OP_TEXT, 32), len(echo))
    assert feed_in_pieces(reader, stream, cuts) == frames.count(False)
    assert reader.controls == [(OP_PING, b"hi")] * frames.count(True)


def test_frame_reader_counts_a_fragmented_message_once() -> None:
    stream = server_frame(OP_TEXT, b"ab", fin=False) + server_frame(0x0, b"cd")
    assert FrameReader().feed(stream) == 1


def test_broadcast_subscribers_split_evenly_over_servers_then_processes() -> None:
    targets = broadcast_targets([("a", 1), ("b", 2)], subscribers=1001, processes=2)
    assert targets == [(("a", 1, 251), ("b", 2, 250)), (("a", 1, 250), ("b", 2, 250))]


def test_broadcast_to_one_server_gives_each_process_a_part() -> None:
    assert broadcast_targets([("a", 1)], 5, 2) == [(("a", 1, 3),), (("a", 1, 2),)]


def test_broadcast_leaves_out_processes_with_no_subscribers() -> None:
    assert broadcast_targets([("a", 1)], 1, 4) == [(("a", 1, 1),)]


def test_client_frames_are_masked_and_unmask_to_the_payload() -> None:
    payload = bytes(range(256)) * 5000
    frame = client_frame(OP_BINARY, payload)
    assert frame[:2] == bytes([0x82, 0x80 | 127])
    key = frame[10:14]
    assert mask(frame[14:], key) == payload


# How the generator writes: the two patterns, on a real socket pair that keeps each write whole.


def writes_of_first_fill(pattern: str) -> list[bytes]:
    """What drive_echo writes first (IN_FLIGHT messages), as the writes the other end got."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        ours.setblocking(False)
        frame = client_frame(OP_TEXT, b"x" * 32)
        now = time.monotonic()
        peer = Peer(ours, FrameReader())
        drive_echo([peer], frame, IN_FLIGHT, now, now + WRITE_WINDOW_S, pattern=pattern)
        writes = []
        while select.select([theirs], [], [], 0)[0]:
            writes.append(theirs.recv(65536))
        return writes
    finally:
        ours.close()
        theirs.close()


def test_batched_pattern_writes_the_messages_due_at_once() -> None:
    frame = client_frame(OP_TEXT, b"x" * 32)
    assert writes_of_first_fill(BATCHED) == [frame * IN_FLIGHT]


def test_per_message_pattern_writes_each_message_on_its_own() -> None:
    frame = client_frame(OP_TEXT, b"x" * 32)
    assert writes_of_first_fill(PER_MESSAGE) == [frame] * IN_FLIGHT


# Which scenarios run.


def test_every_echo_scenario_runs_with_both_patterns_over_every_server() -> None:
    servers = all_servers()
    for scenario in ECHO:
        names = [name for name, _ in round_measurements(QUICK, servers, scenario)]
        assert names == [spec.name for spec in servers] * len(PATTERNS)


def test_fanout_runs_echo_server_without_its_chat_rate_limit() -> None:
    specs = {spec.name: spec for spec in fanout_specs(all_servers())}
    assert "--rate-limit" in specs["echo_server"].argv
    assert set(specs) == {spec.name for spec in all_servers()}


def test_a_peer_whose_modules_are_missing_says_which_and_how_to_install_them() -> None:
    reason = modules_missing(["uvloop", "no_such_module_for_the_bench"])
    assert reason is not None
    assert reason.startswith("no_such_module_for_the_bench not installed")
    assert "bench" in reason
    assert modules_missing(["uvloop"]) is None


def test_profile_summary_counts_calls_per_message(tmp_path: Path) -> None:
    def handle_one() -> int:
        return sum(range(10))

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(50):
        handle_one()
    profiler.disable()
    path = tmp_path / "run.prof"
    profiler.dump_stats(path)
    summary = summarise(path, messages=25)
    (line,) = [line for line in summary.splitlines() if "handle_one" in line]
    own, inclusive, calls, per_message = line.split()[:4]
    assert (calls, per_message) == ("50", "2.00")
    assert float(inclusive) >= float(own) > 0


def test_profile_run_profiles_the_measuring_window_of_echo_server(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--quick", "--no-chart"),
            *("--servers", "echo_server", "--scenarios", "small", "--patterns", "batched"),
            *("--out", str(tmp_path / "out"), "--profile", str(tmp_path / "prof")),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "prof" / "small-batched-echo_server.summary.txt").read_text()
    assert "per message" in summary
    # The window only: the handshakes happened before it opened.
    assert "_receive" in summary
    stats = pstats.Stats(str(tmp_path / "prof" / "small-batched-echo_server.prof"))
    profiled = {name for _, _, name in stats.stats}  # type: ignore[attr-defined]
    assert "parse_request" not in profiled


def test_cluster_scenarios_are_skipped_without_echo_server() -> None:
    websockets = [spec for spec in all_servers() if spec.name == "websockets"]
    skipped = scenarios_skipped(["small", "workers", "redis"], websockets)
    assert set(skipped) == {"workers", "redis"}
    assert "echo_server is not among the servers" in skipped["workers"]


def test_workers_scenario_runs_whenever_echo_server_does() -> None:
    assert scenarios_skipped(["small", "workers"], all_servers()) == {}


# The quick run, end to end.


@dataclass
class QuickRun:
    done: subprocess.CompletedProcess[str]
    out: Path
    results: dict[str, Any]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"bench failed:\n{done.stdout}\n{done.stderr}"
    results = json.loads((out / "latest.json").read_text())
    return QuickRun(done, out, results)


def case_by_name(name: str) -> Case:
    (case,) = [case for case in CASES if case.name == name]
    return case


def ran(quick_run: QuickRun) -> list[str]:
    return [server["name"] for server in quick_run.results["servers"]]


def patterns_run(quick_run: QuickRun) -> list[str]:
    return list(quick_run.results["patterns"])


def test_every_generator_pattern_either_ran_or_says_why_not(quick_run: QuickRun) -> None:
    skipped = quick_run.results["skipped_patterns"]
    assert sorted([*patterns_run(quick_run), *skipped]) == sorted(PATTERNS)
    # The bench's own generator needs nothing more than Python.
    assert {BATCHED, PER_MESSAGE} <= set(patterns_run(quick_run))


def test_quick_run_has_every_case_with_every_pattern(quick_run: QuickRun) -> None:
    expected = [case.name for case in CASES if case.pattern in (None, *patterns_run(quick_run))]
    assert list(quick_run.results["cases"]) == expected


def test_every_case_has_every_figure_for_every_server_that_ran(quick_run: QuickRun) -> None:
    missing = {}
    for case_name, case in quick_run.results["cases"].items():
        for server in ran(quick_run):
            keys = [key for key in CASE_FIGURES if case["servers"][server][key] is None]
            runs = case_runs(quick_run.results["runs"], case_by_name(case_name), server)
            if runs and all(run.get("messages") == 0 for run in runs):
                # A server that finished no echo in the smoke run's short window (a 1 MiB
                # echo, or 200 connections on a busy machine) has a rate (what it sent) and
                # the generator's CPU, but no latency, and maybe no CPU of its own to divide
                # by: those are reported as missing (None), which is what is checked.
                keys = [key for key in keys if key not in ZERO_MESSAGE_GAPS]
            if case["servers"][server]["server_cpu_cores"] == 0:
                # No CPU tick (10 ms) of the server's fell in the window, on a busy machine: what
                # the generator read had been sent before it. No rate per CPU-second, then.
                keys = [key for key in keys if key != "per_cpu"]
            if keys:
                missing[case_name, server] = keys
    assert missing == {}, quick_run.done.stderr


def test_idle_and_broadcast_have_figures_for_every_server_that_ran(quick_run: QuickRun) -> None:
    summary = quick_run.results["summary"]
    missing = [
        (server, key)
        for server in ran(quick_run)
        for key in LESS_IS_BETTER
        if summary[server][key] is None
    ]
    assert missing == [], quick_run.done.stderr


def test_quick_run_includes_echo_server_and_the_python_peers(quick_run: QuickRun) -> None:
    assert set(ALWAYS_THERE) <= set(ran(quick_run))


def test_picows_and_node_ws_either_ran_or_say_why_not(quick_run: QuickRun) -> None:
    for name in (PICOWS, "websockets uvloop", "node ws"):
        assert (name in ran(quick_run)) != (name in quick_run.results["unavailable"]), name


def test_judged_ratios_are_per_cpu_against_picows_and_websockets(quick_run: QuickRun) -> None:
    results = quick_run.results
    assert results["references"] == list(REFERENCES) == ["picows", "websockets"]
    for case in results["cases"].values():
        for server, entry in case["servers"].items():
            for reference in REFERENCES:
                if reference not in case["servers"]:
                    continue
                base = case["servers"][reference]
                found = entry["ratios"][reference]
                for key, figure in (("per_cpu", "per_cpu"), ("raw", "throughput")):
                    if entry[figure] is None or not base[figure]:
                        assert found[key] is None  # nothing to divide: no ratio, not a guess
                    else:
                        assert found[key] == pytest.approx(entry[figure] / base[figure])
                if server == reference:
                    assert found == {
                        "per_cpu": None if entry["per_cpu"] is None else 1.0,
                        "raw": 1.0,
                    }


def test_per_cpu_figure_is_throughput_over_the_servers_cpu(quick_run: QuickRun) -> None:
    small_runs = [
        run
        for run in quick_run.results["runs"]
        if run["scenario"] == "small" and "error" not in run
    ]
    assert small_runs
    assert all(run["server_cpu_cores"] >= 0 for run in small_runs)
    assert any(run["server_cpu_cores"] > 0 for run in small_runs), small_runs
    small = quick_run.results["cases"][f"small {BATCHED}"]["servers"]["echo_server"]
    # One round: the medians are that round's figures.
    if small["server_cpu_cores"]:
        assert small["per_cpu"] == pytest.approx(small["throughput"] / small["server_cpu_cores"])
    else:
        assert small["per_cpu"] is None  # no CPU measured in the window: nothing to divide by


def test_servers_under_a_full_core_are_flagged(quick_run: QuickRun) -> None:
    flagged = [
        (case_name, server)
        for case_name, case in quick_run.results["cases"].items()
        for server, entry in case["servers"].items()
        if not entry["saturated"]
    ]
    assert len(quick_run.results["unsaturated"]) == len(flagged)
    assert all(
        quick_run.results["cases"][case_name]["servers"][server]["server_cpu_cores"] < 0.9
        for case_name, server in flagged
    )


def test_fanout_counts_deliveries_to_every_subscriber(quick_run: QuickRun) -> None:
    (fanout,) = [
        run
        for run in quick_run.results["runs"]
        if run["scenario"] == "fanout" and run["server"] == "echo_server"
    ]
    assert fanout["subscribers"] == QUICK.fanout_subscribers
    assert fanout["deliveries"] > 0
    assert fanout["latency_samples"] > 0


def test_json_records_the_machine_the_date_and_the_versions(quick_run: QuickRun) -> None:
    results = quick_run.results
    assert results["quick"] is True
    assert results["machine"]["nproc"] >= 1
    assert results["machine"]["python"].startswith("3.")
    assert results["date"][:2] == "20"
    assert results["versions"]["websockets"]
    assert results["versions"]["simple-websocket-server"] == "0.4.4"
    if PICOWS in ran(quick_run):
        assert results["versions"]["picows"]
        assert results["versions"]["uvloop"]


def test_json_keeps_every_raw_run(quick_run: QuickRun) -> None:
    servers = len(quick_run.results["servers"])
    runs = quick_run.results["runs"]
    per_server = [run for run in runs if run["scenario"] in PER_SERVER]
    assert {run["scenario"] for run in per_server} == set(PER_SERVER)
    # Each echo scenario once per pattern, the others once.
    ran = patterns_run(quick_run)
    assert len(per_server) == (len(ECHO) * len(ran) + len(PER_SERVER) - len(ECHO)) * servers
    patterns = {(run["scenario"], run.get("pattern")) for run in per_server}
    assert {(scenario, pattern) for scenario in ECHO for pattern in ran} <= patterns
    assert [run["server"] for run in runs if run["scenario"] == "workers"] == [
        spec.name for spec in worker_specs()
    ]


def test_json_reports_the_load_generators_own_cpu(quick_run: QuickRun) -> None:
    small = [run for run in quick_run.results["runs"] if run["scenario"] == "small"]
    assert all(run["loadgen_cpu_cores"] >= 0 and run["loadgen_processes"] >= 1 for run in small)


def test_workers_row_measures_one_worker_and_two(quick_run: QuickRun) -> None:
    workers = quick_run.results["cluster"]["workers"]
    assert list(workers) == ["echo_server", "echo_server --workers 2"]
    assert all(entry["messages_per_s"] for entry in workers.values()), quick_run.done.stderr
    assert quick_run.results["cluster"]["workers_ratio"] is not None


def test_workers_row_counts_the_cpu_of_both_workers(quick_run: QuickRun) -> None:
    (two,) = [
        run
        for run in quick_run.results["runs"]
        if run["scenario"] == "workers" and run["server"] == "echo_server --workers 2"
    ]
    supervisor, *workers = two["server_cpu_cores_each"]
    # 50 connections spread by the kernel over two workers: both echo, so both use CPU.
    assert len(workers) == 2
    assert all(cores > 0 for cores in workers), two
    assert two["server_cpu_cores"] == pytest.approx(supervisor + sum(workers), abs=0.01)


def test_redis_row_measures_every_layout(quick_run: QuickRun) -> None:
    require_redis_server()
    redis = quick_run.results["cluster"]["redis"]
    assert list(redis) == [layout.name for layout in LAYOUTS]
    missing = [name for name, entry in redis.items() if entry["broadcast_ms"] is None]
    assert missing == [], quick_run.results["cluster"]["errors"]


def test_redis_row_spreads_the_subscribers_over_both_processes(quick_run: QuickRun) -> None:
    require_redis_server()
    (two,) = [
        run
        for run in quick_run.results["runs"]
        if run["scenario"] == "redis" and run["server"] == "2 processes via Redis"
    ]
    assert two["servers"] == 2
    assert two["subscribers"] == quick_run.results["plan"]["broadcast_subscribers"]


def test_flood_row_runs_echo_server_with_and_without_its_rate_limit(quick_run: QuickRun) -> None:
    fairness = quick_run.results["fairness"]
    assert {"echo_server", "echo_server --rate-limit 0"} <= set(fairness)


def test_flood_row_times_the_bystander_on_every_server_that_ran(quick_run: QuickRun) -> None:
    fairness = quick_run.results["fairness"]
    missing = [name for name, entry in fairness.items() if entry["bystander_max_ms"] is None]
    assert missing == [], {name: fairness[name]["errors"] for name in missing}


def test_flood_row_shows_the_rate_limit_closing_the_flooder(quick_run: QuickRun) -> None:
    fairness = quick_run.results["fairness"]
    assert "1008" in fairness["echo_server"]["flooder_closed"]
    assert fairness["echo_server --rate-limit 0"]["flooder_closed"] == ""


def test_terminal_table_names_every_server(quick_run: QuickRun) -> None:
    for server in quick_run.results["servers"]:
        assert server["name"] in quick_run.done.stdout


def test_terminal_table_says_which_pattern_each_figure_is(quick_run: QuickRun) -> None:
    for case in CASES:
        assert f"[{case.name}]" in quick_run.done.stdout
    assert "one write per message" in quick_run.done.stdout


def test_chart_is_written_when_matplotlib_is_installed(quick_run: QuickRun) -> None:
    pytest.importorskip("matplotlib")
    chart = quick_run.out / "latest.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deflate_row_echoes_with_compression_on_for_echo_server_and_websockets(
    quick_run: QuickRun,
) -> None:
    echo = quick_run.results["compression"]["deflate"]
    assert {"echo_server", "echo_server, not offered", "websockets deflate"} <= set(echo)
    missing = [name for name, entry in echo.items() if entry["messages_per_s"] is None]
    assert missing == [], {name: echo[name]["errors"] for name in missing}
    # Compressed, the same messages take a fraction of the bytes on the wire.
    assert echo["echo_server"]["wire_mb_per_s"] < echo["echo_server, not offered"]["wire_mb_per_s"]


def test_deflate_idle_row_measures_memory_with_and_without_the_offer(quick_run: QuickRun) -> None:
    idle = quick_run.results["compression"]["deflate-idle"]
    for name in ("echo_server", "echo_server, not offered", "websockets deflate"):
        assert idle[name]["bytes_per_connection"] is not None, idle[name]["errors"]
        assert idle[name]["bytes_per_connection_used"] is not None
    assert idle["echo_server"]["vs_not_offered"] is not None


def test_the_bench_client_sends_a_compressed_frame_a_server_reads() -> None:
    frame = compressed_frame(MESSAGE)
    assert frame[0] == 0x80 | 0x40 | OP_TEXT  # FIN, RSV1, text
    reader = ServerFrameReader(decompressor=Inflater(CLIENT_WINDOW_BITS, no_context_takeover=True))
    assert reader.feed(frame * 2) == [Message(MESSAGE.decode())] * 2
