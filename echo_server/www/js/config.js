/*
 * What the page knows of the servers: /config.json, and the WebSocket address.
 *
 * What this file is for: asking the page server's /config.json (echo_server/web.py,
 * page_config) for the WebSocket port, the routes (what each path is, which tab uses which) and
 * the close codes' names, so that the page declares none of them itself; and pure functions of
 * a location-like object {protocol, hostname, search} for the address (the ?ws=PORT and ?path=
 * overrides, IPv6 hosts, wss: for an https: page).
 *
 * What it is not: a second source of truth. DEFAULT_CONFIG is what the page uses only when
 * there is no config.json to fetch (a page opened from a file) or it cannot be fetched, and the
 * page says so in its log; a test checks that it equals what the server sends. Nor is it a
 * WebSocket client: nothing here opens a connection.
 */
echoPage.define("config", [], function (page) {
  "use strict";

  const DEFAULT_WS_PORT = 8001;
  const DEFAULT_PATH = "/";
  const CONFIG_URL = "/config.json";
  const CONFIG_TIMEOUT_MS = 3000;
  const BUILT_IN = "built-in defaults";

  // What echo_server's page server sends at /config.json on the default port, for a page that
  // has none to ask. Keys as in JSON: close codes are text ("1000").
  const DEFAULT_CONFIG = deepFreeze({
    ws_port: DEFAULT_WS_PORT,
    routes: {
      "/": "echo",
      "/echo": "echo",
      "/inspect": "inspector",
      "/chat": "chat",
      "/tick": "tick",
      "/stream": "live chart",
      "/stats": "statistics",
    },
    tabs: {
      echo: "/",
      inspect: "/inspect",
      chat: "/chat",
      tick: "/tick",
      live: "/stream",
      stats: "/stats",
    },
    close_codes: {
      "1000": "Normal Closure",
      "1001": "Going Away",
      "1002": "Protocol Error",
      "1003": "Unsupported Data",
      "1005": "No Status Rcvd",
      "1006": "Abnormal Closure",
      "1007": "Invalid Frame Payload Data",
      "1008": "Policy Violation",
      "1009": "Message Too Big",
      "1010": "Mandatory Extension",
      "1011": "Internal Error",
      "1012": "Service Restart",
      "1013": "Try Again Later",
      "1014": "Bad Gateway",
      "1015": "TLS Handshake",
    },
    // The page's address for other machines (with --lan) and its .local name: none here.
    lan_url: null,
    mdns_url: null,
  });

  function deepFreeze(value) {
    for (const inner of Object.values(value)) {
      if (inner !== null && typeof inner === "object") {
        deepFreeze(inner);
      }
    }
    return Object.freeze(value);
  }

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

  /**
   * The page's configuration: {config, source, notes}. `config` has the shape of DEFAULT_CONFIG;
   * `source` is CONFIG_URL or BUILT_IN; `notes` says, for the reader, why the built-in defaults
   * (or some of them) are in use: empty when config.json was fetched and all of it was usable.
   * Never rejects.
   */
  async function loadConfig(location, fetchImpl) {
    if (location.protocol !== "http:" && location.protocol !== "https:") {
      const why = "a page opened from a file has no page server to ask for " + CONFIG_URL;
      return builtIn(why);
    }
    let fetched;
    try {
      fetched = await fetchConfig(fetchImpl || window.fetch.bind(window));
    } catch (error) {
      return builtIn("could not fetch " + CONFIG_URL + " (" + error.message + ")");
    }
    return checkConfig(fetched);
  }

  function builtIn(why) {
    const notes = ["Using the " + BUILT_IN + ": " + why];
    return { config: DEFAULT_CONFIG, source: BUILT_IN, notes: notes };
  }

  async function fetchConfig(fetchImpl) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), CONFIG_TIMEOUT_MS);
    try {
      let response;
      try {
        response = await fetchImpl(CONFIG_URL, {
          cache: "no-store",
          signal: controller.signal,
          headers: { Accept: "application/json" },
        });
      } catch (error) {
        const late = new Error("no answer in " + CONFIG_TIMEOUT_MS + " ms");
        throw controller.signal.aborted ? late : error;
      }
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      try {
        return await response.json();
      } catch (error) {
        throw new Error("not JSON");
      }
    } finally {
      clearTimeout(timer);
    }
  }

  // Whether each part of a fetched config.json is usable, by the shape DEFAULT_CONFIG has.
  const CHECKS = Object.freeze({
    ws_port: (value) => parsePort(value) !== null,
    routes: (value) => isTextMap(value, (key) => normalizePath(key) === key),
    // Every tab the page has must be there, with a path.
    tabs: (value) =>
      isTextMap(value, () => true) &&
      Object.keys(DEFAULT_CONFIG.tabs).every((tab) => normalizePath(value[tab]) === value[tab]),
    close_codes: (value) => isTextMap(value, (key) => /^[0-9]{4}$/.test(key)),
    lan_url: (value) => value === null || isPageUrl(value),
    mdns_url: (value) => value === null || isPageUrl(value),
  });

  /** An http: or https: URL, as the page server gives its own addresses. */
  function isPageUrl(value) {
    if (typeof value !== "string") {
      return false;
    }
    try {
      return ["http:", "https:"].includes(new URL(value).protocol);
    } catch (error) {
      return false;
    }
  }

  function isTextMap(value, keyIsGood) {
    return (
      value !== null &&
      typeof value === "object" &&
      !Array.isArray(value) &&
      Object.entries(value).every(([key, text]) => keyIsGood(key) && typeof text === "string")
    );
  }

  /** A fetched config.json, part by part; a part that is missing or unusable is the default's. */
  function checkConfig(fetched) {
    const given = fetched !== null && typeof fetched === "object" ? fetched : {};
    const config = {};
    const unusable = [];
    for (const [key, check] of Object.entries(CHECKS)) {
      if (check(given[key])) {
        config[key] = key === "ws_port" ? parsePort(given[key]) : given[key];
      } else {
        config[key] = DEFAULT_CONFIG[key];
        unusable.push(key);
      }
    }
    const notes = unusable.map(
      (key) => "Using the built-in " + key + ": " + CONFIG_URL + " has none that is usable",
    );
    return { config: deepFreeze(config), source: CONFIG_URL, notes: notes };
  }

  return {
    DEFAULT_WS_PORT,
    urlHost,
    parsePort,
    wsPortFromSearch,
    normalizePath,
    pathFromSearch,
    wsUrlFor,
    DEFAULT_CONFIG,
    loadConfig,
  };
});
