#!/usr/bin/env bash
# `make cluster`: a local redis-server and two workers behind one port, with the page server.
# Stops everything on Ctrl-C. Options after it go to `echo-server demo` (make cluster ARGS=...).
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT="${REDIS_PORT:-6380}"

if ! command -v redis-server >/dev/null; then
    echo "make cluster: needs redis-server (Debian: apt-get install redis-server)" >&2
    exit 1
fi
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --loglevel warning &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done
echo "cluster: redis-server on 127.0.0.1:$REDIS_PORT (pid $redis_pid); two workers share the WebSocket port"
.venv/bin/python -m echo_server demo --workers 2 --redis "redis://127.0.0.1:$REDIS_PORT/0" "$@"
