/*
 * Kiosk mode, for a status screen: ?kiosk#live (or #tick, #stats).
 *
 * What this file is for: one tab, full screen, large, no controls (style.css, under
 * html[data-kiosk]); connected at once and reconnected by itself, forever, with a backoff
 * (1 s, doubled up to 30 s, with some jitter so that a room of screens does not knock all at
 * once when the server comes back); the screen kept awake where the browser has the Screen Wake
 * Lock API (asked again whenever the page is shown again, since the browser lets it go when
 * the page is hidden); the browser's own full screen on the first tap, where allowed.
 *
 * What it is not: a connection of its own. It drives the panel's Connect (js/panel.js), and
 * watches the panel's data-state to know when it is disconnected.
 */
echoPage.define("kiosk", [], function (page) {
  "use strict";

  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const RETRY_JITTER = 0.2; // each wait is off by up to this share, either way

  /** Whether the page's query asks for kiosk mode (?kiosk, with or without a value). */
  function isKiosk(search) {
    return new URLSearchParams(search || "").has("kiosk");
  }

  class Kiosk {
    constructor(panel) {
      this.panel = panel;
      this.delayMs = RETRY_MIN_MS;
      this.timer = null;
      // For tests and the curious: how many times it reconnected, the wake lock's state.
      this.reconnects = 0;
      this.wakeLock = null;
      document.documentElement.dataset.kiosk = "true";
      new MutationObserver(() => this.changed()).observe(panel.root, {
        attributes: true,
        attributeFilter: ["data-state"],
      });
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible") {
          this.keepAwake();
        }
      });
      document.addEventListener("click", () => this.fullScreen(), { once: true });
      this.keepAwake();
      panel.connect();
    }

    changed() {
      const state = this.panel.state;
      if (state === "connected") {
        this.delayMs = RETRY_MIN_MS;
      } else if (state === "disconnected" && this.timer === null) {
        const jitter = 1 + RETRY_JITTER * (2 * Math.random() - 1);
        this.timer = setTimeout(() => this.retry(), this.delayMs * jitter);
        this.delayMs = Math.min(this.delayMs * 2, RETRY_MAX_MS);
      }
    }

    retry() {
      this.timer = null;
      this.reconnects += 1;
      this.panel.connect();
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
