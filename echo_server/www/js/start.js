/*
 * Start-up: choose the tab, work out the WebSocket address once, then build the panels.
 *
 * What this file is for: the one place that knows which panel is which (Echo, Chat, Tick, Live,
 * Stats), and the page's query: ?ws=PORT, ?path=/echo, ?autoconnect=1. It sets data-ready on
 * <html> once the panels work, and exposes them as echoPage.panels for tests.
 *
 * What it is not: how a panel behaves (js/panel.js, js/panels.js). It must be the last script.
 */
echoPage.define("start", ["config", "panel", "panels", "tabs"], function (page) {
  "use strict";

  const { DEFAULT_PATH, pathFromSearch, resolveWsPort, wsUrlFor, Tabs } = page;
  const { ConnectionPanel, ChatPanel, TickPanel, LivePanel, StatsPanel } = page;

  // The push routes, one per panel; Echo's path can be changed with ?path=.
  const CHAT_PATH = "/chat";
  const TICK_PATH = "/tick";
  const STREAM_PATH = "/stream";
  const STATS_PATH = "/stats";

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
    const byId = (id) => document.getElementById(id);
    // The panels' heads and the tab before anything waits on the network, so the page never
    // shows a panel without its head, or the wrong panel.
    const template = byId("panel-head");
    for (const section of document.querySelectorAll("section.panel")) {
      ConnectionPanel.stampHead(section, template);
    }
    const tabs = new Tabs(document.querySelector('[role="tablist"]'));
    tabs.showHash(location.hash);
    window.addEventListener("hashchange", () => tabs.showHash(window.location.hash));

    const { port, source } = await resolveWsPort(location);
    const path = pathFromSearch(location.search);
    const urlFor = (routePath) => wsUrlFor(location, port, routePath);
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

  return { panels: panels };
});
// The last script: nothing may change the namespace from here on.
Object.freeze(echoPage.loaded);
Object.freeze(echoPage);
