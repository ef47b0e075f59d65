"""The benchmark harness: echo_server side by side with its peers, in one run (`make bench`).

It compares echo_server with picows on uvloop (the fastest Python WebSocket server: the
reference of the judged ratios), websockets (on asyncio's loop and on uvloop's), the plain
simple-websocket-server 0.4.4 echo (the baseline it is built on) and Node's `ws` (when `node` is
installed): 32 B echoes on 50 and on 1,000 connections and 1 MiB echoes, each with three
generator patterns (batched writes and one write per message from the bench's generator, and
Node's ws client), a fan-out to 1,000 chat subscribers, 10,000 idle connections, a one-message
broadcast, a flood's bystander, and echo_server's cluster rows.
The judged figure is throughput per second of the server's own CPU.

    python -m bench            # the full run, about forty minutes; writes bench/results/latest.*
    python -m bench --quick    # a smoke run in about a minute

Modules: `loadgen` (the load generator), `nodegen` (the node pattern), `fanout` and
`fairness` (their scenarios), `cluster` (echo_server's cluster rows), `servers` (starting and
probing the servers), `report` (table, JSON, chart), `profile` and `profiled` (`--profile`:
cProfile inside the servers). bench/servers/ holds the peers' small server programs.

It is not part of echo_server and not a test suite: it asserts nothing about speed.
"""
