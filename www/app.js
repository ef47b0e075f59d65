/*
 * The echo_server test page: connection panels that open a WebSocket, send and log messages.
 *
 * What this file is for: working out the WebSocket address from the page's own address, and
 * driving one "connection panel" (Connect / Disconnect, status, log, message box) per server path.
 * Echo is the first panel; later ones reuse ConnectionPanel with their own markup and path.
 *
 * What it is not: a WebSocket client library, a framework or a build. It is one plain script,
 * with no dependencies, that works offline and from file://, under the page server's strict
 * Content-Security-Policy (so: no inline code, no eval, no innerHTML; text goes in via
 * textContent, which also keeps whatever a server sends from ever becoming markup).
 *
 * The address functions are pure and exposed on window.echoPage, so tests can call them with
 * fake location objects.
 */
(function () {
  "use strict";

  const DEFAULT_WS_PORT = 8001;
  const DEFAULT_PATH = "/";
  const CONFIG_URL = "/config.json";
  const CONFIG_TIMEOUT_MS = 3000;
  const HEARTBEAT_INTERVAL_MS = 1000;
  const HEARTBEAT_TEXT = "*";
  const MAX_LOG_ENTRIES = 500;
  // A long message is cut short on screen, or a few 1 MiB echoes would make the page crawl.
  const MAX_SHOWN_CHARS = 2000;
  // Sends waiting for their echo; bounded in case a server never echoes.
  const MAX_PENDING_ECHOES = 1000;
  // Skip a heartbeat rather than queue more behind a connection that is not draining.
  const MAX_BUFFERED_BYTES = 64 * 1024;
  // Keep following new entries when the reader is this close to the bottom of the log.
  const FOLLOW_SLACK_PX = 40;

  // RFC 6455 section 7.4.1, plus the IANA registry's 1012-1014.
  const CLOSE_CODE_NAMES = Object.freeze({
    1000: "Normal Closure",
    1001: "Going Away",
    1002: "Protocol Error",
    1003: "Unsupported Data",
    1005: "No Status Received",
    1006: "Abnormal Closure",
    1007: "Invalid Payload Data",
    1008: "Policy Violation",
    1009: "Message Too Big",
    1010: "Mandatory Extension",
    1011: "Internal Error",
    1012: "Service Restart",
    1013: "Try Again Later",
    1014: "Bad Gateway",
    1015: "TLS Handshake",
  });

  // ---------------------------------------------------------------------------------------------
  // Addresses: pure functions of a location-like object {protocol, hostname, search}.

  /** A host as it goes in a URL: an IPv6 literal in brackets, no host at all (file://) as localhost. */
  function urlHost(hostname) {
    const host = String(hostname || "");
    if (host === "") {
      return "localhost";
    }
    // Chromium reports "[::1]", other browsers may report "::1"; a URL needs the brackets.
    if (host.includes(":") && !host.startsWith("[")) {
      return "[" + host + "]";
    }
    return host;
  }

  /** A TCP port number 1-65535 from text or a number, or null if it is not one. */
  function parsePort(value) {
    const text = String(value === null || value === undefined ? "" : value).trim();
    if (!/^[0-9]{1,5}$/.test(text)) {
      return null;
    }
    const port = Number(text);
    return port >= 1 && port <= 65535 ? port : null;
  }

  /** The ?ws=PORT override from a query string, or null if absent or not a valid port. */
  function wsPortFromSearch(search) {
    return parsePort(new URLSearchParams(search || "").get("ws"));
  }

  /** A server path: "/" unless given; always starts with "/"; null if it cannot be a path. */
  function normalizePath(path) {
    if (path === null || path === undefined || path === "") {
      return DEFAULT_PATH;
    }
    const text = String(path);
    // Whitespace, control characters and "#" cannot be part of a WebSocket request target.
    if (/[\s\u0000-\u001f\u007f#]/.test(text)) {
      return null;
    }
    return text.startsWith("/") ? text : "/" + text;
  }

  /** The ?path=/echo choice from a query string, or null if it is not a usable path. */
  function pathFromSearch(search) {
    return normalizePath(new URLSearchParams(search || "").get("path"));
  }

  /**
   * The WebSocket URL for a page at `location`: wss: if the page came over https:, the page's
   * host, `wsPort` in place of the page's port, and `path`.
   */
  function wsUrlFor(location, wsPort, path) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const port = parsePort(wsPort) || DEFAULT_WS_PORT;
    const target = normalizePath(path) || DEFAULT_PATH;
    return scheme + "//" + urlHost(location.hostname) + ":" + port + target;
  }

  /** "1000 Normal Closure", "4000", "1001 Going Away: server restarting". */
  function closeDescription(code, reason) {
    const name = CLOSE_CODE_NAMES[code];
    const described = name ? code + " " + name : String(code);
    return reason ? described + ": " + reason : described;
  }

  /** Local wall-clock time as HH:MM:SS.mmm. */
  function formatTime(date) {
    const pad = (number, width) => String(number).padStart(width, "0");
    return (
      pad(date.getHours(), 2) +
      ":" +
      pad(date.getMinutes(), 2) +
      ":" +
      pad(date.getSeconds(), 2) +
      "." +
      pad(date.getMilliseconds(), 3)
    );
  }

  /** A round-trip time for people: "0.4 ms", "12 ms". */
  function formatRtt(ms) {
    return (ms < 10 ? ms.toFixed(1) : String(Math.round(ms))) + " ms";
  }

  /**
   * The WebSocket port and where it came from: ?ws=PORT, else the page server's /config.json,
   * else the default. Never rejects: a missing or slow config.json just means the default.
   */
  async function resolveWsPort(location, fetchImpl) {
    const fromQuery = wsPortFromSearch(location.search);
    if (fromQuery !== null) {
      return { port: fromQuery, source: "?ws=" };
    }
    // A page opened from file:// has no server to ask.
    if (location.protocol === "http:" || location.protocol === "https:") {
      const fromConfig = await fetchConfigPort(fetchImpl || window.fetch.bind(window));
      if (fromConfig !== null) {
        return { port: fromConfig, source: CONFIG_URL };
      }
    }
    return { port: DEFAULT_WS_PORT, source: "default" };
  }

  async function fetchConfigPort(fetchImpl) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), CONFIG_TIMEOUT_MS);
    try {
      const response = await fetchImpl(CONFIG_URL, {
        cache: "no-store",
        signal: controller.signal,
        headers: { Accept: "application/json" },
      });
      if (!response.ok) {
        return null;
      }
      const config = await response.json();
      return config && typeof config === "object" ? parsePort(config.ws_port) : null;
    } catch (error) {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The log: an ordered list of entries, newest last, at most MAX_LOG_ENTRIES long.

  const DIRECTION_LABELS = Object.freeze({
    sent: "↑ sent",
    received: "↓ received",
    info: "• info",
    error: "! error",
  });

  class MessageLog {
    constructor(list) {
      this.list = list;
      // Whether to keep the newest entry in view. Read from the scroll position only when the
      // reader scrolls: reading it on every add would force a layout per message.
      this.following = true;
      this.scrollQueued = false;
      list.addEventListener(
        "scroll",
        () => {
          if (!this.scrollQueued) {
            this.following = this.isNearBottom();
          }
        },
        { passive: true },
      );
    }

    /** Add an entry; returns its <li> so a caller can add to it (the round-trip time). */
    add(direction, text) {
      const now = new Date();
      const item = document.createElement("li");
      item.className = "entry " + direction;

      const stamp = document.createElement("time");
      stamp.className = "stamp";
      stamp.dateTime = now.toISOString();
      stamp.textContent = formatTime(now);

      const label = document.createElement("span");
      label.className = "direction";
      label.textContent = DIRECTION_LABELS[direction] || direction;

      const body = document.createElement("span");
      body.className = "text";
      body.textContent = shorten(text);
      if (text === "") {
        body.classList.add("empty");
        body.textContent = "(empty message)";
      }

      item.append(stamp, label, body);
      this.list.append(item);
      while (this.list.childElementCount > MAX_LOG_ENTRIES) {
        this.list.firstElementChild.remove();
      }
      this.followNewest();
      return item;
    }

    /** Scroll to the newest entry once per frame, however many entries arrived in it. */
    followNewest() {
      if (!this.following || this.scrollQueued) {
        return;
      }
      this.scrollQueued = true;
      requestAnimationFrame(() => {
        this.scrollQueued = false;
        this.list.scrollTop = this.list.scrollHeight;
      });
    }

    addRtt(item, ms) {
      const rtt = document.createElement("span");
      rtt.className = "rtt";
      rtt.title = "round-trip time";
      rtt.textContent = formatRtt(ms);
      item.append(rtt);
    }

    clear() {
      this.list.replaceChildren();
      this.following = true;
    }

    isNearBottom() {
      const list = this.list;
      return list.scrollHeight - list.scrollTop - list.clientHeight <= FOLLOW_SLACK_PX;
    }
  }

  function shorten(text) {
    if (text.length <= MAX_SHOWN_CHARS) {
      return text;
    }
    const more = text.length - MAX_SHOWN_CHARS;
    return text.slice(0, MAX_SHOWN_CHARS) + "… (" + more + " more characters)";
  }

  function describeBinary(data) {
    const size = data instanceof ArrayBuffer ? data.byteLength : data.size;
    return "(binary message, " + size + " bytes)";
  }

  // ---------------------------------------------------------------------------------------------
  // A connection panel: one WebSocket, its buttons, status, notice, message box and log.

  /**
   * Drive one panel element. Parts are found by data-role inside `root`; all but connect,
   * disconnect, status and log are optional, so a receive-only panel can leave them out.
   *
   * options.url: the WebSocket URL; options.heartbeat: offer the "*" every second;
   * options.matchEchoes: pair each received message with the oldest equal sent one and show
   * the round-trip time (right for an echo server, which answers in order).
   */
  class ConnectionPanel {
    constructor(root, options) {
      this.root = root;
      this.url = options.url;
      this.matchEchoes = options.matchEchoes !== false;
      this.heartbeat = options.heartbeat === true;
      this.socket = null;
      this.opened = false;
      this.closeRequested = false;
      this.heartbeatTimer = null;
      this.pending = [];

      const part = (role) => root.querySelector('[data-role="' + role + '"]');
      this.parts = {
        connect: part("connect"),
        disconnect: part("disconnect"),
        status: part("status"),
        url: part("url"),
        notice: part("notice"),
        heartbeat: part("heartbeat"),
        compose: part("compose"),
        message: part("message"),
        send: part("send"),
        clear: part("clear"),
      };
      this.log = new MessageLog(part("log"));

      this.parts.connect.addEventListener("click", () => this.connect());
      this.parts.disconnect.addEventListener("click", () => this.disconnect());
      if (this.parts.compose) {
        this.parts.compose.addEventListener("submit", (event) => {
          event.preventDefault();
          this.sendTyped();
        });
      }
      if (this.parts.clear) {
        this.parts.clear.addEventListener("click", () => this.log.clear());
      }
      if (this.parts.heartbeat) {
        (this.parts.heartbeat.closest("label") || this.parts.heartbeat).hidden = !this.heartbeat;
        this.parts.heartbeat.addEventListener("change", () => this.updateHeartbeat());
      }
      if (this.parts.url) {
        this.parts.url.textContent = this.url;
      }
      this.render("disconnected", "disconnected");
    }

    get state() {
      return this.root.dataset.state;
    }

    connect() {
      if (this.socket) {
        return;
      }
      this.hideNotice();
      this.opened = false;
      this.closeRequested = false;
      this.pending = [];
      let socket;
      try {
        socket = new WebSocket(this.url);
      } catch (error) {
        // Only a malformed URL throws here; an unreachable server arrives as a close event.
        this.log.add("error", "Cannot open " + this.url + ": " + error.message);
        this.showNotice("error", ["The WebSocket address ", code(this.url), " is not valid."]);
        return;
      }
      socket.binaryType = "arraybuffer";
      socket.addEventListener("open", () => this.onOpen(socket));
      socket.addEventListener("message", (event) => this.onMessage(socket, event));
      socket.addEventListener("close", (event) => this.onClose(socket, event));
      this.socket = socket;
      this.log.add("info", "Connecting to " + this.url);
      this.render("connecting", "connecting");
    }

    disconnect() {
      const socket = this.socket;
      if (!socket || socket.readyState >= WebSocket.CLOSING) {
        return;
      }
      this.closeRequested = true;
      this.stopHeartbeat();
      if (socket.readyState === WebSocket.CONNECTING) {
        // Closing a socket that never opened cancels the attempt (the browser reports 1006).
        socket.close();
      } else {
        socket.close(1000);
      }
      this.render("closing", "closing");
    }

    /** Send text if connected; returns whether it went out. */
    send(text) {
      const socket = this.socket;
      if (!socket || socket.readyState !== WebSocket.OPEN) {
        return false;
      }
      socket.send(text);
      const item = this.log.add("sent", text);
      if (this.matchEchoes) {
        this.pending.push({ text: text, sentAt: performance.now(), item: item });
        if (this.pending.length > MAX_PENDING_ECHOES) {
          this.pending.shift();
        }
      }
      return true;
    }

    sendTyped() {
      const box = this.parts.message;
      if (box && this.send(box.value)) {
        box.value = "";
      }
      // Keep typing where you were, after a click on Send too.
      if (box && document.activeElement !== box) {
        box.focus();
      }
    }

    onOpen(socket) {
      if (socket !== this.socket) {
        return;
      }
      this.opened = true;
      this.log.add("info", "Connected");
      this.render("connected", "connected");
      this.updateHeartbeat();
    }

    onMessage(socket, event) {
      if (socket !== this.socket) {
        return;
      }
      const data = event.data;
      if (typeof data !== "string") {
        this.log.add("received", describeBinary(data));
        return;
      }
      const item = this.log.add("received", data);
      const sent = this.takePending(data);
      if (sent) {
        this.log.addRtt(item, performance.now() - sent.sentAt);
      }
    }

    /** The oldest send with this text; older unanswered sends are dropped (the echo is in order). */
    takePending(text) {
      const index = this.pending.findIndex((entry) => entry.text === text);
      if (index < 0) {
        return null;
      }
      return this.pending.splice(0, index + 1)[index];
    }

    onClose(socket, event) {
      if (socket !== this.socket) {
        return;
      }
      this.socket = null;
      this.stopHeartbeat();
      this.pending = [];
      const how = closeDescription(event.code, event.reason);

      if (!this.opened && this.closeRequested) {
        this.log.add("info", "Connection attempt cancelled");
        this.render("disconnected", "disconnected");
        return;
      }
      this.render("disconnected", "disconnected (" + how + ")");
      if (!this.opened) {
        // Never opened: nothing listens there, a firewall, or the server refused the handshake.
        this.log.add("error", "Could not reach " + this.url + " (" + how + ")");
        this.showNotice("error", [
          "Could not reach the WebSocket server at ",
          code(this.url),
          ". Is it running? Start it with ",
          code("make ws", "command"),
          " (or ",
          code("make demo", "command"),
          "). If it is running, it may have refused this page: its own output says why.",
        ]);
      } else if (this.closeRequested) {
        this.log.add("info", "Disconnected (" + how + ")");
      } else {
        // It was open and we did not ask to close: the server went away or closed it.
        this.log.add(event.wasClean ? "info" : "error", "Connection closed by the server (" + how + ")");
        const lost = event.wasClean
          ? "The server closed the connection ("
          : "The connection to the server was lost (";
        this.showNotice(event.wasClean ? "info" : "error", [
          lost,
          how,
          "). Press Connect to connect again.",
        ]);
      }
    }

    updateHeartbeat() {
      const wanted =
        this.heartbeat &&
        this.socket !== null &&
        this.socket.readyState === WebSocket.OPEN &&
        (!this.parts.heartbeat || this.parts.heartbeat.checked);
      if (wanted && this.heartbeatTimer === null) {
        this.heartbeatTimer = setInterval(() => this.beat(), HEARTBEAT_INTERVAL_MS);
        this.beat();
      } else if (!wanted) {
        this.stopHeartbeat();
      }
    }

    beat() {
      if (this.socket && this.socket.bufferedAmount <= MAX_BUFFERED_BYTES) {
        this.send(HEARTBEAT_TEXT);
      }
    }

    stopHeartbeat() {
      if (this.heartbeatTimer !== null) {
        clearInterval(this.heartbeatTimer);
        this.heartbeatTimer = null;
      }
    }

    /** Show `state` (a CSS hook) and `text`; enable only the buttons that make sense now. */
    render(state, text) {
      this.root.dataset.state = state;
      this.parts.status.textContent = text;
      const open = state === "connected";
      this.parts.connect.disabled = state !== "disconnected";
      this.parts.disconnect.disabled = !(state === "connecting" || open);
      if (this.parts.send) {
        this.parts.send.disabled = !open;
      }
    }

    showNotice(kind, pieces) {
      const notice = this.parts.notice;
      if (!notice) {
        return;
      }
      notice.classList.toggle("notice-error", kind === "error");
      notice.classList.toggle("notice-info", kind !== "error");
      notice.replaceChildren(...pieces);
      notice.hidden = false;
    }

    hideNotice() {
      if (this.parts.notice) {
        this.parts.notice.hidden = true;
        this.parts.notice.replaceChildren();
      }
    }
  }

  function code(text, className) {
    const element = document.createElement("code");
    element.textContent = text;
    if (className) {
      element.className = className;
    }
    return element;
  }

  // ---------------------------------------------------------------------------------------------
  // Start-up: work out the address once, then build the panels.

  const panels = {};

  async function start() {
    const location = window.location;
    const params = new URLSearchParams(location.search);
    const { port, source } = await resolveWsPort(location);
    const echoRoot = document.getElementById("echo-panel");
    const path = pathFromSearch(location.search);
    const echo = new ConnectionPanel(echoRoot, {
      url: wsUrlFor(location, port, path || DEFAULT_PATH),
      heartbeat: true,
      matchEchoes: true,
    });
    panels.echo = echo;
    if (params.has("ws") && source !== "?ws=") {
      echo.log.add("info", "Ignored ?ws=" + params.get("ws") + ": not a port number (1-65535)");
    }
    if (path === null) {
      echo.log.add("info", "Ignored ?path=" + params.get("path") + ": not a usable path");
    }
    document.documentElement.dataset.ready = "true";
    if (params.get("autoconnect") === "1") {
      echo.connect();
    }
  }

  window.echoPage = Object.freeze({
    DEFAULT_WS_PORT: DEFAULT_WS_PORT,
    MAX_LOG_ENTRIES: MAX_LOG_ENTRIES,
    urlHost: urlHost,
    parsePort: parsePort,
    wsPortFromSearch: wsPortFromSearch,
    pathFromSearch: pathFromSearch,
    wsUrlFor: wsUrlFor,
    closeDescription: closeDescription,
    formatTime: formatTime,
    resolveWsPort: resolveWsPort,
    ConnectionPanel: ConnectionPanel,
    panels: panels,
  });

  start().catch((error) => {
    // Only broken markup gets here; say so on the page rather than fail silently.
    const notice = document.getElementById("notice");
    if (notice) {
      notice.textContent = "This page could not start: " + error.message;
      notice.classList.add("notice-error");
      notice.hidden = false;
    }
    throw error;
  });
})();
