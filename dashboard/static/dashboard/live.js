/* Delivery Sentinel — shared live socket: reconnects with exponential backoff and shows
 * the connection state in #live-status ("Live" / "Reconnecting in N s" / ...).
 *
 *   const socket = DS.live("/ws/overview/", {
 *     state(msg) {...}, window(msg) {...}, verdict(msg) {...},
 *   });
 *
 * Handlers are named after the message "type"; code shared by pages (the on-call state,
 * oncall_live.js) listens too with DS.onLive(type, fn), called after the page's handler.
 * Close code 4401 (not logged in) sends the browser to the login page instead of retrying
 * forever. The server sends a heartbeat every few seconds; a connection silent for 2.5
 * heartbeats is treated as dropped.
 *
 * Freshness: while live, the pill says "Live · updated N s ago" (N: since the last data
 * message; heartbeats count only where the state says so, "heartbeat_is_data"). The state
 * message says how often data is expected ("expect_every", seconds: the check runners'
 * one-second cut, which the overview relays in one-second batches) and after how long
 * without any the page is stale ("stale_after": STALE_AFTER_WINDOWS of those periods,
 * workers/engine/documents.py); then the pill turns to a stale warning. */
(function () {
  "use strict";

  const CLOSE_UNAUTHENTICATED = 4401;
  const MIN_DELAY_MS = 1000;
  const MAX_DELAY_MS = 30000;
  const STALE_AFTER_MS = 5000; // until the state message says otherwise
  const DEAD_AFTER_HEARTBEATS = 2.5;
  const listeners = {}; // type -> [fn]: DS.onLive

  function onLive(type, fn) {
    (listeners[type] = listeners[type] || []).push(fn);
  }

  function indicator() {
    const el = document.getElementById("live-status");
    let current = null;
    return {
      get state() {
        return current;
      },
      set(state, text) {
        current = state;
        document.body.dataset.live = state; // lets the page mark its numbers as stale
        if (!el) return;
        el.dataset.state = state;
        el.querySelector(".live-text").textContent = text;
      },
    };
  }

  function live(path, handlers) {
    const status = indicator();
    let socket = null;
    let attempt = 0;
    let retryTimer = null;
    let countdownTimer = null;
    let heartbeatMs = 10000;
    let staleMs = STALE_AFTER_MS;
    let expectEvery = 1;
    let heartbeatIsData = false;
    let lastFrameAt = 0; // any frame, heartbeats included: is the connection alive?
    let lastDataAt = 0; // state, windows, verdicts: is anything happening?
    let stopped = false;

    function url() {
      const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      return scheme + "//" + window.location.host + path;
    }

    function connect() {
      clearTimeout(retryTimer);
      clearInterval(countdownTimer);
      status.set("connecting", attempt ? "Reconnecting…" : "Connecting to live updates…");
      const ws = new WebSocket(url());
      socket = ws;
      ws.addEventListener("open", () => {
        if (ws !== socket) return;
        attempt = 0;
        lastFrameAt = lastDataAt = Date.now();
        status.set("live", "Live · updated 0 s ago");
      });
      ws.addEventListener("message", (event) => {
        if (ws !== socket) return;
        lastFrameAt = Date.now();
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch (err) {
          return; // not ours; never let one bad frame stop the page
        }
        if (msg.type === "state") {
          if (msg.heartbeat) heartbeatMs = msg.heartbeat * 1000;
          if (msg.expect_every) expectEvery = msg.expect_every;
          if (msg.stale_after) staleMs = msg.stale_after * 1000;
          heartbeatIsData = Boolean(msg.heartbeat_is_data);
        }
        if (msg.type === "heartbeat" && !heartbeatIsData) return;
        lastDataAt = lastFrameAt;
        if (status.state !== "live") status.set("live", "Live · updated 0 s ago");
        const handler = handlers[msg.type];
        if (handler) handler(msg);
        for (const fn of listeners[msg.type] || []) fn(msg);
      });
      ws.addEventListener("close", (event) => {
        if (ws !== socket || stopped) return;
        socket = null;
        if (event.code === CLOSE_UNAUTHENTICATED) {
          status.set("offline", "Logged out: redirecting to the login page");
          const next = window.location.pathname + window.location.search;
          window.location.assign("/login/?next=" + encodeURIComponent(next));
          return;
        }
        scheduleReconnect();
      });
    }

    function scheduleReconnect() {
      const base = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** attempt);
      const delay = Math.round(base * (0.5 + Math.random() / 2)); // jitter: no thundering herd
      attempt += 1;
      const due = Date.now() + delay;
      const tick = () => {
        const left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
        status.set("reconnecting", `Connection lost — reconnecting in ${left} s`);
      };
      tick();
      clearInterval(countdownTimer);
      countdownTimer = setInterval(tick, 1000);
      retryTimer = setTimeout(connect, delay);
    }

    /* A half-open connection (network gone, proxy dropped it) never fires "close": without
     * a heartbeat for a while it is dead, so drop it and reconnect. An open connection with
     * heartbeats but no data for longer than expected is stale (no sentinel is reporting, or
     * the relay is behind): say so, and since when. */
    setInterval(() => {
      if (!socket || socket.readyState !== WebSocket.OPEN || !lastFrameAt) return;
      const now = Date.now();
      if (now - lastFrameAt > DEAD_AFTER_HEARTBEATS * heartbeatMs) {
        const dead = socket;
        socket = null;
        dead.close(4000, "no heartbeat");
        scheduleReconnect();
      } else if (status.state === "live" || status.state === "stale") {
        const ago = Math.round((now - lastDataAt) / 1000);
        if (now - lastDataAt > staleMs) {
          status.set("stale", `Stale: nothing new for ${ago} s (expected every ${expectEvery} s)`);
        } else {
          status.set("live", `Live · updated ${ago} s ago`);
        }
      }
    }, 1000);

    window.addEventListener("pagehide", () => {
      stopped = true;
      if (socket && socket.readyState === WebSocket.OPEN) socket.close(1000);
    });

    connect();
    return {
      close() {
        stopped = true;
        if (socket) socket.close(1000);
      },
    };
  }

  /* Small shared formatting helpers. */
  function fmt(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    if (typeof value === "number" && digits !== undefined) return DS.format.decimal(value, digits);
    return String(value);
  }

  const VERDICTS = ["HOLDING", "DEGRADED", "VIOLATED", "STALLED"];

  /* Sets the verdict text and colour classes of a `.verdict` badge and its container. */
  function setVerdict(container, verdict) {
    if (!verdict) return;
    container.dataset.verdict = verdict;
    for (const v of VERDICTS) container.classList.remove("verdict-bg-" + v.toLowerCase());
    container.classList.add("verdict-bg-" + verdict.toLowerCase());
    const badge = container.querySelector('[data-field="verdict"]');
    if (badge) {
      for (const v of VERDICTS) badge.classList.remove("verdict-" + v.toLowerCase());
      badge.classList.add("verdict-" + verdict.toLowerCase());
      badge.querySelector(".verdict-text").textContent = verdict;
    }
  }

  /* The tab carries the worst current state: its title starts with the verdict and the
   * favicon is a dot in the verdict's colour with its icon, so a background tab shows it. */
  const ICONS = { HOLDING: "✓", DEGRADED: "!", VIOLATED: "✕", STALLED: "‖" };
  let shownVerdict = null; // the last verdict the page asked for: on-call changes redraw it

  /* The favicon's dot: red while a critical incident is not acknowledged, amber while
   * another one is (the dot then carries the count of unacknowledged incidents), else the
   * verdict's colour and icon. ``title.dataset.note`` / ``favicon.dataset.alarm`` and
   * ``.unacknowledged`` come with the page and are kept current by DS.oncallState. */
  const ALARM_COLOURS = { critical: "--violated", warning: "--degraded" };

  function pageState(verdict, note) {
    const title = document.querySelector("title");
    const base = title.dataset.base;
    if (verdict === undefined) verdict = shownVerdict;
    shownVerdict = verdict;
    if (note === undefined) note = title.dataset.note;
    if (base) document.title = (verdict ? `${verdict}${note ? " · " + note : ""} · ` : "") + base;
    const icon = document.getElementById("favicon");
    if (!icon || !verdict) return;
    const css = getComputedStyle(document.documentElement);
    const alarm = icon.dataset.alarm || "";
    const waiting = Number(icon.dataset.unacknowledged || 0);
    const variable = ALARM_COLOURS[alarm] || "--" + verdict.toLowerCase();
    const colour = css.getPropertyValue(variable).trim() || "#57606a";
    const glyph = alarm ? (waiting > 9 ? "9+" : String(waiting)) : ICONS[verdict] || "?";
    const svg =
      '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">' +
      `<circle cx="8" cy="8" r="7.5" fill="${colour}"/>` +
      '<text x="8" y="12" font-size="11" font-family="sans-serif" font-weight="700" ' +
      `text-anchor="middle" fill="#fff">${glyph}</text></svg>`;
    icon.href = "data:image/svg+xml," + encodeURIComponent(svg);
    icon.dataset.verdict = verdict;
  }

  /* The on-call part of the tab: "N not acknowledged" in the title, the favicon's alarm. */
  function oncallState(note, alarm, unacknowledged) {
    const title = document.querySelector("title");
    if (title.dataset.base !== undefined) title.dataset.note = note;
    const icon = document.getElementById("favicon");
    if (icon) {
      icon.dataset.alarm = alarm;
      icon.dataset.unacknowledged = String(unacknowledged);
    }
    pageState();
  }

  /* The most severe of ``verdicts``, by the order the server sends (documents.SEVERITY). */
  function worst(verdicts) {
    const order = JSON.parse(document.getElementById("ds-severity")?.textContent || "{}");
    let out = null;
    for (const v of verdicts) if (v && (out === null || (order[v] || 0) > (order[out] || 0))) out = v;
    return out;
  }

  window.DS = Object.assign(window.DS || {}, {
    live,
    onLive,
    fmt,
    setVerdict,
    VERDICTS,
    pageState,
    oncallState,
    worst,
  });
})();
