/*
 * The message log: an ordered list of entries (time stamp, direction, text), newest last.
 *
 * What this file is for: adding entries to an <ol>, at most MAX_LOG_ENTRIES, each shown as text
 * (never markup) and cut short past MAX_SHOWN_CHARS; following the newest entry unless the reader
 * has scrolled up; the round-trip time beside an entry.
 *
 * What it is not: a store of messages. What scrolls out of the log is gone.
 */
echoPage.define("log", ["format"], function (page) {
  "use strict";

  const { formatTime, formatRtt } = page;

  const MAX_LOG_ENTRIES = 500;
  // A long message is cut short on screen, or a few 1 MiB echoes would make the page crawl.
  const MAX_SHOWN_CHARS = 2000;
  // Keep following new entries when the reader is this close to the bottom of the log.
  const FOLLOW_SLACK_PX = 40;

  const DIRECTION_LABELS = Object.freeze({
    sent: "↑ sent",
    received: "↓ received",
    info: "• info",
    error: "! error",
  });

  class MessageLog {
    constructor(list) {
      this.list = list;
      // Whether to keep the newest entry in view. Read from the scroll position only when the
      // reader scrolls: reading it on every add would force a layout per message.
      this.following = true;
      this.scrollQueued = false;
      list.addEventListener(
        "scroll",
        () => {
          if (!this.scrollQueued) {
            this.following = this.isNearBottom();
          }
        },
        { passive: true },
      );
    }

    /** Add an entry; returns its <li> so a caller can add to it (the round-trip time). */
    add(direction, text) {
      const now = new Date();
      const item = document.createElement("li");
      item.className = "entry " + direction;

      const stamp = document.createElement("time");
      stamp.className = "stamp";
      stamp.dateTime = now.toISOString();
      stamp.textContent = formatTime(now);

      const label = document.createElement("span");
      label.className = "direction";
      label.textContent = DIRECTION_LABELS[direction] || direction;

      const body = document.createElement("span");
      body.className = "text";
      body.textContent = shorten(text);
      if (text === "") {
        body.classList.add("empty");
        body.textContent = "(empty message)";
      }

      item.append(stamp, label, body);
      this.list.append(item);
      while (this.list.childElementCount > MAX_LOG_ENTRIES) {
        this.list.firstElementChild.remove();
      }
      this.followNewest();
      return item;
    }

    /** Scroll to the newest entry once per frame, however many entries arrived in it. */
    followNewest() {
      if (!this.following || this.scrollQueued) {
        return;
      }
      this.scrollQueued = true;
      requestAnimationFrame(() => {
        this.scrollQueued = false;
        this.list.scrollTop = this.list.scrollHeight;
      });
    }

    addRtt(item, ms, title) {
      const rtt = document.createElement("span");
      rtt.className = "rtt";
      rtt.title = title || "round-trip time";
      rtt.textContent = formatRtt(ms);
      item.append(rtt);
    }

    clear() {
      this.list.replaceChildren();
      this.following = true;
    }

    isNearBottom() {
      const list = this.list;
      return list.scrollHeight - list.scrollTop - list.clientHeight <= FOLLOW_SLACK_PX;
    }
  }

  function shorten(text) {
    if (text.length <= MAX_SHOWN_CHARS) {
      return text;
    }
    const more = text.length - MAX_SHOWN_CHARS;
    return text.slice(0, MAX_SHOWN_CHARS) + "… (" + more + " more characters)";
  }

  return {
    MAX_LOG_ENTRIES,
    MessageLog,
  };
});
