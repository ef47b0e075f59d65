"""The benchmark harness (bench/) runs end to end: `python -m bench --quick` against real servers.

One quick run (a smoke run: one short round, 500 idle connections, 100 subscribers, and the
cluster rows: one worker and two, a broadcast through a real redis-server) is shared by the
end-to-end tests of this module. They check that the bench ran and recorded what it promises,
never how fast anything was: speed depends on the machine, and on whatever else it is doing.
The load generator's frame counter, which every figure rests on, is pinned first.

Run with `python -m pytest` from the repository (as `make test` does), so that `bench` imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_server import require_redis_server
from support import REPO

from bench.__main__ import PER_SERVER, scenarios_skipped
from bench.cluster import LAYOUTS, worker_specs
from bench.compression import CLIENT_WINDOW_BITS, MESSAGE, compressed_frame
from bench.loadgen import (
    OP_BINARY,
    OP_PING,
    OP_TEXT,
    FrameReader,
    broadcast_targets,
    client_frame,
    length_header,
    mask,
    server_frame_head,
)
from bench.servers import all_servers
from echo_server.protocol.deflate import Inflater
from echo_server.protocol.frames import FrameReader as ServerFrameReader
from echo_server.protocol.frames import Message

QUICK_TIMEOUT_S = 240.0
FOUR_FIGURES = ("messages_per_s", "mb_per_s", "bytes_per_connection", "broadcast_ms")
ALWAYS_THERE = ("echo_server", "simple-websocket-server", "websockets")


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


# Which scenarios run.


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


def test_quick_run_has_all_four_figures_for_every_server_that_ran(quick_run: QuickRun) -> None:
    ran = [server["name"] for server in quick_run.results["servers"]]
    missing = {
        name: [key for key in FOUR_FIGURES if quick_run.results["summary"][name][key] is None]
        for name in ran
    }
    assert {name: keys for name, keys in missing.items() if keys} == {}, quick_run.done.stderr


def test_quick_run_includes_echo_server_and_the_python_peers(quick_run: QuickRun) -> None:
    ran = {server["name"] for server in quick_run.results["servers"]}
    assert set(ALWAYS_THERE) <= ran


def test_node_ws_either_ran_or_says_why_not(quick_run: QuickRun) -> None:
    ran = {server["name"] for server in quick_run.results["servers"]}
    assert ("node ws" in ran) != ("node ws" in quick_run.results["unavailable"])


def test_websockets_is_the_reference_with_ratio_one(quick_run: QuickRun) -> None:
    assert quick_run.results["reference"] == "websockets"
    assert quick_run.results["ratios"]["websockets"] == dict.fromkeys(FOUR_FIGURES, 1.0)


def test_json_records_the_machine_the_date_and_the_versions(quick_run: QuickRun) -> None:
    results = quick_run.results
    assert results["quick"] is True
    assert results["machine"]["nproc"] >= 1
    assert results["machine"]["python"].startswith("3.")
    assert results["date"][:2] == "20"
    assert results["versions"]["websockets"]
    assert results["versions"]["simple-websocket-server"] == "0.4.4"


def test_json_keeps_every_raw_run(quick_run: QuickRun) -> None:
    servers = len(quick_run.results["servers"])
    runs = quick_run.results["runs"]
    per_server = [run for run in runs if run["scenario"] in PER_SERVER]
    assert {run["scenario"] for run in per_server} == set(PER_SERVER)
    assert len(per_server) == 4 * servers
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
