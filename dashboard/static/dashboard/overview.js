/* Overview: one cell per sentinel, updated from the "overview" websocket group.
 * Cells are rendered by the server; this only refreshes their numbers, verdict and sparkline. */
(function () {
  "use strict";

  const SPARK_SECONDS = 60;
  // Once this many one-second windows arrived, throughput is their mean over the last
  // THROUGHPUT_SECONDS, else the verdict window's average (dashboard.metrics.overview.throughput
  // renders the same numbers first).
  const THROUGHPUT_POINTS = 5;
  const THROUGHPUT_SECONDS = 10;
  const cells = new Map();
  for (const el of document.querySelectorAll("[data-sentinel]")) {
    cells.set(Number(el.dataset.sentinel), { el, spark: [] });
  }

  function setField(el, name, text) {
    const node = el.querySelector(`[data-field="${name}"]`);
    if (node && node.textContent !== text) node.textContent = text;
  }

  /* The same numbers as dashboard.metrics.overview.cell() computes for the first render. */
  function update(status) {
    const cell = cells.get(Number(status.id));
    if (!cell) return; // created after this page was loaded
    const window_ = status.window || {};
    const counts = window_.counts || {};
    const seconds = window_.seconds || 0;
    const latency = status.recent_latency_ms || {};
    DS.setVerdict(cell.el, status.verdict);
    showSince(cell.el, status.verdict_since);
    setField(cell.el, "lost", DS.format.count(counts.lost || 0));
    setField(cell.el, "duplicated", DS.format.count(counts.duplicated || 0));
    setField(cell.el, "reordered", DS.format.count(counts.reordered || 0));
    if (cell.spark.length < THROUGHPUT_POINTS) {
      setField(cell.el, "throughput", DS.format.decimal(seconds ? (counts.processed || 0) / seconds : 0));
    }
    setField(cell.el, "p99", DS.format.latencyMs(latency.p99));
    setField(cell.el, "processed", DS.format.count((status.totals || {}).processed || 0));
    setField(cell.el, "reasons", (status.reasons || []).join("; "));
  }

  /* "since 10:06:27 UTC, 7 min": when the card entered its verdict (the status document's
   * verdict_since), its age kept current between updates. */
  function showSince(el, since) {
    const node = el.querySelector('[data-field="since"]');
    if (!node) return;
    if (since !== undefined) node.dataset.since = since === null ? "" : String(since);
    const at = node.dataset.since ? Number(node.dataset.since) : null;
    const text = DS.format.since(at, Date.now() / 1000);
    if (node.textContent !== text) node.textContent = text;
  }
  setInterval(() => {
    for (const cell of cells.values()) showSince(cell.el);
  }, 5000);

  function showThroughput(cell) {
    const recent = cell.spark.slice(-THROUGHPUT_SECONDS);
    if (recent.length < THROUGHPUT_POINTS) return;
    const mean = recent.reduce((sum, p) => sum + p[1], 0) / recent.length;
    setField(cell.el, "throughput", DS.format.decimal(mean));
  }

  function drawSpark(cell) {
    showThroughput(cell);
    const line = cell.el.querySelector(".sparkline polyline");
    if (!line) return;
    const points = cell.spark;
    if (points.length < 2) {
      line.setAttribute("points", "");
      return;
    }
    const now = points[points.length - 1][0];
    const max = Math.max(1, ...points.map((p) => p[1]));
    const coords = points.map(([t, v]) => {
      const x = 120 - ((now - t) / SPARK_SECONDS) * 120;
      const y = 23 - (v / max) * 22;
      return `${Math.round(x * 10) / 10},${Math.round(y * 10) / 10}`; // coordinates, not text
    });
    line.setAttribute("points", coords.join(" "));
  }

  function pushSpark(cell, t, value) {
    const last = cell.spark[cell.spark.length - 1];
    if (last && t <= last[0]) return; // already in the state we were sent
    cell.spark.push([t, value]);
    while (cell.spark.length && cell.spark[0][0] < t - SPARK_SECONDS) cell.spark.shift();
    drawSpark(cell);
  }

  function onWindow(msg) {
    if (msg.status) update(msg.status);
    const cell = cells.get(Number(msg.sentinel));
    const w = msg.window;
    if (cell && w && w.counts) pushSpark(cell, w.t, (w.counts.processed || 0) / (w.seconds || 1));
  }

  /* The tab title and favicon: the worst verdict on the page. */
  function showWorst() {
    DS.pageState(DS.worst(Array.from(cells.values(), (c) => c.el.dataset.verdict)));
  }
  showWorst();

  DS.live("/ws/overview/", {
    state(msg) {
      for (const status of msg.sentinels || []) update(status);
      showWorst();
      for (const [id, points] of Object.entries(msg.sparklines || {})) {
        const cell = cells.get(Number(id));
        if (!cell) continue;
        cell.spark = points.slice();
        drawSpark(cell);
      }
    },
    window(msg) {
      onWindow(msg);
      showWorst();
    },
    // The server batches windows: one message a second for every sentinel (dashboard/live/consumers.py).
    windows(msg) {
      for (const item of msg.windows || []) onWindow(item);
      showWorst();
    },
    verdict(msg) {
      const cell = cells.get(Number(msg.sentinel));
      if (cell) {
        DS.setVerdict(cell.el, msg.verdict);
        if (msg.t) showSince(cell.el, msg.t);
        setField(cell.el, "reasons", (msg.reasons || []).join("; "));
      }
      showWorst();
    },
  });
})();
