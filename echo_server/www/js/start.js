/*
 * Start-up: stamp the panels' heads, choose the tab, load the configuration once, then build the
 * panels.
 *
 * What this file is for: the one place that knows which panel class drives which tab, and the
 * page's query: ?ws=PORT, ?path=/echo, ?autoconnect=1, ?kiosk (js/kiosk.js). Each tab's path
 * and the close codes' names come from config.json (js/config.js); what the page had to fall
 * back on is said in the Echo log. It shows the "open on your phone" box when config.json has
 * a LAN address (js/phone.js). It sets data-ready on <html> once the panels work, and exposes
 * them as echoPage.panels, the configuration in use as echoPage.config, and kiosk mode's state
 * as echoPage.kiosk.current, for tests.
 *
 * What it is not: how a panel behaves (js/panel.js, js/panels.js). It must be the last script.
 */
echoPage.define("start", ["config", "panel", "panels", "tabs", "phone", "kiosk"], function (page) {
  "use strict";

  const { loadConfig, pathFromSearch, wsPortFromSearch, wsUrlFor, Tabs } = page;
  const { isKiosk, Kiosk, showPhoneLink } = page;
  const { ConnectionPanel, EchoPanel, InspectPanel, ChatPanel, TickPanel, LivePanel } = page;
  const { StatsPanel } = page;

  // The panel class for each tab; the tab's path is config.json's.
  const PANEL_CLASSES = Object.freeze({
    echo: EchoPanel,
    inspect: InspectPanel,
    chat: ChatPanel,
    tick: TickPanel,
    live: LivePanel,
    stats: StatsPanel,
  });
  // The tabs that reconnect by themselves at first (a checkbox on each panel says so): the
  // feeds, which a person leaves open to watch; Echo and Chat only when asked.
  const RECONNECTING_TABS = Object.freeze(["tick", "live", "stats"]);

  const panels = {};
  // {source, values}: where the configuration in use came from (config.json or the built-in
  // defaults) and what it is; filled in once it has been loaded.
  const configInUse = { source: null, values: null };
  // {current}: the Kiosk driving the tab on show, with ?kiosk.
  const kiosk = { current: null };

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
    if (isKiosk(location.search)) {
      document.documentElement.dataset.kiosk = "true"; // the layout first, before any wait
    }
    // The panels' heads and the tab before anything waits on the network, so the page never
    // shows a panel without its head, or the wrong panel.
    const template = byId("panel-head");
    for (const section of document.querySelectorAll("section.panel")) {
      ConnectionPanel.stampHead(section, template);
    }
    const tabs = new Tabs(document.querySelector('[role="tablist"]'));
    tabs.showHash(location.hash);
    window.addEventListener("hashchange", () => tabs.showHash(window.location.hash));

    const { config, source, notes } = await loadConfig(location);
    configInUse.source = source;
    configInUse.values = config;
    const port = wsPortFromSearch(location.search) || config.ws_port;
    // Echo's path can be changed with ?path=; the other panels' only by config.json.
    const echoPath = params.has("path") ? pathFromSearch(location.search) : config.tabs.echo;
    const paths = { ...config.tabs, echo: echoPath || config.tabs.echo };
    for (const [name, PanelClass] of Object.entries(PANEL_CLASSES)) {
      panels[name] = new PanelClass(byId(name + "-panel"), {
        url: wsUrlFor(location, port, paths[name]),
        closeCodes: config.close_codes,
        heartbeat: name === "echo",
        reconnect: RECONNECTING_TABS.includes(name),
        routeNames: config.routes,
        ownConnections: ownConnections,
      });
    }
    const echoLog = panels.echo.log;
    for (const note of notes) {
      echoLog.add("info", note);
    }
    if (params.has("ws") && wsPortFromSearch(location.search) === null) {
      echoLog.add("info", "Ignored ?ws=" + params.get("ws") + ": not a port number (1-65535)");
    }
    if (echoPath === null) {
      echoLog.add("info", "Ignored ?path=" + params.get("path") + ": not a usable path");
    }
    showPhoneLink(config);
    document.documentElement.dataset.ready = "true";
    if (isKiosk(location.search)) {
      kiosk.current = new Kiosk(panels[tabs.selectedName]);
    } else if (params.get("autoconnect") === "1") {
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

  return { panels: panels, config: configInUse, kiosk: kiosk };
});
// The last script: nothing may change the namespace from here on.
Object.freeze(echoPage.loaded);
Object.freeze(echoPage);
