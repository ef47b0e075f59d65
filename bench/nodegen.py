"""The "node" generator pattern: the echo scenarios driven by Node's `ws` client instead of the
bench's own generator.

The bench's generator (loadgen.py) is Python, written for this bench, and its per-message
pattern is one `send()` per message by construction. This pattern is the independent check:
bench/node/loadgen.js, a plain `ws` client as any Node program would write it, one `send` per
message (masked with a fresh key each, as ws does), the same connections, messages in flight,
sizes, warm-up and window as the other patterns. It runs in one Node process (Node has one
thread), started per measurement; the server's CPU is measured here over the same window, and
the generator's from Node's own `process.cpuUsage()`. It needs `node` and the ws package in
bench/node (the same as the `node ws` peer); without them the pattern is skipped with the reason.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import time
from typing import IO, Any

from bench.loadgen import OP_BINARY, BenchError, EchoPlan, wait_until
from bench.servers import NODE_DIR, RunningServer

NODE = "node"
SCRIPT = NODE_DIR / "loadgen.js"
START_TIMEOUT_S = 30.0
RESULT_TIMEOUT_S = 30.0


def read_line(stream: IO[str], timeout_s: float, what: str) -> dict[str, Any]:
    """The next JSON line the generator prints, within `timeout_s`."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise BenchError(f"the node generator printed no {what} in {timeout_s:g} s")
    line = stream.readline()
    if not line:
        raise BenchError(f"the node generator exited before its {what}")
    found: dict[str, Any] = json.loads(line)
    if "fatal" in found:
        raise BenchError(f"the node generator failed: {found['fatal'][-300:]}")
    return found


def run_echo_node(server: RunningServer, plan: EchoPlan) -> dict[str, Any]:
    """Run one echo scenario against `server` with Node's ws client; the raw numbers."""
    command = [
        NODE,
        str(SCRIPT),
        *("--url", f"ws://{server.host}:{server.port}{plan.path}"),
        *("--connections", str(plan.connections)),
        *("--in-flight", str(plan.in_flight)),
        *("--bytes", str(plan.payload_bytes)),
        *(("--binary",) if plan.opcode == OP_BINARY else ()),
        *("--warmup-s", str(plan.warmup_s)),
        *("--duration-s", str(plan.duration_s)),
    ]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready = read_line(proc.stdout, START_TIMEOUT_S + plan.open_timeout_s, "ready line")
        if ready["ready"] < plan.connections:
            raise BenchError(
                f"opened {ready['ready']} of {plan.connections} connections: {ready['error']}"
            )
        proc.stdin.write("go\n")
        proc.stdin.flush()
        warm_at = time.monotonic() + plan.warmup_s
        end_at = warm_at + plan.duration_s
        wait_until(warm_at)
        server.window(opens=True)
        cpu_start = server.cpu_times_each()
        wait_until(end_at)
        cpu_end = server.cpu_times_each()
        server.window(opens=False)
        result = read_line(proc.stdout, plan.duration_s + RESULT_TIMEOUT_S, "result")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if result["lost"]:
        raise BenchError(f"node generator: {result['lost']}")
    spent = [
        (end[0] - cpu_start.get(pid, (0.0, 0.0))[0], end[1] - cpu_start.get(pid, (0.0, 0.0))[1])
        for pid, end in cpu_end.items()
    ]
    server_cpu_each = [user + system for user, system in spent]
    return {
        "pattern": NODE,
        "messages": result["received"],
        "messages_per_s": result["received"] / plan.duration_s,
        "mb_per_s": result["received_bytes"] / plan.duration_s / 1e6,
        "latency_p50_ms": result["latency_p50_ms"],
        "latency_p99_ms": result["latency_p99_ms"],
        "loadgen_cpu_cores": result["cpu_s"] / plan.duration_s,
        "loadgen_processes": 1,
        "server_cpu_cores": sum(server_cpu_each) / plan.duration_s,
        "server_sys_cores": sum(system for _, system in spent) / plan.duration_s,
        "server_cpu_cores_each": [round(cpu / plan.duration_s, 3) for cpu in server_cpu_each],
    }
