// Overview: search the topic rows and show internal topics on request (rows stay in the page).
(function () {
  "use strict";
  const search = document.getElementById("overview-search");
  const internal = document.getElementById("overview-internal");
  if (!search || !internal) return;
  function apply() {
    const q = search.value.trim().toLowerCase();
    for (const row of document.querySelectorAll("tr[data-topic]")) {
      const hide =
        (row.dataset.internal === "1" && !internal.checked) ||
        (q !== "" && !row.dataset.topic.toLowerCase().includes(q));
      row.hidden = hide;
    }
  }
  search.addEventListener("input", apply);
  internal.addEventListener("change", apply);
})();
