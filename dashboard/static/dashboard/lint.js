// Lint page: search, filter and sort the topic table in the browser (no request per keystroke).
(function () {
  "use strict";
  const table = document.getElementById("lint-table");
  if (!table) return;
  const body = table.tBodies[0];
  const search = document.getElementById("lint-search");
  const filter = document.getElementById("lint-filter");
  const internal = document.getElementById("lint-internal");
  const shown = document.getElementById("lint-shown");
  const RANK = { "can-hold": 0, "one-failure-away": 1, "cannot-hold": 2 };
  const semantics = ["at-most-once", "at-least-once", "exactly-once"];

  function visible(row) {
    if (row.dataset.internal === "1" && !internal.checked) return false;
    const q = search.value.trim().toLowerCase();
    if (q && !(row.dataset.name.toLowerCase().includes(q) || row.dataset.rules.includes(q))) {
      return false;
    }
    if (filter.value === "findings") return row.dataset.rules.trim() !== "";
    if (filter.value === "cannot-hold") {
      return semantics.some((s) => row.dataset[camel(s)] === "cannot-hold");
    }
    return true;
  }
  function camel(s) {
    return s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  }
  function apply() {
    let n = 0;
    for (const row of body.rows) {
      row.hidden = !visible(row);
      if (!row.hidden) n += 1;
    }
    shown.textContent = n + " of " + body.rows.length + " topics shown";
  }
  let order = { key: "name", dir: 1 };
  function sortBy(key) {
    order = { key: key, dir: order.key === key ? -order.dir : 1 };
    const value = (row) => {
      const v = row.dataset[camel(key)];
      if (key in RANK || semantics.includes(key)) return RANK[v];
      return key === "name" ? v : Number(v);
    };
    const rows = Array.from(body.rows);
    rows.sort((a, b) => (value(a) > value(b) ? 1 : value(a) < value(b) ? -1 : 0) * order.dir);
    rows.forEach((r) => body.appendChild(r));
    for (const b of table.querySelectorAll("button.sort")) {
      b.parentElement.setAttribute(
        "aria-sort",
        b.dataset.sort === key ? (order.dir > 0 ? "ascending" : "descending") : "none",
      );
    }
  }
  search.addEventListener("input", apply);
  filter.addEventListener("change", apply);
  internal.addEventListener("change", apply);
  for (const b of table.querySelectorAll("button.sort")) {
    b.addEventListener("click", () => sortBy(b.dataset.sort));
  }
  apply();
})();
