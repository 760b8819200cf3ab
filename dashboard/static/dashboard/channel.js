/* Channel form: show only the settings of the chosen integration (all are shown without
 * JavaScript; the server reads only the chosen one's). */
(function () {
  "use strict";
  const kind = document.getElementById("id_kind");
  if (!kind) return;
  function show() {
    for (const set of document.querySelectorAll(".transport-settings")) {
      set.hidden = set.dataset.kind !== kind.value;
    }
  }
  kind.addEventListener("change", show);
  show();
})();
