/*
 * How long to wait before connecting again: the page's one backoff, for every panel's
 * reconnecting and for kiosk mode.
 *
 * What this file is for: Backoff, the waits between attempts: 0.5 s first, doubled after each
 * attempt up to 30 s, each off by up to a fifth either way (jitter), so that a room of screens
 * does not knock all at once when the server comes back; back to 0.5 s once connected.
 *
 * What it is not: a timer. It only says how long; js/panel.js waits and connects.
 */
echoPage.define("backoff", [], function (page) {
  "use strict";

  const RETRY_MIN_MS = 500;
  const RETRY_MAX_MS = 30000;
  const RETRY_JITTER = 0.2; // each wait is off by up to this share, either way

  class Backoff {
    /** `random`: a function like Math.random (tests pass their own). */
    constructor(random) {
      this.random = random || Math.random;
      this.delayMs = RETRY_MIN_MS;
    }

    /** The wait before the next attempt, in ms; the one after it will be twice as long. */
    next() {
      const jitter = 1 + RETRY_JITTER * (2 * this.random() - 1);
      const wait = Math.round(this.delayMs * jitter);
      this.delayMs = Math.min(this.delayMs * 2, RETRY_MAX_MS);
      return wait;
    }

    /** Connected: the next wait is the shortest again. */
    reset() {
      this.delayMs = RETRY_MIN_MS;
    }
  }

  return { RETRY_MIN_MS, RETRY_MAX_MS, RETRY_JITTER, Backoff };
});
