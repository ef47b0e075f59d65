/*
 * Where the WebSocket server is: the address worked out from the page's own, and /config.json.
 *
 * What this file is for: pure functions of a location-like object {protocol, hostname, search}
 * (the ?ws=PORT and ?path= overrides, IPv6 hosts, wss: for an https: page), and asking the page
 * server's /config.json for the WebSocket port.
 *
 * What it is not: a WebSocket client; nothing here opens a connection.
 */
echoPage.define("config", [], function (page) {
  "use strict";

  const DEFAULT_WS_PORT = 8001;
  const DEFAULT_PATH = "/";
  const CONFIG_URL = "/config.json";
  const CONFIG_TIMEOUT_MS = 3000;

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

  return {
    DEFAULT_WS_PORT,
    DEFAULT_PATH,
    urlHost,
    parsePort,
    wsPortFromSearch,
    normalizePath,
    pathFromSearch,
    wsUrlFor,
    resolveWsPort,
  };
});
