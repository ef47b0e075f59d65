// The bench's independent load generator: Node's `ws` client, one `send` per message, as a
// Node or browser client writes (ws masks each frame with its own key and writes it at once).
// It drives the echo scenarios for the "node" generator pattern (bench/nodegen.py runs it), so
// that the per-message figures do not rest on the bench's own Python generator alone.
//
// Usage: node bench/node/loadgen.js --url ws://HOST:PORT/ --connections N --in-flight K
//        --bytes B [--binary] --warmup-s W --duration-s D
// It opens the connections, prints {"ready": opened, "failed": n, "error": "..."} on one line,
// waits for a line on stdin, then keeps K messages in flight on every connection: each echo
// that comes back is timed (from its message's send) and answered with one new message. What
// arrives in the window (after W seconds, for D seconds) is counted; at the end it prints one
// JSON line: received, received_bytes, latency p50 and p99 in ms, and its own CPU seconds.
"use strict";

const path = require("path");
const readline = require("readline");
const WebSocket = require(path.join(__dirname, "node_modules", "ws"));

function option(name, fallback) {
  const index = process.argv.indexOf(name);
  return index >= 0 && index + 1 < process.argv.length ? process.argv[index + 1] : fallback;
}

const url = option("--url", "ws://127.0.0.1:8001/");
const connections = Number.parseInt(option("--connections", "50"), 10);
const inFlight = Number.parseInt(option("--in-flight", "8"), 10);
const bytes = Number.parseInt(option("--bytes", "32"), 10);
const binary = process.argv.includes("--binary");
const warmupMs = Number.parseFloat(option("--warmup-s", "0.5")) * 1000;
const durationMs = Number.parseFloat(option("--duration-s", "3")) * 1000;
const OPEN_TIMEOUT_MS = 60000;

const payload = Buffer.alloc(bytes, "0123456789abcdef");
const sendOptions = { binary, compress: false };

function open() {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
    const timer = setTimeout(() => {
      socket.terminate();
      resolve({ error: `no handshake within ${OPEN_TIMEOUT_MS} ms` });
    }, OPEN_TIMEOUT_MS);
    socket.once("open", () => {
      clearTimeout(timer);
      resolve({ socket });
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      resolve({ error: String(error.message || error) });
    });
  });
}

function percentile(sorted, fraction) {
  if (sorted.length === 0) return null;
  const index = Math.min(sorted.length - 1, Math.round(fraction * (sorted.length - 1)));
  return sorted[index];
}

async function main() {
  // Open a few at a time, as the Python generator does, so a small listen backlog copes.
  const sockets = [];
  let failed = 0;
  let firstError = "";
  for (let start = 0; start < connections; start += 16) {
    const batch = [];
    for (let i = start; i < Math.min(connections, start + 16); i++) batch.push(open());
    for (const opened of await Promise.all(batch)) {
      if (opened.socket) sockets.push(opened.socket);
      else {
        failed += 1;
        firstError = firstError || opened.error;
      }
    }
  }
  process.stdout.write(JSON.stringify({ ready: sockets.length, failed, error: firstError }) + "\n");
  const input = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => input.once("line", resolve));
  input.close();

  const started = performance.now();
  const warmAt = started + warmupMs;
  const endAt = warmAt + durationMs;
  let received = 0;
  let receivedBytes = 0;
  let lost = "";
  const latencies = [];
  let cpuStart = null;
  for (const socket of sockets) {
    const sentAt = [];
    socket.on("message", (data) => {
      const now = performance.now();
      const sent = sentAt.shift();
      if (now >= warmAt && now < endAt) {
        received += 1;
        receivedBytes += data.length;
        latencies.push(now - sent);
      }
      if (now < endAt) {
        sentAt.push(performance.now());
        socket.send(payload, sendOptions);
      }
    });
    socket.on("close", (code) => {
      if (performance.now() < endAt) lost = lost || `the server closed a connection with ${code}`;
    });
    socket.on("error", (error) => {
      lost = lost || String(error.message || error);
    });
    for (let i = 0; i < inFlight; i++) {
      sentAt.push(performance.now());
      socket.send(payload, sendOptions);
    }
  }
  await new Promise((resolve) => setTimeout(resolve, warmupMs));
  cpuStart = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, durationMs));
  const cpu = process.cpuUsage(cpuStart);
  const sorted = Float64Array.from(latencies).sort();
  process.stdout.write(
    JSON.stringify({
      received,
      received_bytes: receivedBytes,
      latency_p50_ms: percentile(sorted, 0.5),
      latency_p99_ms: percentile(sorted, 0.99),
      cpu_s: (cpu.user + cpu.system) / 1e6,
      lost,
    }) + "\n",
  );
  for (const socket of sockets) socket.terminate();
  process.exit(0);
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ fatal: String(error.stack || error) }) + "\n");
  process.exit(1);
});
