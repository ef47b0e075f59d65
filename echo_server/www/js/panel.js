/*
 * The connection panel: one WebSocket, its Connect and Disconnect buttons, its status and its
 * notice. Every tab of the page is one.
 *
 * What this file is for: the base class, ConnectionPanel: connecting and disconnecting, telling
 * a failed connect from a lost connection, and saying why a connect failed (the server's own
 * reason from its GET /refusal, or the subprotocol rule browsers keep); reconnecting by itself
 * after a lost connection (js/backoff.js's waits, counted down in the status); repeating a
 * message (by default "*" every second); the round-trip time of each echo; sending what is typed
 * as text, as bytes typed in hex, or a file's bytes; the sent messages recalled with the arrow
 * keys; the buttons that make sense in each state. A subclass (js/panels.js) decides what a
 * message does.
 *
 * What it is not: a WebSocket client library (it uses the browser's WebSocket as it is), or the
 * panels themselves.
 */
echoPage.define("panel", ["format", "log", "backoff"], function (page) {
  "use strict";

  const { closeDescription, MessageLog, describeBinary, parseHex, formatBytes, Backoff } = page;

  // The repeated message: by default "*" every second; never more often than every 10 ms.
  const HEARTBEAT_INTERVAL_MS = 1000;
  const MIN_REPEAT_INTERVAL_MS = 10;
  const MAX_REPEAT_INTERVAL_MS = 3600 * 1000;
  const HEARTBEAT_TEXT = "*";
  const HEX_PLACEHOLDER = "Bytes in hex, like 01 02 ff";
  // Sent messages the arrow keys bring back, newest last.
  const MAX_HISTORY = 50;
  // A file sent as one binary message: the server's default --max-message-size (a larger one
  // is closed with 1009 by a server that keeps the default); read whole into memory first.
  const MAX_FILE_BYTES = 1024 * 1024;
  // How long the page waits for the server's GET /refusal, and how much older than this attempt
  // a refusal may look (the server rounds its age) and still be this attempt's.
  const REFUSAL_TIMEOUT_MS = 3000;
  const REFUSAL_SLACK_MS = 200;
  // How often the "reconnecting in N s" countdown is brought up to date.
  const COUNTDOWN_TICK_MS = 250;
  // Sends waiting for their echo; bounded in case a server never echoes.
  const MAX_PENDING_ECHOES = 1000;
  // Skip a heartbeat rather than queue more behind a connection that is not draining.
  const MAX_BUFFERED_BYTES = 64 * 1024;

  /** The element with data-role=`role` inside `root`, or null. */
  function part(root, role) {
    return root.querySelector('[data-role="' + role + '"]');
  }

  /**
   * Drive one panel element. Parts are found by data-role inside `root`; all but connect,
   * disconnect and status are optional: Echo and Chat have a log and a message box, the
   * receive-only panels (Tick, Live, Stats) show what arrives in their own way.
   *
   * options.url: the WebSocket URL; options.closeCodes: the close codes' names, by code as text
   * (config.json's close_codes); options.heartbeat: offer the "*" every second;
   * options.matchEchoes: pair each received message with the oldest equal sent one and show
   * the round-trip time (right for an echo server, which answers in order);
   * options.reconnect: whether reconnecting by itself is on at first (the reconnect checkbox
   * can change it).
   *
   * A subclass changes what happens to a message by overriding received(data) and outgoing(text),
   * chooses the subprotocols to offer with protocols(), and hears about the connection through
   * didOpen() and didClose().
   *
   * The parts every panel has come from one <template> (see stampHead), stamped into the panel
   * before it is driven.
   */
  class ConnectionPanel {
    /**
     * Put a copy of `template` (index.html's #panel-head: the title, the status, the server's
     * address, Connect and Disconnect, the notice) at the top of the panel element `root`.
     * `root`'s own children marked slot="intro" or slot="controls" move to where the template
     * has <slot name="intro"> and <slot name="controls">. Each part with data-id="x" gets the id
     * root.dataset.ids + "x"; the title is root.dataset.title; the buttons' group is named after
     * the panel's tab ("Chat connection").
     */
    static stampHead(root, template) {
      const head = template.content.cloneNode(true);
      for (const slot of head.querySelectorAll("slot")) {
        const own = Array.from(root.children).filter((child) => child.slot === slot.name);
        for (const element of own) {
          element.removeAttribute("slot");
        }
        slot.replaceWith(...own);
      }
      const prefix = root.dataset.ids || "";
      for (const element of head.querySelectorAll("[data-id]")) {
        element.id = prefix + element.dataset.id;
        element.removeAttribute("data-id");
      }
      part(head, "title").textContent = root.dataset.title || "";
      const tab = document.getElementById(root.getAttribute("aria-labelledby"));
      const name = tab ? tab.textContent.trim() : root.dataset.title || "";
      part(head, "controls").setAttribute("aria-label", name + " connection");
      root.prepend(head);
    }

    constructor(root, options) {
      this.root = root;
      this.url = options.url;
      this.closeCodes = options.closeCodes || {};
      this.matchEchoes = options.matchEchoes !== false;
      this.heartbeat = options.heartbeat === true;
      this.socket = null;
      this.opened = false;
      this.closeRequested = false;
      this.heartbeatTimer = null;
      this.pending = [];
      this.offered = [];
      // Each connect is an attempt; a late answer about an older one is ignored.
      this.attempt = 0;
      this.attemptStartedAt = 0;
      // Reconnecting: the waits, the pending retry, whether a retry chain is on (a failed retry
      // is retried again), and whether even a first failed connect is (kiosk mode).
      this.backoff = new Backoff();
      this.retryTimer = null;
      this.retryAt = 0;
      this.retryWhy = "";
      this.countdownTimer = null;
      this.retrying = false;
      this.keepTrying = false;
      this.reconnects = 0; // for tests and the curious
      // Typed messages sent, for the arrow keys; where in them the box is (null: the draft).
      this.history = [];
      this.historyIndex = null;
      this.draft = "";

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
        reconnect: part(root, "reconnect"),
        mode: part(root, "mode"),
        file: part(root, "file"),
        repeatText: part(root, "repeat-text"),
        repeatInterval: part(root, "repeat-interval"),
        repeatStop: part(root, "repeat-stop"),
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
      for (const field of [this.parts.repeatText, this.parts.repeatInterval]) {
        if (field) {
          // A new text or interval applies at once: the repeat starts again with it.
          field.addEventListener("change", () => this.restartHeartbeat());
        }
      }
      if (this.parts.repeatStop) {
        this.parts.repeatStop.addEventListener("click", () => {
          if (this.parts.heartbeat) {
            this.parts.heartbeat.checked = false;
          }
          this.updateHeartbeat();
        });
      }
      if (this.parts.reconnect) {
        this.parts.reconnect.checked = options.reconnect === true;
        this.parts.reconnect.addEventListener("change", () => {
          if (!this.parts.reconnect.checked) {
            this.stopReconnecting();
          }
        });
      } else {
        this.reconnectOn = options.reconnect === true;
      }
      if (this.parts.message) {
        this.textPlaceholder = this.parts.message.placeholder;
        this.parts.message.addEventListener("keydown", (event) => this.recall(event));
      }
      if (this.parts.mode) {
        this.parts.mode.addEventListener("change", () => this.showMode());
        this.showMode();
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
      this.cancelRetry();
      this.hideNotice();
      const protocols = this.protocols();
      if (protocols === null) {
        this.stopReconnecting(); // the panel has said why; retrying would not change it
        return;
      }
      this.offered = protocols;
      this.opened = false;
      this.closeRequested = false;
      this.pending = [];
      this.attempt += 1;
      this.attemptStartedAt = performance.now();
      let socket;
      try {
        socket = new WebSocket(this.url, protocols);
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
      if (!socket && this.retryTimer !== null) {
        // Waiting to reconnect: Disconnect stops that.
        this.stopReconnecting();
        return;
      }
      this.retrying = false;
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

    /** Send text, or bytes (an ArrayBuffer or a typed array), if connected; returns whether it went out. */
    send(data) {
      const socket = this.socket;
      if (!socket || socket.readyState !== WebSocket.OPEN) {
        return false;
      }
      socket.send(data);
      // Binary is matched with its echo by its description: its length and first bytes.
      const text = typeof data === "string" ? data : describeBinary(data);
      const item = this.note("sent", text);
      if (this.matchEchoes) {
        this.pending.push({ text: text, sentAt: performance.now(), item: item });
        if (this.pending.length > MAX_PENDING_ECHOES) {
          this.pending.shift();
        }
      }
      return true;
    }

    /** The subprotocols to offer, in order; null to not connect (the panel has said why). */
    protocols() {
      return [];
    }

    /** What to send for the text typed in the message box, or null to send nothing. */
    outgoing(text) {
      return text;
    }

    /** What the mode selector says to send: "text" (the default), "hex" or "file". */
    get mode() {
      return this.parts.mode ? this.parts.mode.value : "text";
    }

    /** Show the message box or the file chooser, as the mode needs. */
    showMode() {
      const file = this.mode === "file";
      if (this.parts.file) {
        this.parts.file.hidden = !file;
      }
      if (this.parts.message) {
        this.parts.message.hidden = file;
        this.parts.message.placeholder =
          this.mode === "hex" ? HEX_PLACEHOLDER : this.textPlaceholder;
      }
    }

    sendTyped() {
      const box = this.parts.message;
      if (this.mode === "file") {
        this.sendFile();
        return;
      }
      if (box) {
        const typed = box.value;
        let data = null;
        if (this.mode === "hex") {
          const parsed = parseHex(typed);
          if (parsed.error) {
            this.showNotice("error", [parsed.error + " Nothing was sent."]);
          } else {
            data = parsed.bytes;
          }
        } else {
          data = this.outgoing(typed);
        }
        if (data !== null && this.send(data)) {
          this.hideNotice();
          this.remember(typed);
          box.value = "";
        }
      }
      // Keep typing where you were, after a click on Send too.
      if (box && document.activeElement !== box) {
        box.focus();
      }
    }

    /** The chosen file's bytes as one binary message, if it is not over MAX_FILE_BYTES. */
    async sendFile() {
      const chosen = this.parts.file && this.parts.file.files[0];
      if (!chosen) {
        this.showNotice("error", ["Choose a file to send first."]);
        return;
      }
      if (chosen.size > MAX_FILE_BYTES) {
        this.showNotice("error", [
          chosen.name + " is " + formatBytes(chosen.size) + ": at most " + formatBytes(MAX_FILE_BYTES) +
            " goes in one message (the server's default --max-message-size). Nothing was sent.",
        ]);
        return;
      }
      const bytes = await chosen.arrayBuffer();
      if (this.send(bytes)) {
        this.hideNotice();
      }
    }

    /** Keep `typed` for the arrow keys: at most MAX_HISTORY, the same twice in a row once. */
    remember(typed) {
      if (typed !== "" && this.history[this.history.length - 1] !== typed) {
        this.history.push(typed);
        if (this.history.length > MAX_HISTORY) {
          this.history.shift();
        }
      }
      this.historyIndex = null;
    }

    /** ArrowUp: the message sent before the one shown; ArrowDown: the one after, then the draft. */
    recall(event) {
      if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey || event.isComposing) {
        return;
      }
      if (event.key !== "ArrowUp" && event.key !== "ArrowDown") {
        return;
      }
      const box = this.parts.message;
      const last = this.history.length;
      let index = this.historyIndex === null ? last : this.historyIndex;
      if (event.key === "ArrowUp") {
        if (index === 0 || last === 0) {
          return;
        }
        if (this.historyIndex === null) {
          this.draft = box.value;
        }
        index -= 1;
      } else {
        if (this.historyIndex === null) {
          return;
        }
        index += 1;
      }
      event.preventDefault();
      this.historyIndex = index < last ? index : null;
      box.value = index < last ? this.history[index] : this.draft;
      box.setSelectionRange(box.value.length, box.value.length);
    }

    onOpen(socket) {
      if (socket !== this.socket) {
        return;
      }
      this.opened = true;
      this.retrying = false;
      this.backoff.reset();
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
      const text = typeof data === "string" ? data : describeBinary(data);
      const item = this.note("received", text);
      const sent = this.takePending(text);
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
      const how = closeDescription(event.code, event.reason, this.closeCodes);

      if (!this.opened && this.closeRequested) {
        this.note("info", "Connection attempt cancelled");
        this.render("disconnected", "disconnected");
        return;
      }
      this.render("disconnected", "disconnected (" + how + ")");
      const again = this.closeRequested ? false : this.reconnectWanted();
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
        this.explainFailure(this.attempt, this.offered);
        if (again && (this.retrying || this.keepTrying)) {
          this.scheduleReconnect(how);
        }
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
          again
            ? "). Reconnecting by itself; Disconnect stops it."
            : "). Press Connect to connect again.",
        ]);
        if (again) {
          this.scheduleReconnect(how);
        }
      }
    }

    /**
     * Ask the server why attempt `attempt` failed: a browser sees only 1006, but the server
     * keeps each address's last refusal (GET /refusal on its port). Shown when it is this
     * attempt's; else, if subprotocols were offered, the likely cause: a 101 that chose none
     * of them, which browsers fail.
     */
    async explainFailure(attempt, offered) {
      const refusal = await fetchRefusal(this.url, performance.now() - this.attemptStartedAt);
      if (attempt !== this.attempt || this.opened) {
        return; // another attempt since: this answer is not about it
      }
      if (refusal !== null) {
        const text = "refused: " + refusal.status + " " + refusal.message;
        this.note("error", text);
        this.showNotice("error", [
          "The server at ",
          code(this.url),
          " said no, and a browser only shows that as 1006: ",
          strong(text),
        ]);
      } else if (offered.length > 0) {
        const names = offered.join(", ");
        this.note("error", "The server chose none of the subprotocols offered (" + names + ")");
        this.showNotice("error", [
          "The server did not refuse the connection, but this page offered the subprotocols ",
          code(names),
          ": browsers fail the connection when the server picks none of the offered " +
            "subprotocols. Offer one the server speaks, or none.",
        ]);
      }
    }

    /** Whether to reconnect after a lost connection: the checkbox's say, or the panel's. */
    reconnectWanted() {
      if (this.keepTrying) {
        return true;
      }
      return this.parts.reconnect ? this.parts.reconnect.checked : this.reconnectOn;
    }

    /** Connect again after the backoff's next wait, counting down in the status. */
    scheduleReconnect(how) {
      this.retrying = true;
      const wait = this.backoff.next();
      this.retryAt = performance.now() + wait;
      this.retryWhy = how;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.stopCountdown();
        this.reconnects += 1;
        this.connect();
      }, wait);
      this.countdownTimer = setInterval(() => this.showCountdown(), COUNTDOWN_TICK_MS);
      this.showCountdown();
    }

    showCountdown() {
      const seconds = Math.max(1, Math.ceil((this.retryAt - performance.now()) / 1000));
      this.render("reconnecting", "disconnected (" + this.retryWhy + "); reconnecting in " + seconds + " s");
    }

    stopCountdown() {
      if (this.countdownTimer !== null) {
        clearInterval(this.countdownTimer);
        this.countdownTimer = null;
      }
    }

    /** Drop a pending retry, if any (a Connect now, or a stop). */
    cancelRetry() {
      if (this.retryTimer !== null) {
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
      }
      this.stopCountdown();
    }

    /** No more reconnecting until the next lost connection: Disconnect, or the box unticked. */
    stopReconnecting() {
      const waiting = this.retryTimer !== null;
      this.cancelRetry();
      this.retrying = false;
      this.keepTrying = false;
      this.backoff.reset();
      if (waiting) {
        this.note("info", "Stopped reconnecting");
        this.render("disconnected", "disconnected (" + this.retryWhy + ")");
      }
    }

    updateHeartbeat() {
      const wanted =
        this.heartbeat &&
        this.socket !== null &&
        this.socket.readyState === WebSocket.OPEN &&
        (!this.parts.heartbeat || this.parts.heartbeat.checked);
      if (wanted && this.heartbeatTimer === null) {
        this.heartbeatTimer = setInterval(() => this.beat(), this.repeatIntervalMs());
        this.beat();
      } else if (!wanted) {
        this.stopHeartbeat();
      }
      if (this.parts.repeatStop) {
        this.parts.repeatStop.disabled = this.heartbeatTimer === null;
      }
    }

    restartHeartbeat() {
      this.stopHeartbeat();
      this.updateHeartbeat();
    }

    /** The repeat's interval: the field's, kept to 10 ms - 1 h (and the field shows what is used). */
    repeatIntervalMs() {
      const field = this.parts.repeatInterval;
      if (!field) {
        return HEARTBEAT_INTERVAL_MS;
      }
      const typed = Math.round(Number(field.value));
      const interval = Number.isFinite(typed) && field.value.trim() !== ""
        ? Math.min(Math.max(typed, MIN_REPEAT_INTERVAL_MS), MAX_REPEAT_INTERVAL_MS)
        : HEARTBEAT_INTERVAL_MS;
      field.value = String(interval);
      return interval;
    }

    beat() {
      const text = this.parts.repeatText ? this.parts.repeatText.value : HEARTBEAT_TEXT;
      if (this.socket && this.socket.bufferedAmount <= MAX_BUFFERED_BYTES) {
        this.send(text);
      }
    }

    stopHeartbeat() {
      if (this.heartbeatTimer !== null) {
        clearInterval(this.heartbeatTimer);
        this.heartbeatTimer = null;
      }
      if (this.parts.repeatStop) {
        this.parts.repeatStop.disabled = true;
      }
    }

    /** Show `state` (a CSS hook) and `text`; enable only the buttons that make sense now. */
    render(state, text) {
      this.root.dataset.state = state;
      if (this.parts.status.textContent !== text) {
        this.parts.status.textContent = text; // a live region: only when it changes
      }
      const open = state === "connected";
      // While waiting to reconnect, Connect connects now and Disconnect stops waiting.
      const waiting = state === "reconnecting";
      this.parts.connect.disabled = !(state === "disconnected" || waiting);
      this.parts.disconnect.disabled = !(state === "connecting" || open || waiting);
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

  /**
   * The server's last refusal of this address ({status, message, path, age_s}) if it is about
   * a connect to `wsUrl` that started `elapsedMs` ago; null if there is none, it is older, or
   * the server cannot be asked (nothing listens there).
   */
  async function fetchRefusal(wsUrl, elapsedMs) {
    const target = new URL(wsUrl);
    const url = refusalUrl(wsUrl);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REFUSAL_TIMEOUT_MS);
    try {
      const response = await fetch(url, { cache: "no-store", signal: controller.signal });
      const answer = response.ok ? await response.json() : null;
      const fresh =
        answer !== null &&
        answer.refused === true &&
        answer.path === target.pathname &&
        Number(answer.age_s) * 1000 <= elapsedMs + REFUSAL_SLACK_MS;
      return fresh ? answer : null;
    } catch (error) {
      return null; // not there, or not an echo_server: the notice already says what can be said
    } finally {
      clearTimeout(timer);
    }
  }

  /** Where a WebSocket server at `wsUrl` answers GET /refusal: http(s) on the same host and port. */
  function refusalUrl(wsUrl) {
    const url = new URL(wsUrl);
    url.protocol = url.protocol === "wss:" ? "https:" : "http:";
    url.pathname = "/refusal";
    url.search = "";
    return url.href;
  }

  function strong(text) {
    const element = document.createElement("strong");
    element.textContent = text;
    return element;
  }

  function code(text, className) {
    const element = document.createElement("code");
    element.textContent = text;
    if (className) {
      element.className = className;
    }
    return element;
  }

  return {
    part,
    code,
    refusalUrl,
    ConnectionPanel,
  };
});
