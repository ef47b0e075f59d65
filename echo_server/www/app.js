/*
 * The echo_server test page: tabs of connection panels, each opening its own WebSocket.
 *
 * What this file is for: working out the WebSocket address from the page's own address, and
 * driving one "connection panel" (Connect / Disconnect, status, notice) per server path: Echo
 * (a log and a message box, round-trip times), Chat (the same, with a name), Tick (a shared
 * counter and the server's clock), Live (a chart of a value, drawn on a canvas by this file) and
 * Stats (a table of the server's counters). Tabs show one panel at a time; the address's #hash
 * picks the tab, so a link can open one.
 *
 * What it is not: a WebSocket client library, a charting library, a framework or a build. It is
 * one plain script, with no dependencies, that works offline and from file://, under the page
 * server's strict Content-Security-Policy (so: no inline code, no eval, no innerHTML; text goes
 * in via textContent, which also keeps whatever a server sends from ever becoming markup).
 *
 * The address and formatting functions are pure and exposed on window.echoPage, so tests can
 * call them with values a test server could not produce (https, IPv6, a day of uptime).
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

  // The push routes, one per panel; Echo's path can be changed with ?path=.
  const CHAT_PATH = "/chat";
  const TICK_PATH = "/tick";
  const STREAM_PATH = "/stream";
  const STATS_PATH = "/stats";
  const CHAT_NAME_KEY = "echo_server.chat.name";
  // How many recent arrivals the clock comparison looks at: enough to find one that was not
  // held up on the way, few enough to follow a clock that is being corrected.
  const CLOCK_SAMPLES = 30;
  // The Live chart: the time it shows, how often it scrolls without new data, and a bound on
  // the points kept (a fast server must not grow the array without end).
  const CHART_WINDOW_S = 60;
  const CHART_SCROLL_INTERVAL_MS = 1000;
  const MAX_CHART_POINTS = 5000;
  const CHART_LINE_WIDTH_PX = 2;
  const CHART_FONT_PX = 12;

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

  /** Local wall-clock time as HH:MM:SS, for a clock face and chart labels. */
  function formatClock(date) {
    return formatTime(date).slice(0, 8);
  }

  /** A duration for people: "42 s", "3 min 05 s", "2 h 03 min", "4 d 02 h". */
  function formatDuration(seconds) {
    const total = Math.max(0, Math.floor(seconds));
    const pad = (number) => String(number).padStart(2, "0");
    const days = Math.floor(total / 86400);
    const hours = Math.floor((total % 86400) / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const secs = total % 60;
    if (days > 0) {
      return days + " d " + pad(hours) + " h";
    }
    if (hours > 0) {
      return hours + " h " + pad(minutes) + " min";
    }
    if (minutes > 0) {
      return minutes + " min " + pad(secs) + " s";
    }
    return secs + " s";
  }

  /** A byte count for people, in powers of 1024: "512 B", "1.5 KiB", "12.3 MiB". */
  function formatBytes(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = Math.max(0, bytes);
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    if (unit === 0) {
      return value + " B";
    }
    return (value < 10 ? value.toFixed(1) : String(Math.round(value))) + " " + units[unit];
  }

  /**
   * How far this device's clock is from the server's, given local minus server in seconds:
   * "12 ms ahead", "3.5 s behind", "in step" (under a millisecond).
   */
  function formatOffset(seconds) {
    const size = Math.abs(seconds);
    if (size < 0.0005) {
      return "in step";
    }
    let amount;
    if (size < 1) {
      amount = Math.round(size * 1000) + " ms";
    } else if (size < 60) {
      amount = size.toFixed(1) + " s";
    } else {
      amount = formatDuration(size);
    }
    return amount + (seconds > 0 ? " ahead" : " behind");
  }

  const NUMBER_FORMAT = new Intl.NumberFormat();

  function formatCount(number) {
    return NUMBER_FORMAT.format(number);
  }

  /** A round step for axis labels near `rough`: 1, 2 or 5 times a power of ten, at least 1. */
  function niceStep(rough) {
    if (!(rough > 1)) {
      return 1;
    }
    const power = Math.pow(10, Math.floor(Math.log10(rough)));
    const scaled = rough / power;
    const nice = scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10;
    return nice * power;
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

    addRtt(item, ms, title) {
      const rtt = document.createElement("span");
      rtt.className = "rtt";
      rtt.title = title || "round-trip time";
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
  // A connection panel: one WebSocket, its buttons, status and notice, and what it shows.

  /** The element with data-role=`role` inside `root`, or null. */
  function part(root, role) {
    return root.querySelector('[data-role="' + role + '"]');
  }

  /**
   * Drive one panel element. Parts are found by data-role inside `root`; all but connect,
   * disconnect and status are optional: Echo and Chat have a log and a message box, the
   * receive-only panels (Tick, Live, Stats) show what arrives in their own way.
   *
   * options.url: the WebSocket URL; options.heartbeat: offer the "*" every second;
   * options.matchEchoes: pair each received message with the oldest equal sent one and show
   * the round-trip time (right for an echo server, which answers in order).
   *
   * A subclass changes what happens to a message by overriding received(data) and outgoing(text),
   * and hears about the connection through didOpen() and didClose().
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

      this.parts = {
        connect: part(root, "connect"),
        disconnect: part(root, "disconnect"),
        status: part(root, "status"),
        url: part(root, "url"),
        notice: part(root, "notice"),
        heartbeat: part(root, "heartbeat"),
        compose: part(root, "compose"),
        message: part(root, "message"),
        send: part(root, "send"),
        clear: part(root, "clear"),
      };
      const list = part(root, "log");
      this.log = list ? new MessageLog(list) : null;

      this.parts.connect.addEventListener("click", () => this.connect());
      this.parts.disconnect.addEventListener("click", () => this.disconnect());
      if (this.parts.compose) {
        this.parts.compose.addEventListener("submit", (event) => {
          event.preventDefault();
          this.sendTyped();
        });
      }
      if (this.parts.clear && this.log) {
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

    /** Add a log entry if this panel has a log; returns the entry or null. */
    note(direction, text) {
      return this.log ? this.log.add(direction, text) : null;
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
        this.note("error", "Cannot open " + this.url + ": " + error.message);
        this.showNotice("error", ["The WebSocket address ", code(this.url), " is not valid."]);
        return;
      }
      socket.binaryType = "arraybuffer";
      socket.addEventListener("open", () => this.onOpen(socket));
      socket.addEventListener("message", (event) => this.onMessage(socket, event));
      socket.addEventListener("close", (event) => this.onClose(socket, event));
      this.socket = socket;
      this.note("info", "Connecting to " + this.url);
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
      const item = this.note("sent", text);
      if (this.matchEchoes) {
        this.pending.push({ text: text, sentAt: performance.now(), item: item });
        if (this.pending.length > MAX_PENDING_ECHOES) {
          this.pending.shift();
        }
      }
      return true;
    }

    /** What to send for the text typed in the message box, or null to send nothing. */
    outgoing(text) {
      return text;
    }

    sendTyped() {
      const box = this.parts.message;
      if (box) {
        const text = this.outgoing(box.value);
        if (text !== null && this.send(text)) {
          box.value = "";
        }
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
      this.note("info", "Connected");
      this.render("connected", "connected");
      this.updateHeartbeat();
      this.didOpen();
    }

    onMessage(socket, event) {
      if (socket === this.socket) {
        this.received(event.data);
      }
    }

    /** A message from the server: logged, with its round-trip time if it is an echo of ours. */
    received(data) {
      if (typeof data !== "string") {
        this.note("received", describeBinary(data));
        return;
      }
      const item = this.note("received", data);
      const sent = this.takePending(data);
      if (sent && item) {
        this.log.addRtt(item, performance.now() - sent.sentAt);
      }
    }

    /** Called once the connection is open, after the status says so. */
    didOpen() {}

    /** Called once the connection is gone, whether it ever opened or not. */
    didClose() {}

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
      this.didClose();
      const how = closeDescription(event.code, event.reason);

      if (!this.opened && this.closeRequested) {
        this.note("info", "Connection attempt cancelled");
        this.render("disconnected", "disconnected");
        return;
      }
      this.render("disconnected", "disconnected (" + how + ")");
      if (!this.opened) {
        // Never opened: nothing listens there, a firewall, or the server refused the handshake.
        this.note("error", "Could not reach " + this.url + " (" + how + ")");
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
        this.note("info", "Disconnected (" + how + ")");
      } else {
        // It was open and we did not ask to close: the server went away or closed it.
        this.note(event.wasClean ? "info" : "error", "Connection closed by the server (" + how + ")");
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

  /** A remembered setting, or "" when there is none or the browser keeps nothing (private mode). */
  function loadSetting(key) {
    try {
      return window.localStorage.getItem(key) || "";
    } catch (error) {
      return "";
    }
  }

  function saveSetting(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (error) {
      // Not remembered for next time; the name still works now.
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Chat: the Echo panel's log and message box, with a name, for a route that sends everything
  // to everyone.

  class ChatPanel extends ConnectionPanel {
    constructor(root, options) {
      super(root, { ...options, heartbeat: false, matchEchoes: true });
      this.name = part(root, "name");
      if (this.name) {
        this.name.value = loadSetting(CHAT_NAME_KEY);
        this.name.addEventListener("change", () => {
          saveSetting(CHAT_NAME_KEY, this.name.value.trim());
        });
      }
    }

    /** "name: text", or just the text without a name; nothing for an empty message. */
    outgoing(text) {
      const message = text.trim();
      if (message === "") {
        return null;
      }
      const name = this.name ? this.name.value.trim() : "";
      return name === "" ? message : name + ": " + message;
    }

    received(data) {
      const sent = typeof data === "string" ? this.takePending(data) : null;
      if (sent && sent.item) {
        // Our own message, back from the server, has reached everyone: mark the entry we
        // showed when it was sent rather than show it twice.
        sent.item.classList.add("delivered");
        this.log.addRtt(sent.item, performance.now() - sent.sentAt, "time to reach everyone");
        return;
      }
      this.note("received", typeof data === "string" ? data : describeBinary(data));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Receive-only panels for routes that push JSON: Tick, Live and Stats.

  /**
   * A panel that shows JSON objects as they arrive. A subclass's show(message) returns whether
   * the message was one it understands; anything else is counted and explained once.
   */
  class FeedPanel extends ConnectionPanel {
    constructor(root, options) {
      super(root, { ...options, heartbeat: false, matchEchoes: false });
      this.ignoredCount = 0;
    }

    received(data) {
      let message = null;
      if (typeof data === "string") {
        try {
          message = JSON.parse(data);
        } catch (error) {
          message = null;
        }
      }
      if (message !== null && typeof message === "object" && this.show(message)) {
        return;
      }
      this.ignoredCount += 1;
      // Once per connection is enough to explain a panel that stays empty.
      if (this.ignoredCount === 1) {
        this.showNotice("info", [
          "The server at ",
          code(this.url),
          " sent something this panel does not understand. Is it an echo_server?",
        ]);
      }
    }

    didOpen() {
      this.ignoredCount = 0;
    }

    show(message) {
      return false;
    }
  }

  /**
   * How far this device's clock is from the server's, from messages stamped with the server's
   * time. Each arrival gives (local clock - server clock) plus the time the message travelled;
   * the smallest of the recent ones travelled fastest, so it is the best estimate.
   */
  class ClockOffset {
    constructor() {
      this.samples = [];
    }

    add(serverTimeS) {
      this.samples.push(Date.now() / 1000 - serverTimeS);
      if (this.samples.length > CLOCK_SAMPLES) {
        this.samples.shift();
      }
    }

    reset() {
      this.samples = [];
    }

    /** Local minus server time in seconds; 0 until a message has arrived. */
    estimate() {
      return this.samples.length > 0 ? Math.min(...this.samples) : 0;
    }

    /** The server's time now, in Unix seconds, as far as this page can tell. */
    serverNow() {
      return Date.now() / 1000 - this.estimate();
    }
  }

  /** Tick: the server's second counter, big, its clock, and how far ours is from it. */
  class TickPanel extends FeedPanel {
    constructor(root, options) {
      super(root, options);
      this.value = part(root, "value");
      this.time = part(root, "time");
      this.offset = part(root, "offset");
      this.clock = new ClockOffset();
    }

    didOpen() {
      super.didOpen();
      this.clock.reset();
    }

    show(message) {
      if (!Number.isFinite(message.tick) || !Number.isFinite(message.time)) {
        return false;
      }
      this.clock.add(message.time);
      this.value.textContent = formatCount(message.tick);
      const serverTime = new Date(message.time * 1000);
      this.time.textContent = formatClock(serverTime);
      this.time.dateTime = serverTime.toISOString();
      this.offset.textContent = formatOffset(this.clock.estimate());
      this.pulse();
      return true;
    }

    /** A short fade says "that was a tick", unless the reader asked for less motion. */
    pulse() {
      if (window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
        return;
      }
      this.value.animate([{ opacity: 0.4 }, { opacity: 1 }], { duration: 450, easing: "ease-out" });
    }
  }

  /** The points from the last one at or before `start` (the line's height at the left edge) on. */
  function pointsSince(points, start) {
    for (let index = points.length - 1; index >= 0; index -= 1) {
      if (points[index].t <= start) {
        return points.slice(index);
      }
    }
    return points.slice();
  }

  /** Round axis values covering low..high in about `count` steps: {low, high, values}. */
  function axisTicks(low, high, count) {
    const step = niceStep((high - low) / Math.max(1, count));
    const bottom = Math.floor(low / step) * step;
    const top = Math.max(Math.ceil(high / step) * step, bottom + step);
    const values = [];
    for (let value = bottom; value <= top; value += step) {
      values.push(value);
    }
    return { low: bottom, high: top, values: values };
  }

  /**
   * A step chart of {t, v} points (t in Unix seconds) over the CHART_WINDOW_S seconds up to
   * `end`, drawn on a canvas. It draws only when asked, at most once per animation frame; it
   * sizes the canvas in device pixels and puts lines on whole pixels, so they stay crisp on a
   * phone's dense screen; it takes its colours from CSS, so it follows dark mode.
   *
   * `source()` returns {points, end, empty}: what to draw, and the text for no points.
   */
  class LiveChart {
    constructor(canvas, source) {
      this.canvas = canvas;
      this.context = canvas.getContext("2d");
      this.source = source;
      this.frame = null;
      // A new size (the tab shown, a phone turned) needs a new backing store and a redraw.
      new ResizeObserver(() => this.request()).observe(canvas);
      // Dark mode turned on or off: new colours.
      window
        .matchMedia("(prefers-color-scheme: dark)")
        .addEventListener("change", () => this.request());
    }

    request() {
      if (this.frame === null) {
        this.frame = requestAnimationFrame(() => {
          this.frame = null;
          this.draw();
        });
      }
    }

    draw() {
      const canvas = this.canvas;
      const width = canvas.clientWidth;
      const height = canvas.clientHeight;
      if (width === 0 || height === 0) {
        // In a hidden tab; the ResizeObserver asks again when it is shown.
        return;
      }
      const ratio = window.devicePixelRatio || 1;
      const pixelWidth = Math.round(width * ratio);
      const pixelHeight = Math.round(height * ratio);
      if (canvas.width !== pixelWidth || canvas.height !== pixelHeight) {
        canvas.width = pixelWidth;
        canvas.height = pixelHeight;
      }
      const ctx = this.context;
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);

      const style = getComputedStyle(canvas);
      const colors = {
        line: style.color,
        fill: style.getPropertyValue("--chart-fill").trim() || "transparent",
        grid: style.getPropertyValue("--chart-grid").trim() || "gray",
        axis: style.getPropertyValue("--chart-axis").trim() || "gray",
        label: style.getPropertyValue("--chart-label").trim() || "gray",
      };
      ctx.font = CHART_FONT_PX + "px " + style.fontFamily;

      const { points, end, empty } = this.source();
      const start = end - CHART_WINDOW_S;
      const shown = pointsSince(points, start);
      const values = shown.map((point) => point.v);
      const low = values.length > 0 ? Math.min(...values) : 0;
      const high = values.length > 0 ? Math.max(...values) : 10;
      const labelsWanted = Math.max(2, Math.floor(height / 56));
      const ticks = axisTicks(low, high, labelsWanted);
      const labelWidths = ticks.values.map((value) => ctx.measureText(formatCount(value)).width);
      const labelWidth = Math.max(...labelWidths);
      const plot = {
        left: Math.ceil(labelWidth) + 12,
        right: width - 14,
        top: 12,
        bottom: height - CHART_FONT_PX - 14,
      };
      const x = (t) => {
        const clamped = Math.min(Math.max(t, start), end);
        return plot.left + ((clamped - start) / CHART_WINDOW_S) * (plot.right - plot.left);
      };
      const y = (v) =>
        plot.bottom - ((v - ticks.low) / (ticks.high - ticks.low)) * (plot.bottom - plot.top);
      // On a whole device pixel, or between two for an odd width, so a line is never blurred
      // across two rows of pixels.
      const snap = (value, widthPx) => {
        const device = Math.round(value * ratio);
        return (widthPx % 2 === 1 ? device + 0.5 : device) / ratio;
      };

      // Grid and labels: a line per round value, a line every few seconds of clock time.
      const gridPx = Math.max(1, Math.round(ratio));
      ctx.lineWidth = gridPx / ratio;
      ctx.strokeStyle = colors.grid;
      ctx.fillStyle = colors.label;
      ctx.beginPath();
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (const value of ticks.values) {
        const py = snap(y(value), gridPx);
        ctx.moveTo(plot.left, py);
        ctx.lineTo(plot.right, py);
        ctx.fillText(formatCount(value), plot.left - 8, py);
      }
      const plotWidth = plot.right - plot.left;
      const stepS = plotWidth >= 640 ? 10 : plotWidth >= 300 ? 15 : 30;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      for (let t = Math.ceil(start / stepS) * stepS; t <= end; t += stepS) {
        const px = snap(x(t), gridPx);
        ctx.moveTo(px, plot.top);
        ctx.lineTo(px, plot.bottom);
        const label = formatClock(new Date(t * 1000));
        const half = ctx.measureText(label).width / 2;
        if (px - half >= 0 && px + half <= width) {
          ctx.fillText(label, px, plot.bottom + 7);
        }
      }
      ctx.stroke();
      ctx.strokeStyle = colors.axis;
      ctx.beginPath();
      const axisY = snap(plot.bottom, gridPx);
      ctx.moveTo(plot.left, axisY);
      ctx.lineTo(plot.right, axisY);
      ctx.stroke();

      if (shown.length === 0) {
        ctx.fillStyle = colors.label;
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText(empty, (plot.left + plot.right) / 2, (plot.top + plot.bottom) / 2);
        return;
      }

      // The value holds until it changes, so the line is a staircase, on to the window's end.
      const linePx = Math.max(1, Math.round(CHART_LINE_WIDTH_PX * ratio));
      const line = new Path2D();
      let firstX = 0;
      let lastY = 0;
      shown.forEach((point, index) => {
        const px = snap(x(point.t), linePx);
        const py = snap(y(point.v), linePx);
        if (index === 0) {
          line.moveTo(px, py);
          firstX = px;
        } else {
          line.lineTo(px, lastY);
          line.lineTo(px, py);
        }
        lastY = py;
      });
      const endX = snap(x(end), linePx);
      line.lineTo(endX, lastY);

      const area = new Path2D(line);
      area.lineTo(endX, plot.bottom);
      area.lineTo(firstX, plot.bottom);
      area.closePath();
      ctx.fillStyle = colors.fill;
      ctx.fill(area);

      ctx.strokeStyle = colors.line;
      ctx.lineWidth = linePx / ratio;
      ctx.lineJoin = "miter";
      ctx.stroke(line);

      // The latest value, at the right end of the line.
      ctx.fillStyle = colors.line;
      ctx.beginPath();
      ctx.arc(endX, lastY, 4, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  /** Live: a chart of the /stream value over the last minute, and the latest value. */
  class LivePanel extends FeedPanel {
    constructor(root, options) {
      super(root, options);
      // {t: Unix seconds (server time), v: value}, oldest first. Exposed for tests.
      this.points = [];
      this.clock = new ClockOffset();
      this.value = part(root, "value");
      this.summary = part(root, "summary");
      // The chart's right edge while not connected: where the data stopped.
      this.frozenEnd = null;
      this.scrollTimer = null;
      this.chart = new LiveChart(part(root, "chart"), () => ({
        points: this.points,
        end: this.windowEnd(),
        empty: this.socket ? "Waiting for the first value…" : "Press Connect to draw the value",
      }));
    }

    didOpen() {
      super.didOpen();
      // A new connection starts a new line: joining it to the old one would draw a flat step
      // across the time it was away.
      this.points.splice(0);
      this.clock.reset();
      this.frozenEnd = null;
      this.scrollTimer = setInterval(() => this.scroll(), CHART_SCROLL_INTERVAL_MS);
      this.chart.request();
    }

    didClose() {
      if (this.scrollTimer !== null) {
        clearInterval(this.scrollTimer);
        this.scrollTimer = null;
      }
      this.frozenEnd = this.clock.serverNow();
      this.chart.request();
    }

    show(message) {
      if (!Number.isFinite(message.variable) || !Number.isFinite(message.time)) {
        return false;
      }
      this.clock.add(message.time);
      this.points.push({ t: message.time, v: message.variable });
      this.prune();
      this.value.textContent = formatCount(message.variable);
      this.summarize();
      this.chart.request();
      return true;
    }

    /** Once a second with no new value: the window moves on, so the chart must too. */
    scroll() {
      this.prune();
      this.summarize();
      this.chart.request();
    }

    windowEnd() {
      return this.frozenEnd !== null ? this.frozenEnd : this.clock.serverNow();
    }

    /** Drop points that have left the window, but the one that gives the left edge's height. */
    prune() {
      const start = this.windowEnd() - CHART_WINDOW_S;
      let firstKept = 0;
      while (firstKept + 1 < this.points.length && this.points[firstKept + 1].t <= start) {
        firstKept += 1;
      }
      firstKept = Math.max(firstKept, this.points.length - MAX_CHART_POINTS);
      if (firstKept > 0) {
        this.points.splice(0, firstKept);
      }
    }

    /** The chart in words, for everyone who cannot see it. */
    summarize() {
      const start = this.windowEnd() - CHART_WINDOW_S;
      const recent = this.points.filter((point) => point.t > start).map((point) => point.v);
      if (this.points.length === 0) {
        this.summary.textContent = "No values yet.";
      } else if (recent.length === 0) {
        this.summary.textContent = "No change in the last minute.";
      } else {
        const count = recent.length === 1 ? "1 value" : formatCount(recent.length) + " values";
        this.summary.textContent =
          count +
          " in the last minute, from " +
          formatCount(Math.min(...recent)) +
          " to " +
          formatCount(Math.max(...recent)) +
          ".";
      }
    }
  }

  // What each path is for, in the statistics table.
  const ROUTE_NAMES = Object.freeze({
    "/": "echo",
    "/echo": "echo",
    "/chat": "chat",
    "/tick": "tick",
    "/stream": "live chart",
    "/stats": "statistics",
  });

  /** Stats: a table from the server's statistics, refreshed as they arrive. */
  class StatsPanel extends FeedPanel {
    constructor(root, options) {
      super(root, options);
      this.table = part(root, "table");
      this.updated = part(root, "updated");
      // () => {"/": 1, "/stats": 1}: which of this page's panels are connected where.
      this.ownConnections = options.ownConnections || (() => ({}));
      this.lastUpdate = null;
    }

    show(stats) {
      const connections = stats.connections;
      const perRoute = connections && connections.per_route;
      if (!perRoute || typeof perRoute !== "object") {
        return false;
      }
      const own = this.ownConnections();
      const routeRows = Object.keys(perRoute).map((route) => {
        // This page's share first, so that the counts line up at the right edge.
        const value = own[route] ? [span("own", "this page: " + own[route]), " "] : [];
        value.push(span("count", countText(perRoute[route])));
        const name = [code(route), " ", span("route-name", ROUTE_NAMES[route] || "")];
        const row = tableRow(name, value);
        row.dataset.route = route;
        row.classList.add("route");
        return row;
      });
      this.table.replaceChildren(
        ...(this.table.caption ? [this.table.caption] : []),
        rowGroup(null, [tableRow(["Uptime"], [formatDuration(Number(stats.uptime_s) || 0)])]),
        rowGroup("Connections now", [
          tableRow(["Open"], [countText(connections.total)]),
          tableRow(["Still handshaking"], [countText(connections.handshaking)]),
          ...routeRows,
        ]),
        rowGroup("Since the server started", [
          tableRow(["Connections accepted"], [countText(stats.accepted)]),
          tableRow(["Connections refused"], [countText(stats.refused)]),
          tableRow(["Messages in"], [countText(stats.messages_in)]),
          tableRow(["Messages out"], [countText(stats.messages_out)]),
          bytesRow("Bytes in", stats.bytes_in),
          bytesRow("Bytes out", stats.bytes_out),
        ]),
      );
      this.lastUpdate = new Date();
      this.updated.textContent = "Updated " + formatClock(this.lastUpdate) + ", every second.";
      return true;
    }

    didClose() {
      if (this.lastUpdate) {
        this.updated.textContent =
          "Last updated " + formatClock(this.lastUpdate) + "; not connected now.";
      }
    }
  }

  function countText(value) {
    return Number.isFinite(value) ? formatCount(value) : "–";
  }

  function span(className, text) {
    const element = document.createElement("span");
    element.className = className;
    element.textContent = text;
    return element;
  }

  /** A table row: a header cell and a value cell, each from text and elements. */
  function tableRow(header, value) {
    const row = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.append(...header);
    const td = document.createElement("td");
    td.append(...value);
    row.append(th, td);
    return row;
  }

  function bytesRow(label, bytes) {
    const row = tableRow([label], [Number.isFinite(bytes) ? formatBytes(bytes) : "–"]);
    if (Number.isFinite(bytes)) {
      row.cells[1].title = formatCount(bytes) + " bytes";
    }
    return row;
  }

  /** A <tbody> with an optional heading row. */
  function rowGroup(title, rows) {
    const body = document.createElement("tbody");
    if (title) {
      const heading = document.createElement("tr");
      heading.className = "group";
      const th = document.createElement("th");
      th.scope = "rowgroup";
      th.colSpan = 2;
      th.textContent = title;
      heading.append(th);
      body.append(heading);
    }
    body.append(...rows);
    return body;
  }

  // ---------------------------------------------------------------------------------------------
  // Tabs.

  /**
   * A WAI-ARIA tab list: a click, or the arrow keys, Home and End, choose a tab; one panel shows
   * at a time. The chosen tab's name goes in the address's hash (#chat) without a history entry
   * per click, so a reload or a shared link opens the same tab.
   */
  class Tabs {
    constructor(tablist) {
      this.tabs = Array.from(tablist.querySelectorAll('[role="tab"]'));
      for (const tab of this.tabs) {
        tab.addEventListener("click", () => this.select(tab, { remember: true }));
        tab.addEventListener("keydown", (event) => this.onKeydown(event, tab));
        // Each tab shows its panel's connection state, so a connection left open in another
        // tab is not forgotten.
        const panel = this.panelOf(tab);
        const mirror = () => {
          tab.dataset.state = panel.dataset.state || "";
        };
        new MutationObserver(mirror).observe(panel, {
          attributes: true,
          attributeFilter: ["data-state"],
        });
        mirror();
      }
    }

    get selectedName() {
      const chosen = this.tabs.find((tab) => tab.getAttribute("aria-selected") === "true");
      return (chosen || this.tabs[0]).dataset.tab;
    }

    panelOf(tab) {
      return document.getElementById(tab.getAttribute("aria-controls"));
    }

    /** Show the tab a hash names ("#chat"); returns whether it named one. */
    showHash(hash) {
      const name = String(hash || "")
        .replace(/^#/, "")
        .toLowerCase();
      const tab = this.tabs.find((candidate) => candidate.dataset.tab === name);
      if (tab) {
        this.select(tab, {});
      }
      return Boolean(tab);
    }

    select(tab, { focus = false, remember = false }) {
      for (const other of this.tabs) {
        const chosen = other === tab;
        other.setAttribute("aria-selected", String(chosen));
        // Roving tabindex: Tab goes to the chosen tab only, arrows move between tabs.
        other.tabIndex = chosen ? 0 : -1;
        this.panelOf(other).hidden = !chosen;
      }
      if (focus) {
        tab.focus();
      }
      if (remember) {
        rememberHash(tab.dataset.tab);
      }
    }

    onKeydown(event, tab) {
      if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) {
        return;
      }
      const index = this.tabs.indexOf(tab);
      const last = this.tabs.length - 1;
      const targets = {
        ArrowRight: index === last ? 0 : index + 1,
        ArrowLeft: index === 0 ? last : index - 1,
        Home: 0,
        End: last,
      };
      if (!(event.key in targets)) {
        return;
      }
      event.preventDefault();
      this.select(this.tabs[targets[event.key]], { focus: true, remember: true });
    }
  }

  function rememberHash(name) {
    const hash = "#" + name;
    if (window.location.hash === hash) {
      return;
    }
    try {
      // Not location.hash: that adds a history entry per click and scrolls to the target.
      window.history.replaceState(window.history.state, "", hash);
    } catch (error) {
      // A page from file:// may not rewrite its own address; the tab works all the same.
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Start-up: choose the tab, work out the address once, then build the panels.

  const panels = {};

  /** How many of this page's panels are connected to each path: {"/": 1, "/stats": 1}. */
  function ownConnections() {
    const counts = {};
    for (const panel of Object.values(panels)) {
      if (panel.state === "connected") {
        const route = new URL(panel.url).pathname;
        counts[route] = (counts[route] || 0) + 1;
      }
    }
    return counts;
  }

  async function start() {
    const location = window.location;
    const params = new URLSearchParams(location.search);
    // The tab before anything waits on the network, so the page never shows the wrong panel.
    const tabs = new Tabs(document.querySelector('[role="tablist"]'));
    tabs.showHash(location.hash);
    window.addEventListener("hashchange", () => tabs.showHash(window.location.hash));

    const { port, source } = await resolveWsPort(location);
    const path = pathFromSearch(location.search);
    const urlFor = (routePath) => wsUrlFor(location, port, routePath);
    const byId = (id) => document.getElementById(id);
    const echo = new ConnectionPanel(byId("echo-panel"), {
      url: urlFor(path || DEFAULT_PATH),
      heartbeat: true,
      matchEchoes: true,
    });
    panels.echo = echo;
    panels.chat = new ChatPanel(byId("chat-panel"), { url: urlFor(CHAT_PATH) });
    panels.tick = new TickPanel(byId("tick-panel"), { url: urlFor(TICK_PATH) });
    panels.live = new LivePanel(byId("live-panel"), { url: urlFor(STREAM_PATH) });
    panels.stats = new StatsPanel(byId("stats-panel"), {
      url: urlFor(STATS_PATH),
      ownConnections: ownConnections,
    });
    if (params.has("ws") && source !== "?ws=") {
      echo.log.add("info", "Ignored ?ws=" + params.get("ws") + ": not a port number (1-65535)");
    }
    if (path === null) {
      echo.log.add("info", "Ignored ?path=" + params.get("path") + ": not a usable path");
    }
    document.documentElement.dataset.ready = "true";
    if (params.get("autoconnect") === "1") {
      // The panel on show, so that ?autoconnect=1#chat is a link straight into the chat.
      panels[tabs.selectedName].connect();
    }
  }

  window.echoPage = Object.freeze({
    DEFAULT_WS_PORT: DEFAULT_WS_PORT,
    MAX_LOG_ENTRIES: MAX_LOG_ENTRIES,
    CHART_WINDOW_S: CHART_WINDOW_S,
    urlHost: urlHost,
    parsePort: parsePort,
    wsPortFromSearch: wsPortFromSearch,
    pathFromSearch: pathFromSearch,
    wsUrlFor: wsUrlFor,
    closeDescription: closeDescription,
    formatTime: formatTime,
    formatClock: formatClock,
    formatDuration: formatDuration,
    formatBytes: formatBytes,
    formatOffset: formatOffset,
    niceStep: niceStep,
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
