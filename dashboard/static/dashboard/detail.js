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
      ["produced_per_s", "produced/s", "#0a58ca"],
      ["processed_per_s", "processed/s", "#198754"],
    ],
    events: [
      ["lost", "lost", "#b42318"],
      ["duplicated", "duplicated", "#c2255c"],
      ["reordered", "reordered", "#e8590c"],
      ["late", "late", "#7048e8"],
      ["phantom", "phantom", "#0c8599"],
    ],
    e2e: [
      ["e2e_p50", "p50 ms", "#0a58ca"],
      ["e2e_p99", "p99 ms", "#b42318"],
    ],
    ack: [
      ["ack_p50", "p50 ms", "#0a58ca"],
      ["ack_p99", "p99 ms", "#b42318"],
    ],
  };

  let range = new URLSearchParams(window.location.search).get("range");
  if (!RANGES.includes(range)) range = "live";
  let liveWindows = [];
  let refreshTimer = null;
  const charts = {};

  // -- charts ---------------------------------------------------------------------------------
  const textColour = getComputedStyle(document.body).color;
  const gridColour = "rgba(128, 128, 128, 0.2)";

  function makeChart(el, key) {
    const defs = SERIES[key];
    const axis = { stroke: textColour, grid: { stroke: gridColour }, ticks: { stroke: gridColour } };
    const opts = {
      width: Math.max(300, el.clientWidth),
      height: 200,
      scales: { x: { time: true } },
      series: [
        {},
        ...defs.map(([, label, colour]) => ({
          label,
          stroke: colour,
          width: 1.5,
          points: { show: key === "events" },
        })),
      ],
      axes: [axis, { ...axis, size: 56 }],
    };
    return new uPlot(opts, [[], ...defs.map(() => [])], el);
  }

  for (const el of root.querySelectorAll("[data-chart]")) {
    charts[el.dataset.chart] = { el, plot: makeChart(el, el.dataset.chart) };
  }

  window.addEventListener("resize", () => {
    for (const { el, plot } of Object.values(charts)) {
      plot.setSize({ width: Math.max(300, el.clientWidth), height: 200 });
    }
  });

  function draw(series) {
    for (const [key, { plot }] of Object.entries(charts)) {
      plot.setData([series.t, ...SERIES[key].map(([name]) => series[name])]);
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
    note.textContent = `Live: the last ${liveWindows.length} one-second windows, one more every second.`;
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
    note.textContent =
      `${data.points} points of ${data.step} s from ${data.windows} stored windows ` +
      `(${data.source}).`;
  }

  function select(rangeName) {
    range = rangeName;
    clearInterval(refreshTimer);
    for (const button of document.querySelectorAll("[data-range]")) {
      button.setAttribute("aria-pressed", String(button.dataset.range === rangeName));
    }
    const url = new URL(window.location.href);
    if (rangeName === "live") url.searchParams.delete("range");
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
    setAll("total", status.totals || {});
    setAll("recent", {
      ...((status.window || {}).counts || {}),
      p99: DS.fmt((status.recent_latency_ms || {}).p99, 1),
    });
    DS.pageState(status.verdict);
  }

  function setAll(kind, values) {
    for (const [key, value] of Object.entries(values)) {
      const node = panel.querySelector(`[data-${kind}="${key}"]`);
      if (node && node.textContent !== String(value)) node.textContent = String(value);
    }
  }

  function addTimelineEntry(msg) {
    const list = document.getElementById("timeline");
    document.getElementById("timeline-empty")?.remove();
    const at = new Date((msg.t || Date.now() / 1000) * 1000);
    const item = document.createElement("li");
    item.className = "event-verdict";
    const time = document.createElement("time");
    time.dateTime = at.toISOString();
    time.textContent = at.toISOString().replace("T", " ").slice(0, 19) + " UTC";
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
    item.append(time, " ", kind, " ", badge, " ", message);
    list.prepend(item);
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
