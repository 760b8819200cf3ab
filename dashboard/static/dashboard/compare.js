/* Compare: keep the selection between 2 and 4 sentinels and say how many are picked. */
(function () {
  "use strict";
  const form = document.getElementById("compare-form");
  if (!form) return;
  const MAX = 4;
  const MIN = 2;
  const boxes = Array.from(form.querySelectorAll('input[name="s"]'));
  const count = document.getElementById("pick-count");
  const submit = form.querySelector('button[type="submit"]');

  function refresh() {
    const picked = boxes.filter((b) => b.checked).length;
    for (const box of boxes) box.disabled = !box.checked && picked >= MAX;
    count.textContent = `(${picked} of ${MIN}–${MAX} picked)`;
    submit.disabled = picked < MIN;
  }
  form.addEventListener("change", refresh);
  refresh();
})();

/* Compare: the same charts for every sentinel, side by side on shared axes (dashboard/charts.js).
 * Each sentinel's windows are loaded once from the windows API for the chosen range. */
(function () {
  "use strict";
  const root = document.getElementById("compare-charts");
  if (!root) return;
  const range = root.dataset.range;
  const DEFS = {
    rates: [["processed_per_s", "processed/s", "--line-green"]],
    problems: [
      ["lost", "lost", "--line-red"],
      ["duplicated", "duplicated", "--line-pink"],
    ],
    e2e: [["e2e_p99", "p99 ms", "--line-blue"]],
  };
  const KINDS = { problems: "events", e2e: "latency" };
  const figures = Array.from(root.querySelectorAll("[data-compare-chart]"));
  const loaded = {}; // sentinel id -> windows API response
  const highest = {}; // metric -> the largest value any sentinel reached

  const shared = (metric) => ({
    x() {
      const data = Object.values(loaded).filter((d) => d.windows);
      if (!data.length) return null;
      return [Math.min(...data.map((d) => d.series.t[0])), Math.max(...data.map((d) => d.until))];
    },
    y: () => highest[metric] || 0,
  });

  const charts = figures.map((figure) => {
    const metric = figure.dataset.compareChart;
    const chart = DS.chart(figure.querySelector(".chart"), DEFS[metric], {
      kind: KINDS[metric],
      slo: metric === "e2e" ? Number(figure.dataset.slo) || null : null,
      caption: document.getElementById(figure.getAttribute("aria-describedby")),
      shared: shared(metric),
    });
    return { figure, metric, chart };
  });

  async function load(figure) {
    const id = figure.dataset.sentinel;
    if (loaded[id]) return loaded[id];
    const url = `${figure.dataset.windowsUrl}?range=${encodeURIComponent(range)}`;
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`windows of sentinel ${id}: HTTP ${response.status}`);
    loaded[id] = await response.json();
    return loaded[id];
  }

  Promise.all(figures.map(load))
    .then(() => {
      for (const { metric } of charts) {
        const values = Object.values(loaded).flatMap((d) =>
          DEFS[metric].flatMap(([name]) => d.series[name] || []),
        );
        // Latency charts keep every sentinel's SLO in view, so all of them share one scale.
        const slos = metric === "e2e" ? figures.map((f) => Number(f.dataset.slo) || 0) : [];
        highest[metric] = Math.max(0, ...slos, ...values.filter((v) => v != null));
      }
      for (const { figure, chart } of charts) chart.draw(loaded[figure.dataset.sentinel].series);
      root.dataset.drawn = "true";
    })
    .catch((err) => {
      const note = document.createElement("p");
      note.className = "errors";
      note.setAttribute("role", "alert");
      note.textContent = `Could not load the charts: ${err.message}.`;
      root.prepend(note);
    });
})();
