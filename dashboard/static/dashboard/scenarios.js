// Scenario lab pages: keep every unfinished run's <progress> current by polling its JSON
// endpoint once a second. The state lives in the database, so a reload picks up where it was.
(function () {
  "use strict";
  var FINISHED = { passed: true, failed: true, aborted: true };

  function update(el, run) {
    var bar = el.querySelector("progress");
    if (bar) { bar.value = run.percent; bar.textContent = run.percent + "%"; }
    var pct = el.querySelector("[data-run-percent]");
    if (pct) { pct.textContent = run.percent + "%"; }
    var phase = el.querySelector("[data-run-phase]");
    if (phase) { phase.textContent = run.phase; }
    var state = el.querySelector("[data-run-state]");
    if (state) { state.textContent = run.state; state.className = "state state-" + run.state; }
    el.setAttribute("data-state", run.state);
  }

  function poll(el) {
    fetch(el.getAttribute("data-run-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (run) {
        if (!run) { return setTimeout(function () { poll(el); }, 5000); }
        update(el, run);
        if (!FINISHED[run.state]) { return setTimeout(function () { poll(el); }, 1000); }
        if (el.hasAttribute("data-reload-on-finish")) { window.location.reload(); }
      })
      .catch(function () { setTimeout(function () { poll(el); }, 5000); });
  }

  document.querySelectorAll("[data-run][data-run-url]").forEach(function (el) {
    if (!FINISHED[el.getAttribute("data-state")]) { poll(el); }
  });
})();
