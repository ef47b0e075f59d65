/*
 * Kiosk mode, for a status screen: ?kiosk#live (or #tick, #stats).
 *
 * What this file is for: one tab, full screen, large, no controls (style.css, under
 * html[data-kiosk]); connected at once and reconnected by itself, forever, even when the first
 * connect fails (the panel's own reconnecting, js/panel.js, with js/backoff.js's waits: 0.5 s,
 * doubled up to 30 s, jittered); the screen kept awake where the browser has the Screen Wake
 * Lock API (asked again whenever the page is shown again, since the browser lets it go when
 * the page is hidden); the browser's own full screen on the first tap, where allowed.
 *
 * What it is not: a connection, or a backoff, of its own. It tells the panel to keep trying.
 */
echoPage.define("kiosk", ["panel"], function (page) {
  "use strict";

  /** Whether the page's query asks for kiosk mode (?kiosk, with or without a value). */
  function isKiosk(search) {
    return new URLSearchParams(search || "").has("kiosk");
  }

  class Kiosk {
    constructor(panel) {
      this.panel = panel;
      // For tests and the curious: the wake lock's state.
      this.wakeLock = null;
      document.documentElement.dataset.kiosk = "true";
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible") {
          this.keepAwake();
        }
      });
      document.addEventListener("click", () => this.fullScreen(), { once: true });
      this.keepAwake();
      panel.keepTrying = true;
      panel.connect();
    }

    /** How many times the panel connected again by itself. */
    get reconnects() {
      return this.panel.reconnects;
    }

    async keepAwake() {
      const root = document.documentElement;
      if (!("wakeLock" in navigator)) {
        root.dataset.wakeLock = "unsupported";
        return;
      }
      try {
        this.wakeLock = await navigator.wakeLock.request("screen");
        root.dataset.wakeLock = "held";
        this.wakeLock.addEventListener("release", () => {
          root.dataset.wakeLock = "released";
        });
      } catch (error) {
        // Not allowed now (a hidden page, a battery saver): asked again when shown.
        root.dataset.wakeLock = "refused";
      }
    }

    fullScreen() {
      const root = document.documentElement;
      if (!document.fullscreenElement && root.requestFullscreen) {
        root.requestFullscreen().catch(() => {
          // Not allowed here (an embedded page, a kiosk browser already full screen).
        });
      }
    }
  }

  return { isKiosk, Kiosk };
});
