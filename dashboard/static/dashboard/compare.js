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
