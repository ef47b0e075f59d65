/*
 * The tab bar: one panel on show at a time.
 *
 * What this file is for: a WAI-ARIA tab list (click, arrow keys, Home, End), the chosen tab in
 * the address's #hash (so a link or a reload opens it), and each tab showing its panel's
 * connection state.
 *
 * What it is not: anything about connections; it only shows and hides panels.
 */
echoPage.define("tabs", [], function (page) {
  "use strict";

  /**
   * A WAI-ARIA tab list: a click, or the arrow keys, Home and End, choose a tab; one panel shows
   * at a time. The chosen tab's name goes in the address's hash (#chat) without a history entry
   * per click, so a reload or a shared link opens the same tab.
   */
  class Tabs {
    constructor(tablist) {
      this.tabs = Array.from(tablist.querySelectorAll('[role="tab"]'));
      for (const tab of this.tabs) {
        tab.addEventListener("click", () => this.select(tab, { remember: true }));
        tab.addEventListener("keydown", (event) => this.onKeydown(event, tab));
        // Each tab shows its panel's connection state, so a connection left open in another
        // tab is not forgotten.
        const panel = this.panelOf(tab);
        const mirror = () => {
          tab.dataset.state = panel.dataset.state || "";
        };
        new MutationObserver(mirror).observe(panel, {
          attributes: true,
          attributeFilter: ["data-state"],
        });
        mirror();
      }
    }

    get selectedName() {
      const chosen = this.tabs.find((tab) => tab.getAttribute("aria-selected") === "true");
      return (chosen || this.tabs[0]).dataset.tab;
    }

    panelOf(tab) {
      return document.getElementById(tab.getAttribute("aria-controls"));
    }

    /** Show the tab a hash names ("#chat"); returns whether it named one. */
    showHash(hash) {
      const name = String(hash || "")
        .replace(/^#/, "")
        .toLowerCase();
      const tab = this.tabs.find((candidate) => candidate.dataset.tab === name);
      if (tab) {
        this.select(tab, {});
      }
      return Boolean(tab);
    }

    select(tab, { focus = false, remember = false }) {
      for (const other of this.tabs) {
        const chosen = other === tab;
        other.setAttribute("aria-selected", String(chosen));
        // Roving tabindex: Tab goes to the chosen tab only, arrows move between tabs.
        other.tabIndex = chosen ? 0 : -1;
        this.panelOf(other).hidden = !chosen;
      }
      if (focus) {
        tab.focus();
      }
      if (remember) {
        rememberHash(tab.dataset.tab);
      }
    }

    onKeydown(event, tab) {
      if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) {
        return;
      }
      const index = this.tabs.indexOf(tab);
      const last = this.tabs.length - 1;
      const targets = {
        ArrowRight: index === last ? 0 : index + 1,
        ArrowLeft: index === 0 ? last : index - 1,
        Home: 0,
        End: last,
      };
      if (!(event.key in targets)) {
        return;
      }
      event.preventDefault();
      this.select(this.tabs[targets[event.key]], { focus: true, remember: true });
    }
  }

  function rememberHash(name) {
    const hash = "#" + name;
    if (window.location.hash === hash) {
      return;
    }
    try {
      // Not location.hash: that adds a history entry per click and scrolls to the target.
      window.history.replaceState(window.history.state, "", hash);
    } catch (error) {
      // A page from file:// may not rewrite its own address; the tab works all the same.
    }
  }

  return {
    Tabs,
  };
});
