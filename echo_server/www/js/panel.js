/*
 * The connection panel: one WebSocket, its Connect and Disconnect buttons, its status and its
 * notice. Every tab of the page is one.
 *
 * What this file is for: the base class, ConnectionPanel: connecting and disconnecting, telling
 * a failed connect from a lost connection, the heartbeat ("*" every second), the round-trip time
 * of each echo, the buttons that make sense in each state. A subclass (js/panels.js) decides
 * what a message does.
 *
 * What it is not: a WebSocket client library (it uses the browser's WebSocket as it is), or the
 * panels themselves.
 */
echoPage.define("panel", ["format", "log"], function (page) {
  "use strict";

  const { closeDescription, MessageLog, describeBinary } = page;

  const HEARTBEAT_INTERVAL_MS = 1000;
  const HEARTBEAT_TEXT = "*";
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
   * the round-trip time (right for an echo server, which answers in order).
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
      const protocols = this.protocols();
      if (protocols === null) {
        return;
      }
      this.opened = false;
      this.closeRequested = false;
      this.pending = [];
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

    /** The subprotocols to offer, in order; null to not connect (the panel has said why). */
    protocols() {
      return [];
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
      const how = closeDescription(event.code, event.reason, this.closeCodes);

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

  return {
    part,
    code,
    ConnectionPanel,
  };
});
