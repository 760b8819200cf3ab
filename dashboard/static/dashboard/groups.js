/* A consumer group's page: its lag charts (records, seconds) from the page's own data, with
 * its rewinds, skips and losses as vertical lines (charts.js draws them). */
(function () {
  "use strict";
  const series = JSON.parse(document.getElementById("group-series").textContent);
  const events = JSON.parse(document.getElementById("group-events").textContent);
  const marks = events.map((e) => ({
    t: e.t,
    label: `${e.kind} ${e.count}`,
    colour: e.kind === "rewound" ? "--degraded" : "--violated",
    strong: e.kind !== "rewound",
  }));
  for (const [key, label, colour] of [
    ["lag", "lag (records)", "--line-blue"],
    ["lag_s", "lag (s)", "--line-blue"],
  ]) {
    const el = document.querySelector(`[data-chart="${key}"]`);
    const chart = window.DS.chart(el, [[key, label, colour]], {
      caption: document.getElementById(`${key}-latest`),
    });
    chart.draw(series);
    chart.setMarks(marks);
  }
})();
