/*
 * The echo_server test page's one global, window.echoPage, and the order of its scripts.
 *
 * The page: tabs of connection panels, each opening its own WebSocket: Echo (a log and a message
 * box, round-trip times, fault knobs), Inspect (what the server saw: the handshake and each
 * frame), Chat (the same as Echo, with a name), Tick (a shared counter and the server's clock),
 * Live (a chart of a value) and Stats (a table of the server's counters). Its scripts, in the
 * order index.html loads them: page.js (this), format.js, config.js, log.js, backoff.js,
 * panel.js, chart.js, panels.js, tabs.js, phone.js, kiosk.js, start.js.
 *
 * What this file is for: the namespace every other script adds to, through
 * echoPage.define(name, needs, body). `body(echoPage)` runs at once, but only if the scripts
 * named in `needs` have already run; what it returns is added to the namespace (a name defined
 * twice is an error). So a <script> tag moved out of order stops the page with a message saying
 * which script needs which, instead of an undefined name somewhere later. echoPage.loaded lists
 * the scripts that have run, in order.
 *
 * What it is not: a module loader or a build. It loads nothing: index.html lists the scripts as
 * classic deferred scripts, which run in document order, because a page opened from file://
 * cannot load ES modules. Every script is a file of its own, with no dependencies, that works
 * offline and under the page server's strict Content-Security-Policy (no inline code, no eval,
 * no innerHTML: text goes in via textContent, which also keeps whatever a server sends from ever
 * becoming markup).
 */
(function () {
  "use strict";

  if (window.echoPage) {
    throw new Error("js/page.js ran twice: check the <script> tags in index.html");
  }
  const loaded = [];
  const echoPage = { loaded: loaded };

  /** Run the script `name`'s `body` once the scripts in `needs` have run; add what it returns. */
  echoPage.define = function define(name, needs, body) {
    const missing = needs.filter((need) => !loaded.includes(need));
    if (missing.length > 0) {
      throw new Error(
        "js/" + name + ".js needs js/" + missing.join(".js and js/") + ".js to run first: " +
          "check the order of the <script> tags in index.html",
      );
    }
    const exports = body(echoPage);
    for (const key of Object.keys(exports)) {
      if (key in echoPage) {
        throw new Error("js/" + name + ".js defines echoPage." + key + " again");
      }
      echoPage[key] = exports[key];
    }
    loaded.push(name);
  };

  window.echoPage = echoPage;
})();
