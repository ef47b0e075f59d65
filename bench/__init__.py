"""The benchmark harness: echo_server side by side with its peers, in one run (`make bench`).

It compares echo_server with the plain simple-websocket-server 0.4.4 echo (the baseline it is
built on), an asyncio server on the `websockets` package (the reference for every ratio) and
Node's `ws` (when `node` is installed) in four scenarios: pipelined small messages, 1 MiB
messages, 10,000 idle connections, and a chat broadcast to 1,000 subscribers.

    python -m bench            # the full run, about ten minutes; writes bench/results/latest.*
    python -m bench --quick    # a smoke run in well under a minute

Modules: `loadgen` (the one load generator), `servers` (starting and probing the servers),
`report` (table, JSON, chart). bench/servers/ holds the peers' small server programs.

It is not part of echo_server and not a test suite: it asserts nothing about speed.
"""
