// Node's `ws` echo and chat server: the fastest peer in the bench, and the proof that the load
// generator is not the limit (it drives this server faster than any Python server).
//
// Every path but /chat echoes each message as it came (text as text, binary as binary); on
// /chat each message goes to every chat client, the sender included, as echo_server's /chat
// does. No compression (ws's default), a 32 MiB message limit, a listen backlog of 1024 like
// echo_server's. `ws` comes from bench/node/node_modules (the bench runs `npm ci` there when it
// is missing), with `bufferutil`, the native masking ws uses when it is installed, as ws's
// README recommends for speed. It is a benchmark peer, not part of echo_server.
//
// Usage: node bench/servers/node_ws.js [--host H] [--port 0]
// Prints "node-ws: listening on ws://HOST:PORT/" when ready; stops on SIGTERM or SIGINT.
// Node cannot raise its own open-files limit: the bench raises it before starting this process.
"use strict";

const path = require("path");
const { WebSocketServer } = require(path.join(__dirname, "..", "node", "node_modules", "ws"));

const CHAT_PATH = "/chat";
const MAX_MESSAGE_BYTES = 32 * 1024 * 1024;
const LISTEN_BACKLOG = 1024;

function option(name, fallback) {
  const index = process.argv.indexOf(name);
  return index >= 0 && index + 1 < process.argv.length ? process.argv[index + 1] : fallback;
}

const host = option("--host", "127.0.0.1");
const port = Number.parseInt(option("--port", "0"), 10);
const chatClients = new Set();

const server = new WebSocketServer({
  host,
  port,
  backlog: LISTEN_BACKLOG,
  maxPayload: MAX_MESSAGE_BYTES,
  perMessageDeflate: false,
});

server.on("connection", (socket, request) => {
  if (request.url === CHAT_PATH) {
    chatClients.add(socket);
    socket.on("message", (data, isBinary) => {
      for (const client of chatClients) {
        client.send(data, { binary: isBinary });
      }
    });
    socket.on("close", () => chatClients.delete(socket));
  } else {
    socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
  }
  // A peer that resets its connection is the end of that client, not of the server.
  socket.on("error", () => socket.terminate());
});

server.on("listening", () => {
  console.log(`node-ws: listening on ws://${host}:${server.address().port}/`);
});

function stop() {
  for (const client of server.clients) {
    client.terminate();
  }
  server.close(() => process.exit(0));
}

process.on("SIGTERM", stop);
process.on("SIGINT", stop);
