/*
 * The panels, one per WebSocket route: Echo, Chat, and the receive-only Tick, Live and Stats.
 *
 * What this file is for: what each panel does with a message: Echo is the base panel
 * (js/panel.js) plus the subprotocols it offers and the one the server chose, and the fault
 * knobs it puts in its URL's query; Inspect shows what the server saw (/inspect's events: the
 * handshake as a block, each frame, pong and close as a row of a bounded table); Chat marks its
 * own messages as delivered and prefixes a name; Tick shows the server's counter and clock and
 * how far this device's clock is from it; Live keeps each series' points (its history first,
 * then each new one) for a chart per series; Stats fills a table from the server's statistics.
 *
 * What it is not: the connection (js/panel.js), the drawing (js/chart.js) or the start-up that
 * builds the panels (js/start.js).
 */
echoPage.define("panels", ["format", "log", "panel", "chart"], function (page) {
  "use strict";

  const { formatBytes, formatClock, formatCount, formatDuration, formatOffset, formatTime } = page;
  const { formatRtt, describeBinary, part, code, ConnectionPanel, CHART_WINDOW_S, LiveChart } = page;
  const WINDOW_TEXT = "the last ten minutes";

  const CHAT_NAME_KEY = "echo_server.chat.name";
  // How many recent arrivals the clock comparison looks at: enough to find one that was not
  // held up on the way, few enough to follow a clock that is being corrected.
  const CLOCK_SAMPLES = 30;
  // The Live panel: how often its chart scrolls without new data, and a bound on the points
  // kept (a fast server must not grow the array without end).
  const CHART_SCROLL_INTERVAL_MS = 1000;
  const MAX_CHART_POINTS = 5000;

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
  // Echo: the base panel, offering the subprotocols typed in its field (comma-separated, in the
  // order given) and showing the one the server chose (the browser's WebSocket.protocol).

  // RFC 6455: a subprotocol name is an HTTP token; the browser throws on anything else.
  const SUBPROTOCOL_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

  class EchoPanel extends ConnectionPanel {
    constructor(root, options) {
      super(root, options);
      this.offer = part(root, "subprotocols");
      this.chosen = part(root, "subprotocol");
      // The fault knobs' form: its named fields become the URL's query (faults.py on the server).
      this.baseUrl = this.url;
      this.knobs = part(root, "knobs");
      if (this.knobs) {
        this.knobs.addEventListener("input", () => this.applyKnobs());
        this.knobs.addEventListener("submit", (event) => {
          event.preventDefault();
          this.connect();
        });
        this.applyKnobs();
      }
    }

    /** The URL to connect to: the tab's, with the knobs filled in as its query; shown at once. */
    applyKnobs() {
      const query = knobQuery(this.knobs);
      const joiner = this.baseUrl.includes("?") ? "&" : "?";
      this.url = query === "" ? this.baseUrl : this.baseUrl + joiner + query;
      if (this.parts.url) {
        this.parts.url.textContent = this.url;
      }
    }

    protocols() {
      const names = this.offer
        ? this.offer.value
            .split(",")
            .map((name) => name.trim())
            .filter((name) => name !== "")
        : [];
      const bad = names.find((name) => !SUBPROTOCOL_NAME.test(name));
      if (bad !== undefined) {
        this.showNotice("error", [
          code(bad),
          " is not a subprotocol name: letters, digits and !#$%&'*+-.^_`|~ only, like ",
          code("ocpp1.6"),
          ".",
        ]);
        return null;
      }
      const twice = names.find((name, index) => names.indexOf(name) !== index);
      if (twice !== undefined) {
        this.showNotice("error", [code(twice), " is offered twice: name it once."]);
        return null;
      }
      if (this.chosen) {
        this.chosen.textContent = "…";
      }
      return names;
    }

    didOpen() {
      const chosen = this.socket.protocol;
      if (this.chosen) {
        this.chosen.textContent = chosen || "none";
      }
      // None chosen of an offer never opens in a browser (js/panel.js explains the failure).
      if (chosen) {
        this.note("info", "Subprotocol chosen by the server: " + chosen);
      }
    }

    didClose() {
      if (this.chosen && !this.opened) {
        this.chosen.textContent = "none";
      }
    }

    render(state, text) {
      super.render(state, text);
      // The offer and the knobs are made when connecting: they cannot change while connected.
      const fixed = state === "connecting" || state === "connected" || state === "closing";
      if (this.offer) {
        this.offer.disabled = fixed;
      }
      if (this.knobs) {
        for (const field of this.knobs.elements) {
          field.disabled = fixed;
        }
      }
    }
  }

  /**
   * The query for the knobs' form: each named field with a value as name=value (the close
   * reason's ":" left as typed), a ticked checkbox as its bare name ("drop"); "" for none.
   */
  function knobQuery(form) {
    const pairs = [];
    for (const field of form.elements) {
      if (!field.name) {
        continue;
      }
      if (field.type === "checkbox") {
        if (field.checked) {
          pairs.push(encodeURIComponent(field.name));
        }
        continue;
      }
      const value = field.value.trim();
      if (value !== "") {
        const encoded = encodeURIComponent(value).replace(/%3A/gi, ":");
        pairs.push(encodeURIComponent(field.name) + "=" + encoded);
      }
    }
    return pairs.join("&");
  }

  // ---------------------------------------------------------------------------------------------
  // Inspect: what the server saw, from /inspect's JSON events (docs/protocol.md, "The
  // inspector"). The handshake is a block of its own; every other event, the echoes of what
  // this panel sends and the connection's end are rows of a table, at most MAX_INSPECT_ROWS.

  const MAX_INSPECT_ROWS = 200;
  const INSPECT_EVENTS = Object.freeze(["handshake", "frame", "pong", "close"]);

  class InspectPanel extends ConnectionPanel {
    constructor(root, options) {
      super(root, { ...options, heartbeat: false, matchEchoes: true });
      this.rows = part(root, "rows");
      this.handshakeView = part(root, "handshake");
      // The last handshake event, as sent: exposed for tests.
      this.handshake = null;
      const clear = part(root, "clear-rows");
      if (clear) {
        clear.addEventListener("click", () => this.rows.replaceChildren());
      }
    }

    /** What the base panel would log: what this panel sends is a row; the rest is in the notice. */
    note(direction, text) {
      return direction === "sent" ? this.addRow({ event: "sent" }, { text: text }) : null;
    }

    received(data) {
      const text = typeof data === "string" ? data : describeBinary(data);
      const sent = this.takePending(text);
      if (sent) {
        this.addRow({ event: "echo" }, { text: text });
        return;
      }
      const event = typeof data === "string" ? parseEvent(data) : null;
      if (event === null) {
        this.addRow({ event: "message" }, { text: text });
      } else if (event.event === "handshake") {
        this.showHandshake(event);
      } else {
        this.addRow(event, event.payload);
      }
    }

    didClose() {
      const closed = this.lastClose;
      if (closed) {
        this.addRow({ event: "closed", code: closed.code, reason: closed.reason });
      }
    }

    onClose(socket, event) {
      // The connection's end is a row too: its code and reason as this browser saw them.
      this.lastClose = socket === this.socket && this.opened ? event : null;
      super.onClose(socket, event);
    }

    /** One row: time, event, opcode, FIN, RSV1-3, masked, length, payload, rtt, close. */
    addRow(event, payload) {
      const yesNo = (value) => (value === true ? "yes" : value === false ? "no" : "");
      const rsv = Array.isArray(event.rsv) ? event.rsv : [];
      const hasClose = Number.isFinite(event.code);
      const cells = [
        formatTime(new Date()),
        event.event,
        event.opcode || "",
        yesNo(event.fin),
        yesNo(rsv[0]),
        yesNo(rsv[1]),
        yesNo(rsv[2]),
        yesNo(event.masked),
        Number.isFinite(event.length) ? formatCount(event.length) : "",
        payloadText(payload, event),
        Number.isFinite(event.rtt_ms) ? formatRtt(event.rtt_ms) : "",
        hasClose ? String(event.code) + (event.reason ? " " + event.reason : "") : "",
      ];
      const row = document.createElement("tr");
      row.dataset.event = event.event;
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      this.rows.append(row);
      while (this.rows.childElementCount > MAX_INSPECT_ROWS) {
        this.rows.firstElementChild.remove();
      }
      return row;
    }

    /** The handshake, readable: the request line, who, TLS, what was offered and chosen, headers. */
    showHandshake(event) {
      this.handshake = event;
      const list = (values) => (Array.isArray(values) && values.length > 0 ? values.join(", ") : "none");
      const client = event.client || {};
      const facts = [
        ["Method", event.method],
        ["Path", event.path],
        ["Query", event.query || "none"],
        ["HTTP version", event.http_version],
        ["Client", client.address + " port " + client.port],
        ["TLS", event.tls ? "yes" : "no"],
        ["Subprotocols offered", list(event.subprotocols_offered)],
        ["Subprotocol chosen", event.subprotocol || "none"],
        ["Extensions offered", list(event.extensions_offered)],
        ["Extensions agreed", list(event.extensions)],
      ];
      const dl = document.createElement("dl");
      dl.className = "handshake-facts";
      for (const [name, value] of facts) {
        const div = document.createElement("div");
        const dt = document.createElement("dt");
        dt.textContent = name;
        const dd = document.createElement("dd");
        dd.textContent = value;
        div.append(dt, dd);
        dl.append(div);
      }
      const headers = document.createElement("ol");
      headers.className = "handshake-headers";
      for (const pair of Array.isArray(event.headers) ? event.headers : []) {
        const item = document.createElement("li");
        const name = document.createElement("span");
        name.className = "header-name";
        name.textContent = String(pair[0]) + ": ";
        item.append(name, String(pair[1]));
        headers.append(item);
      }
      const title = document.createElement("h4");
      title.textContent = "Headers, in the order sent";
      this.handshakeView.replaceChildren(dl, title, headers);
    }
  }

  /** An /inspect event from a text message, or null if it is not one. */
  function parseEvent(text) {
    try {
      const value = JSON.parse(text);
      const known = value !== null && typeof value === "object" && INSPECT_EVENTS.includes(value.event);
      return known ? value : null;
    } catch (error) {
      return null;
    }
  }

  /** A payload for the table: text as it is, bytes as "hex: 01 02", cut ones with their size. */
  function payloadText(payload, event) {
    if (!payload || typeof payload !== "object") {
      return "";
    }
    let shown = "";
    if (typeof payload.text === "string") {
      shown = payload.text;
    } else if (typeof payload.hex === "string") {
      shown = "hex: " + (payload.hex.match(/../g) || []).join(" ");
    }
    const cut = Number.isFinite(event.length) && Number.isFinite(event.payload_shown) && event.payload_shown < event.length;
    return cut ? shown + " … (first " + event.payload_shown + " bytes)" : shown;
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


  /**
   * One series of the Live panel: its card (name, unit, latest value, summary, chart) and its
   * points, {t: Unix seconds (server time), v: value}, oldest first.
   */
  class SeriesView {
    constructor(panel, name, template) {
      this.panel = panel;
      this.name = name;
      this.unit = "";
      this.points = [];
      this.element = template.content.firstElementChild.cloneNode(true);
      this.element.dataset.series = name;
      this.label = part(this.element, "name");
      this.value = part(this.element, "value");
      this.summary = part(this.element, "summary");
      const canvas = part(this.element, "chart");
      canvas.setAttribute("aria-label", "Step chart of " + name + " over " + WINDOW_TEXT);
      this.chart = new LiveChart(canvas, () => ({
        points: this.points,
        end: panel.windowEnd(),
        unit: this.unit,
        empty: "No values yet",
      }));
      this.setUnit("");
    }

    setUnit(unit) {
      if (typeof unit === "string" && unit !== "") {
        this.unit = unit;
      }
      this.label.textContent = this.unit ? this.name + " (" + this.unit + ")" : this.name;
    }

    /** The server's history of this series: [[time, value], ...], oldest first. */
    replace(history, unit) {
      this.setUnit(unit);
      this.points = history
        .filter((pair) => Array.isArray(pair) && Number.isFinite(pair[0]) && Number.isFinite(pair[1]))
        .map(([t, v]) => ({ t: t, v: v }));
      this.update();
    }

    add(t, v, unit) {
      this.setUnit(unit);
      this.points.push({ t: t, v: v });
      this.update();
    }

    update() {
      this.prune();
      const last = this.points[this.points.length - 1];
      this.value.textContent = last ? formatCount(last.v) + (this.unit ? " " + this.unit : "") : "–";
      this.summarize();
      this.chart.request();
    }

    /** Drop points that have left the window, but the one that gives the left edge's height. */
    prune() {
      const start = this.panel.windowEnd() - CHART_WINDOW_S;
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
      const start = this.panel.windowEnd() - CHART_WINDOW_S;
      const recent = this.points.filter((point) => point.t > start).map((point) => point.v);
      if (this.points.length === 0) {
        this.summary.textContent = "No values yet.";
      } else if (recent.length === 0) {
        this.summary.textContent = "No change in " + WINDOW_TEXT + ".";
      } else {
        const count = recent.length === 1 ? "1 value" : formatCount(recent.length) + " values";
        this.summary.textContent =
          count +
          " in " +
          WINDOW_TEXT +
          ", from " +
          formatCount(Math.min(...recent)) +
          " to " +
          formatCount(Math.max(...recent)) +
          ".";
      }
    }
  }

  /**
   * Live: a chart per series of /stream, each with its latest value. A new connection is
   * greeted with each series' history ({series, unit, history}); then each new point comes
   * ({series, time, value, unit}). A message of a server from before series ({variable, time})
   * is a point of the demo series.
   */
  class LivePanel extends FeedPanel {
    constructor(root, options) {
      super(root, options);
      // SeriesView by name, in the order they first arrived. Exposed for tests.
      this.series = {};
      this.clock = new ClockOffset();
      this.list = part(root, "series");
      this.template = part(root, "series-template");
      this.summary = part(root, "summary");
      // The charts' right edge while not connected: where the data stopped.
      this.frozenEnd = null;
      this.scrollTimer = null;
      this.summarize();
    }

    didOpen() {
      super.didOpen();
      // The server greets every new connection with the whole history: start from that.
      this.series = {};
      this.list.replaceChildren();
      this.clock.reset();
      this.frozenEnd = null;
      this.scrollTimer = setInterval(() => this.scroll(), CHART_SCROLL_INTERVAL_MS);
      this.summarize();
    }

    didClose() {
      if (this.scrollTimer !== null) {
        clearInterval(this.scrollTimer);
        this.scrollTimer = null;
      }
      this.frozenEnd = this.clock.serverNow();
      this.scroll();
    }

    view(name) {
      if (!Object.hasOwn(this.series, name)) {
        this.series[name] = new SeriesView(this, name, this.template);
        this.list.append(this.series[name].element);
        this.summarize();
      }
      return this.series[name];
    }

    show(message) {
      let name = message.series;
      let value = message.value;
      if (name === undefined && Number.isFinite(message.variable)) {
        name = "demo";
        value = message.variable;
      }
      if (typeof name !== "string" || name === "") {
        return false;
      }
      if (Array.isArray(message.history)) {
        this.view(name).replace(message.history, message.unit);
        return true;
      }
      if (!Number.isFinite(value) || !Number.isFinite(message.time)) {
        return false;
      }
      // Only new points tell how far the clocks are apart: a history is old by nature.
      this.clock.add(message.time);
      this.view(name).add(message.time, value, message.unit);
      return true;
    }

    /** Once a second with no new value: the window moves on, so the charts must too. */
    scroll() {
      for (const view of Object.values(this.series)) {
        view.update();
      }
    }

    windowEnd() {
      return this.frozenEnd !== null ? this.frozenEnd : this.clock.serverNow();
    }

    summarize() {
      const names = Object.keys(this.series);
      this.summary.textContent =
        names.length === 0
          ? this.socket
            ? "Waiting for the first series…"
            : "No series yet. Press Connect."
          : (names.length === 1 ? "1 series" : names.length + " series") +
            ", each over " +
            WINDOW_TEXT +
            ".";
    }
  }

  /** Stats: a table from the server's statistics, refreshed as they arrive. */
  class StatsPanel extends FeedPanel {
    constructor(root, options) {
      super(root, options);
      this.table = part(root, "table");
      this.updated = part(root, "updated");
      // What each path is, by path (config.json's routes): {"/stream": "live chart"}.
      this.routeNames = options.routeNames || {};
      // () => {"/": 1, "/stats": 1}: which of this page's panels are connected where.
      this.ownConnections = options.ownConnections || (() => ({}));
      this.lastUpdate = null;
    }

    routeName(route) {
      return Object.hasOwn(this.routeNames, route) ? this.routeNames[route] : "";
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
        const name = [code(route), " ", span("route-name", this.routeName(route))];
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

  return {
    EchoPanel,
    InspectPanel,
    knobQuery,
    ChatPanel,
    FeedPanel,
    TickPanel,
    LivePanel,
    StatsPanel,
  };
});
