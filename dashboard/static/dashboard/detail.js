/* Sentinel detail: uPlot charts over a time range, live status, timeline of verdict changes.
 *
 * "Live" draws the last minutes of one-second windows from the websocket (state, then one
 * window a second); the other ranges load /api/sentinels/<id>/windows/?range=... and refresh
 * every minute. The chosen range is kept in the address (?range=24h) so it can be shared. */
(function () {
  "use strict";

  const root = document.getElementById("charts");
  if (!root) return;
  const sentinelId = Number(root.dataset.sentinel);
  const windowsUrl = root.dataset.windowsUrl;
  const note = document.getElementById("chart-note");
  const panel = document.getElementById("status-panel");
  const LIVE_SECONDS = 300;
  const REFRESH_MS = 60000;
  const RANGES = ["live", "15m", "1h", "24h", "7d"];

  const SERIES = {
    rates: [
      ["produced_per_s", "produced/s", "--line-blue"],
      ["processed_per_s", "processed/s", "--line-green"],
    ],
    events: [
      ["lost", "lost", "--line-red"],
      ["duplicated", "duplicated", "--line-pink"],
      ["reordered", "reordered", "--line-orange"],
      ["late", "late", "--line-purple"],
      ["phantom", "phantom", "--line-teal"],
    ],
    e2e: [
      ["e2e_p50", "p50 ms", "--line-blue"],
      ["e2e_p99", "p99 ms", "--line-red"],
    ],
    ack: [
      ["ack_p50", "p50 ms", "--line-blue"],
      ["ack_p99", "p99 ms", "--line-red"],
    ],
  };

  const params = new URLSearchParams(window.location.search);
  const defaultRange = RANGES.includes(root.dataset.defaultRange) ? root.dataset.defaultRange : "live";
  let range = params.get("range");
  if (!RANGES.includes(range)) range = defaultRange;
  const at = Number(params.get("at")) || null; // a timeline entry's moment, marked on the charts
  let liveWindows = [];
  let refreshTimer = null;
  const charts = {};
  const KINDS = { events: "events", e2e: "latency", ack: "latency" };
  const slo = Number(root.dataset.slo) || null;

  // -- charts (dashboard/charts.js) -------------------------------------------------------------
  for (const el of root.querySelectorAll("[data-chart]")) {
    const key = el.dataset.chart;
    charts[key] = DS.chart(el, SERIES[key], {
      kind: KINDS[key],
      slo: key === "e2e" ? slo : null,
      caption: document.getElementById(`${key}-latest`),
    });
  }

  const MARK_COLOURS = { scenario: "--line-purple", cluster: "--line-orange", selected: "--line-blue" };

  /* The timeline's entries (server-rendered and live) as annotation lines on every chart. */
  function marks() {
    const out = [];
    for (const li of document.querySelectorAll("#timeline li[data-ts]")) {
      const verdict = li.dataset.verdict;
      const colour = verdict ? "--" + verdict.toLowerCase() : MARK_COLOURS[li.dataset.kind] || "--stalled";
      out.push({ t: Number(li.dataset.ts), label: verdict || li.dataset.label, colour });
    }
    if (at) out.push({ t: at, label: "selected", colour: MARK_COLOURS.selected, strong: true });
    return out;
  }

  function draw(series) {
    const annotations = marks();
    for (const chart of Object.values(charts)) {
      chart.draw(series);
      chart.setMarks(annotations);
    }
  }

  /* One-second windows (as the websocket sends them) to the API's columnar shape. */
  function windowsToSeries(windows) {
    const series = { t: [] };
    for (const defs of Object.values(SERIES)) for (const [name] of defs) series[name] = [];
    for (const w of windows) {
      const seconds = w.seconds || 1;
      const counts = w.counts || {};
      series.t.push(w.t - seconds);
      series.produced_per_s.push((counts.produced || 0) / seconds);
      series.processed_per_s.push((counts.processed || 0) / seconds);
      for (const [name] of SERIES.events) series[name].push(counts[name] || 0);
      series.e2e_p50.push(w.e2e ? w.e2e.p50 : null);
      series.e2e_p99.push(w.e2e ? w.e2e.p99 : null);
      series.ack_p50.push(w.ack ? w.ack.p50 : null);
      series.ack_p99.push(w.ack ? w.ack.p99 : null);
    }
    return series;
  }

  function drawLive() {
    draw(windowsToSeries(liveWindows));
    note.textContent =
      `Live: the last ${liveWindows.length} one-second windows, one more every second.` +
      openedNote("live");
  }

  async function load(rangeName) {
    note.textContent = "Loading…";
    const response = await fetch(`${windowsUrl}?range=${encodeURIComponent(rangeName)}`, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (response.status === 401) {
      window.location.assign("/login/?next=" + encodeURIComponent(window.location.pathname));
      return;
    }
    if (!response.ok) {
      note.textContent = `Could not load the windows (HTTP ${response.status}).`;
      return;
    }
    const data = await response.json();
    if (range !== rangeName) return; // the user picked another range meanwhile
    draw(data.series);
    const from = data.windows ? `, from ${DS.utc(data.data_since, "full")} when data starts` : "";
    note.textContent =
      `${data.points} points of ${data.step} s${from} (${data.windows} stored windows, ` +
      `${data.source}).` + openedNote(rangeName);
  }

  /* Why the page opened on this range, while it still shows it. */
  function openedNote(rangeName) {
    if (params.get("range") || rangeName !== defaultRange || !root.dataset.defaultReason) return "";
    return ` Opened on this range: ${root.dataset.defaultReason}.`;
  }

  function select(rangeName) {
    range = rangeName;
    clearInterval(refreshTimer);
    for (const button of document.querySelectorAll("[data-range]")) {
      button.setAttribute("aria-pressed", String(button.dataset.range === rangeName));
    }
    const url = new URL(window.location.href);
    if (rangeName === "live" && defaultRange === "live") url.searchParams.delete("range");
    else url.searchParams.set("range", rangeName);
    window.history.replaceState(null, "", url);
    if (rangeName === "live") {
      drawLive();
    } else {
      load(rangeName);
      refreshTimer = setInterval(() => load(rangeName), REFRESH_MS);
    }
  }

  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => select(button.dataset.range));
  }

  // -- status panel and timeline --------------------------------------------------------------
  function updateStatus(status) {
    if (!status) return;
    DS.setVerdict(panel, status.verdict);
    const reasons = panel.querySelector('[data-field="reasons"]');
    if (reasons) reasons.textContent = (status.reasons || []).join("; ");
    setAll("total", withInFlight(status.totals || {}));
    setAll("recent", {
      ...((status.window || {}).counts || {}),
      p99: DS.format.latencyMs((status.recent_latency_ms || {}).p99),
    });
    showSince(status.verdict_since);
    DS.pageState(status.verdict);
  }

  /* Totals as the page shows them (dashboard.views.detail_totals): with in flight, the records
   * whose delivery report the checker has not received yet. */
  function withInFlight(totals) {
    const inFlight = (totals.produced || 0) - (totals.acked || 0) - (totals.failed || 0);
    return { ...totals, in_flight: Math.max(0, inFlight) };
  }

  /* "since 10:06:27 UTC, 7 min" beside the verdict, its age kept current. */
  function showSince(since) {
    const node = panel.querySelector('[data-field="since"]');
    if (!node) return;
    if (since !== undefined) node.dataset.since = since === null ? "" : String(since);
    const at = node.dataset.since ? Number(node.dataset.since) : null;
    node.textContent = DS.format.since(at, Date.now() / 1000);
  }
  setInterval(() => showSince(), 5000);

  function setAll(kind, values) {
    for (const [key, value] of Object.entries(values)) {
      const node = panel.querySelector(`[data-${kind}="${key}"]`);
      if (node && node.textContent !== String(value)) node.textContent = String(value);
    }
  }

  function addTimelineEntry(msg) {
    const list = document.getElementById("timeline");
    document.getElementById("timeline-empty")?.remove();
    const ts = msg.t || Date.now() / 1000;
    const item = document.createElement("li");
    item.className = "event-verdict";
    Object.assign(item.dataset, { ts: String(ts), kind: "verdict", verdict: msg.verdict });
    const time = document.createElement("time");
    time.dateTime = new Date(ts * 1000).toISOString();
    time.textContent = DS.utc(ts, "full") + " UTC";
    const kind = document.createElement("span");
    kind.className = "event-kind";
    kind.textContent = "verdict change";
    const badge = document.createElement("span");
    badge.className = `verdict verdict-${String(msg.verdict).toLowerCase()}`;
    badge.innerHTML = '<span class="verdict-icon" aria-hidden="true"></span><span class="verdict-text"></span>';
    badge.querySelector(".verdict-text").textContent = msg.verdict;
    const message = document.createElement("span");
    message.className = "event-message";
    message.textContent =
      `verdict ${msg.previous || "none"} -> ${msg.verdict}` +
      (msg.reasons && msg.reasons.length ? `: ${msg.reasons.join("; ")}` : "");
    const link = document.createElement("a");
    link.className = "to-charts small";
    link.href = `?range=15m&at=${ts}#charts`;
    link.textContent = "show on the charts";
    item.append(time, " ", kind, " ", badge, " ", message, " ", link);
    list.prepend(item);
    for (const chart of Object.values(charts)) chart.setMarks(marks());
  }

  // -- live feed ------------------------------------------------------------------------------
  function keepLive(windows) {
    const newest = windows.length ? windows[windows.length - 1].t : 0;
    return windows.filter((w) => w.t > newest - LIVE_SECONDS);
  }

  DS.live(`/ws/sentinel/${sentinelId}/`, {
    state(msg) {
      updateStatus(msg.status);
      liveWindows = keepLive(msg.windows || []);
      if (range === "live") drawLive();
    },
    window(msg) {
      updateStatus(msg.status);
      const w = msg.window;
      const last = liveWindows[liveWindows.length - 1];
      if (!w || (last && w.t <= last.t)) return;
      liveWindows.push(w);
      liveWindows = keepLive(liveWindows);
      if (range === "live") drawLive();
    },
    verdict(msg) {
      if (panel) {
        DS.setVerdict(panel, msg.verdict);
        const reasons = panel.querySelector('[data-field="reasons"]');
        if (reasons) reasons.textContent = (msg.reasons || []).join("; ");
      }
      DS.pageState(msg.verdict);
      addTimelineEntry(msg);
    },
  });

  select(range);
})();
